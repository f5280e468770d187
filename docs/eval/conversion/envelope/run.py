"""The rule of docs/eval/conversion/envelope/PREREGISTRATION.md: `--prosody` conversions with the
envelope step's band average at least 300 Hz wide (band_average.py beside this script).

    python docs/eval/conversion/envelope/run.py [val|test]    # ~7 / ~12 minutes on 2 cores

Writes docs/eval/conversion/envelope/prosody_eval_{val,test}.{json,md}.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from band_average import install  # noqa: E402

from emort.evaluation import prosody_eval  # noqa: E402

split = sys.argv[1] if len(sys.argv) > 1 else "val"
install()
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
sys.exit(prosody_eval.main(D + ["--split", split, "--configs", "both-stretch@4", "--sources", "all",
                                "--out", "docs/eval/conversion/envelope"]))
