"""The rule of docs/eval/conversion/envelope/PREREGISTRATION.md: `--prosody` conversions with the
envelope step's band average at least 300 Hz wide (``ENVELOPE_MIN_HZ``).

    python docs/eval/conversion/envelope/run.py [val|test]    # ~7 / ~12 minutes on 2 cores

Writes docs/eval/conversion/envelope/prosody_eval_{val,test}.{json,md}.
"""
import sys

from emort.evaluation import prosody_eval
from emort.runtime import prosody

split = sys.argv[1] if len(sys.argv) > 1 else "val"
prosody.ENVELOPE_MIN_HZ = 300.0
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
sys.exit(prosody_eval.main(D + ["--split", split, "--configs", "both-stretch@4", "--sources", "all",
                                "--out", "docs/eval/conversion/envelope"]))
