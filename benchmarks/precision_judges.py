"""``python benchmarks/precision_judges.py``: the judges' cells of a bf16 edit against the float32 edit.

Reads ``emort eval enhance`` reports of the same validation speakers made with ``--precision bf16``
and with float32 (one pair per noise seed) and prints, per amount, each corpus x judge cell's UA
and soft UA gain difference (bf16 minus float32) and, as the yardstick, the float32 edit's
difference between the two noise seeds. Issue 19's parity bar: every judge's UA within 1 point. (``benchmarks/precision.py --reports``
compares the first row of one report per name, UA only; this reads several seeds and amounts, UA
and soft UA.)

    python benchmarks/precision_judges.py --bf16 docs/bench/0.22/bf16_val_s0 docs/bench/0.22/bf16_val_s1 \\
        --fp32 docs/eval/parts/v1_s0 docs/eval/parts/v1_s1 --json docs/bench/0.22/bf16_judges.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _rows(d: str) -> tuple[dict, dict]:
    rep = json.loads((Path(d) / "report.json").read_text())
    rows = {r["amount_db"]: r for r in rep["rows"] if r["condition"] == "emort" and r.get("part", "full") == "full"
            and r.get("contrast", "uncond") == "uncond"}
    return rep, rows


def compare(bf16: list[str], fp32: list[str]) -> dict:
    """Cell differences in points, per seed and amount: ``{"pairs": [...], "seed_gap": [...]}``."""
    out: dict = {"pairs": [], "seed_gap": []}
    fp = [_rows(d) for d in fp32]
    for d, (frep, frows) in zip(bf16, fp):
        brep, brows = _rows(d)
        if brep["options"]["seed"] != frep["options"]["seed"] or brep["speakers"] != frep["speakers"]:
            raise SystemExit(f"{d}: not the same seed and speakers as its float32 report")
        ran = (brep.get("precision") or {}).get("ran")
        for a in sorted(set(brows) & set(frows)):
            out["pairs"].append({"seed": brep["options"]["seed"], "amount_db": a, "ran": ran, **_diff(brows[a], frows[a])})
    if len(fp) >= 2:
        (r0, rows0), (r1, rows1) = fp[0], fp[1]
        for a in sorted(set(rows0) & set(rows1)):
            out["seed_gap"].append({"seeds": [r0["options"]["seed"], r1["options"]["seed"]], "amount_db": a, **_diff(rows1[a], rows0[a])})
    return out


def _diff(a: dict, b: dict) -> dict:
    ua = {c: {j: 100 * (a["gain"][c][j] - b["gain"][c][j]) for j in a["gain"][c]} for c in a["gain"]}
    soft = {c: {j: 100 * (a["soft_gain"][c][j] - b["soft_gain"][c][j]) for j in a["soft_gain"][c]} for c in a["soft_gain"]}
    flat = lambda d: [v for c in d.values() for v in c.values()]  # noqa: E731
    return {"ua": ua, "soft": soft, "max_abs_ua": max(map(abs, flat(ua))), "max_abs_soft": max(map(abs, flat(soft)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bf16", nargs="+", required=True)
    ap.add_argument("--fp32", nargs="+", required=True)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = compare(a.bf16, a.fp32)
    cells = lambda d: " | ".join(f"{c} {j} {v:+.1f}" for c in d for j, v in d[c].items())  # noqa: E731
    print("bf16 minus float32, same seed (points): max |UA| | max |soft| | UA per cell")
    for p in res["pairs"]:
        print(f"seed {p['seed']} {p['amount_db']:g} dB ({p['ran']}): {p['max_abs_ua']:.1f} | {p['max_abs_soft']:.1f} | {cells(p['ua'])}")
        print(f"    soft per cell: {cells(p['soft'])}")
    print("float32, seed 1 minus seed 0 (the yardstick):")
    for p in res["seed_gap"]:
        print(f"{p['amount_db']:g} dB: {p['max_abs_ua']:.1f} | {p['max_abs_soft']:.1f} | {cells(p['ua'])}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
