"""The rule of docs/eval/conversion/range_share/PREREGISTRATION.md: `--prosody` conversions with the
F0 range at the table's whole change (share 1) while the F0 level keeps the bundle's share (0.5).

    python docs/eval/conversion/range_share/run.py [val|test]    # ~7 / ~12 minutes on 2 cores

The planned range is raised to the power 1 / pitch share (the plan scales the log range by the pitch
share). Writes docs/eval/conversion/range_share/prosody_eval_{val,test}.{json,md}.
"""
import dataclasses
import math
import sys

import emort.runtime.enhancer as enhancer
from emort.evaluation import prosody_eval

split = sys.argv[1] if len(sys.argv) > 1 else "val"
_plan = enhancer.plan_prosody


def whole_range(table, target, scores, options, *a, **k):
    e = _plan(table, target, scores, options, *a, **k)
    return dataclasses.replace(e, f0_range=math.exp(math.log(e.f0_range) / options.pitch)) if options.pitch > 0 else e


enhancer.plan_prosody = whole_range
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
sys.exit(prosody_eval.main(D + ["--split", split, "--configs", "both-stretch@4", "--sources", "all",
                                "--out", "docs/eval/conversion/range_share"]))
