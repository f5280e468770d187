"""The rule of docs/eval/parts/PREREGISTRATION.md: a part of the edit against the shipped default.

Both groups' reports (one per noise seed) are averaged per cell and combined into 18 soft-UA
cells per setting by docs/eval/soft/groups.py. Among the candidates (``dynamic`` and ``level``
parts at 1, 2 and 4 dB) the largest worst cell wins (within 0.1 point: the larger mean); it replaces the incumbent
(0.5 dB, ``full``, ``uncond``) only if its worst cell is more than 0.5 point higher and its mean
at least as high. Prints every setting's worst and mean cells and the decision.

    python docs/eval/parts/rule.py --v1 docs/eval/parts/v1_s0 docs/eval/parts/v1_s1 \\
        --v2 docs/eval/parts/v2_s0 docs/eval/parts/v2_s1 --json docs/eval/parts/decision.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "soft"))
from groups import combine  # noqa: E402  (docs/eval/soft/groups.py: the two groups' 18 cells)

INCUMBENT = (0.5, "uncond", "full", 0)  # amount dB, contrast, part, smooth_bands
TIE = 0.001  # 0.1 point
MARGIN = 0.005  # 0.5 point


def decide(rows: list[dict], parts=("dynamic", "level"), amounts=(1.0, 2.0, 4.0), bands=(0,)) -> dict:
    """``rows``: groups.combine's (``amount_db``, ``contrast``, ``part``, ``smooth_bands``, ``worst``,
    ``mean``). The candidates: ``uncond`` rows of the given parts, amounts and band smoothings
    (defaults: PREREGISTRATION.md's; docs/eval/bands/PREREGISTRATION.md gives others). Returns the
    incumbent, the best candidate and whether it replaces the incumbent."""
    key = lambda r: (r["amount_db"], r["contrast"], r["part"], r["smooth_bands"])  # noqa: E731
    inc = next(r for r in rows if key(r) == INCUMBENT)
    cands = [r for r in rows if r["part"] in parts and r["amount_db"] in amounts and r["smooth_bands"] in bands
             and r["contrast"] == "uncond" and key(r) != INCUMBENT]
    top = max(r["worst"] for r in cands)
    best = max((r for r in cands if r["worst"] >= top - TIE), key=lambda r: r["mean"])
    adopt = best["worst"] > inc["worst"] + MARGIN and best["mean"] >= inc["mean"]
    return {"incumbent": inc, "best": best, "adopt": adopt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--v1", nargs="+", required=True)
    ap.add_argument("--v2", nargs="+", required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--parts", default="dynamic,level", help="the candidates' parts (comma-separated)")
    ap.add_argument("--amounts", default="1,2,4", help="the candidates' amounts, dB")
    ap.add_argument("--bands", default="0", help="the candidates' band smoothings")
    ap.add_argument("--rule", default="docs/eval/parts/PREREGISTRATION.md", help="the rule's file, recorded in --json")
    a = ap.parse_args()
    res = combine(a.v1, a.v2)
    d = decide(res["rows"], tuple(a.parts.split(",")), tuple(float(x) for x in a.amounts.split(",")),
               tuple(int(x) for x in a.bands.split(",")))
    print("soft UA gain over V1 and V2 (18 cells), points, seed means; " + ", ".join(f"{g} seeds {s}" for g, s in res["seeds"].items()))
    print("amount dB | part | bands | worst | mean | UA worst | UA mean")
    for r in res["rows"]:
        mark = " <- incumbent" if r is d["incumbent"] else (" <- best candidate" if r is d["best"] else "")
        print(f"{r['amount_db']:g} | {r['part']} | {r['smooth_bands']} | {100 * r['worst']:+.1f} | {100 * r['mean']:+.1f} | "
              f"{100 * r['worst_ua']:+.1f} | {100 * r['mean_ua']:+.1f}{mark}")
    b, i = d["best"], d["incumbent"]
    print(f"decision: {'adopt' if d['adopt'] else 'keep the incumbent'} (best candidate {b['amount_db']:g} dB {b['part']}"
          + (f", {b['smooth_bands']} bands" if b["smooth_bands"] else "") + ": "
          f"worst {100 * b['worst']:+.1f} vs {100 * i['worst']:+.1f}, mean {100 * b['mean']:+.1f} vs {100 * i['mean']:+.1f})")
    if a.json:
        chosen = b if d["adopt"] else i
        a.json.write_text(json.dumps({"amount_db": chosen["amount_db"], "contrast": chosen["contrast"], "part": chosen["part"],
                                      "smooth_bands": chosen["smooth_bands"], "adopted": d["adopt"], "rule": a.rule,
                                      "split": "val (V1 and V2)", "reports": a.v1 + a.v2}, indent=2) + "\n")


if __name__ == "__main__":
    main()
