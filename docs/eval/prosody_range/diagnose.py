"""Does the F0 range change matter to the judges? A diagnosis that chooses nothing (emort 0.29).

The `world` renderer applies the prosody table's F0 range factor (anger x1.42, happiness x1.42,
fear x1.11 at the table's full change); the shipped `stretch` renderer transposes by one amount
and leaves the range alone. Here `world` runs twice on the validation speakers (V1), once as
shipped and once with the range factor forced to 1, converting neutral clips to each other emotion:

    python docs/eval/prosody_range/diagnose.py flat   # range forced to 1
    python docs/eval/prosody_range/diagnose.py range  # as shipped

Reports: reports/prosody_range_{flat,range}/prosody_eval_val.{json,md}.
"""
import dataclasses
import sys

import emort.runtime.enhancer as enhancer
from emort.evaluation import prosody_eval

mode = sys.argv[1]
assert mode in ("flat", "range")
if mode == "flat":
    _render = enhancer.render_prosody

    def flat(wav, sr, edit, renderer="stretch", *a, **k):
        return _render(wav, sr, dataclasses.replace(edit, f0_range=1.0), renderer, *a, **k)

    enhancer.render_prosody = flat
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
sys.exit(prosody_eval.main(D + ["--split", "val", "--configs", "prosody-world,both-world", "--no-own", "--no-fidelity",
                                "--out", f"reports/prosody_range_{mode}"]))
