"""The rule of docs/eval/conversion/range_f0/PREREGISTRATION.md: 0.29's `--prosody` with the range
contour read from DIO at 8 kHz, speed 2 (``RANGE_F0_ANALYSIS``).

    python docs/eval/conversion/range_f0/run.py    # ~6 minutes on 2 cores

Writes docs/eval/conversion/range_f0/prosody_eval_val.{json,md}.
"""
import sys

from emort.evaluation import prosody_eval
from emort.runtime import prosody

prosody.RANGE_F0_ANALYSIS = (8_000, 2)
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
sys.exit(prosody_eval.main(D + ["--split", "val", "--configs", "both-stretch@4", "--sources", "all", "--no-own",
                                "--out", "docs/eval/conversion/range_f0"]))
