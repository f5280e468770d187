"""docs/ser/speaker3/PREREGISTRATION.md's rule from the two runs of docs/ser/small_groups/check.py:

    python docs/ser/small_groups/check.py val runs/speaker3/ser_speaker3_v2 docs/ser/speaker3/cells_val.json
    python docs/ser/speaker3/decide.py

D2 is candidate D of docs/ser/small_groups/cells_val.json (the two-corpus SER), D3 candidate D of
docs/ser/speaker3/cells_val.json; each corpus's cell is the mean of its pooled cells over groups of 1-4 clips.
"""
import json
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import CORPORA

here = Path(__file__).parent
runs = {"D2": here.parent / "small_groups" / "cells_val.json", "D3": here / "cells_val.json"}
out = {}
for name, path in runs.items():
    ua = json.loads(path.read_text())["ua"]
    cells = {c: float(np.mean([ua[f"n{n}"]["D"]["0"][f"{c}/pooled"] for n in (1, 2, 3, 4)])) for c in CORPORA}
    out[name] = {**cells, "worst": min(cells.values()), "mean": float(np.mean(list(cells.values())))}
    print(name, {k: round(v, 3) for k, v in out[name].items()})
adopt = out["D3"]["worst"] >= out["D2"]["worst"] + 0.02 and out["D3"]["mean"] >= out["D2"]["mean"]
out["rule"] = {"adopted": "D3" if adopt else None}
print("rule: adopted", out["rule"]["adopted"])
(here / "decision.json").write_text(json.dumps(out, indent=1) + "\n")
