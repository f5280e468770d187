"""The rule of PREREGISTRATION_v2.md: worst soft-UA cell over two validation groups.

Each group's reports (one per noise seed) are averaged per cell by ``emort.evaluation.seed_mean``;
the settings both groups measured are compared by the worst of their 2 x 9 corpus x judge cells
(exact ties: the larger mean of the 18). Prints both groups' cells and the choice; ``--json``
writes the chosen amount and contrast (a defaults file for ``emort export defaults``).

    python docs/eval/soft/groups.py --v1 docs/eval/soft/val_s0 docs/eval/soft/val_s1 \\
        --v2 docs/eval/soft/v2_s0 docs/eval/soft/v2_s1 --json docs/eval/soft/defaults_v2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emort.evaluation.seed_mean import KEY_FIELDS, seed_means, setting_key


def combine(v1: list[str], v2: list[str]) -> dict:
    groups = {"V1": seed_means(v1, "soft"), "V2": seed_means(v2, "soft")}
    by = {g: {setting_key(r): r for r in res["rows"]} for g, res in groups.items()}
    rows = []
    # printed by amount, contrast, part, band smoothing (the order of the committed tables)
    for k in sorted(set(by["V1"]) & set(by["V2"]), key=lambda k: (k[0], k[3], k[4], k[2], k[1])):
        cells = {f"{g} {c} {j}": by[g][k]["soft_gain"][c][j] for g in by for c in by[g][k]["soft_gain"] for j in by[g][k]["soft_gain"][c]}
        ua = {f"{g} {c} {j}": by[g][k]["gain"][c][j] for g in by for c in by[g][k]["gain"] for j in by[g][k]["gain"][c]}
        rows.append({**dict(zip(KEY_FIELDS, k)), "cells": cells, "ua_cells": ua, "worst": min(cells.values()),
                     "mean": sum(cells.values()) / len(cells), "worst_ua": min(ua.values()), "mean_ua": sum(ua.values()) / len(ua)})
    chosen = max(rows, key=lambda r: (round(r["worst"], 6), r["mean"]))
    return {"rows": rows, "chosen": chosen, "seeds": {g: res["seeds"] for g, res in groups.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--v1", nargs="+", required=True)
    ap.add_argument("--v2", nargs="+", required=True)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = combine(a.v1, a.v2)
    names = list(res["rows"][0]["cells"])
    print("soft UA gain, points, seed means; " + ", ".join(f"{g} seeds {s}" for g, s in res["seeds"].items()))
    parts = len({r["part"] for r in res["rows"]}) > 1  # a column only where the rows differ in it
    bands = len({r["smooth_bands"] for r in res["rows"]}) > 1
    label = lambda r: (f"{r['amount_db']:g} | {r['contrast']} | " + (f"{r['part']} | " if parts else "")  # noqa: E731
                       + (f"{r['smooth_bands']} | " if bands else ""))
    print("amount dB | contrast | " + ("part | " if parts else "") + ("bands | " if bands else "") + " | ".join(names) + " | worst | mean | UA worst | UA mean")
    for r in res["rows"]:
        mark = " <- chosen" if r is res["chosen"] else ""
        print(label(r) + " | ".join(f"{100 * r['cells'][n]:+.1f}" for n in names)
              + f" | {100 * r['worst']:+.1f} | {100 * r['mean']:+.1f} | {100 * r['worst_ua']:+.1f} | {100 * r['mean_ua']:+.1f}{mark}")
    print("UA gain, points, the same rows:")
    for r in res["rows"]:
        print(label(r) + " | ".join(f"{100 * r['ua_cells'][n]:+.1f}" for n in names))
    if a.json:
        c = res["chosen"]
        a.json.write_text(json.dumps({"amount_db": c["amount_db"], "contrast": c["contrast"], "part": c["part"], "smooth_bands": c["smooth_bands"],
                                      "rule": "docs/eval/soft/PREREGISTRATION_v2.md: the largest worst soft-UA cell over V1 and V2",
                                      "split": "val (V1 and V2)", "reports": a.v1 + a.v2}, indent=2) + "\n")


if __name__ == "__main__":
    main()
