"""The six validation cells of the C grid (PREREGISTRATION.md), never the test rows.

Reads reports/c/* written by run.sh (C = 10: the shipped runs' reports/v2/*), from the
repository root: ``python docs/ser/svm_c/val_cells.py``.
"""

import json
from pathlib import Path

CORPORA = ("emodb", "ravdess", "nemo")


def loco_val(c: str, corpus: str) -> float:
    report = Path(f"reports/v2/{corpus}_w0" if c == "10" else f"reports/c/{corpus}_C{c}") / "ser_eval.json"
    return json.loads(report.read_text())["rows"]["validation"]["ua"]


held_out = json.loads(Path("reports/c/held_out_val.json").read_text())["ua"]
print("C     held-out val E / R / N   LOCO val E / R / N   worst  mean")
for c in ("1", "3", "10", "30", "100"):
    run = "runs/v2/stats3p_noval" if c == "10" else f"runs/c/stats3p_noval_C{c}"
    cells = [held_out[run][k] for k in CORPORA] + [loco_val(c, k) for k in CORPORA]
    print(f"{c:>4}  " + " ".join(f"{x:.3f}" for x in cells) + f"  {min(cells):.3f}  {sum(cells) / len(cells):.3f}")
