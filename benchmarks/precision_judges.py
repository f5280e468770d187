"""``python benchmarks/precision_judges.py``: the judges' cells of a bf16 edit against the float32 edit.

Reads ``emort eval enhance`` reports of the same validation speakers made with ``--precision bf16``
and with float32 (one pair per noise seed) and prints, per amount, each corpus x judge cell's UA
and soft UA gain difference (bf16 minus float32) and, as the yardstick, the float32 edit's
difference between the two noise seeds. Issue 19's parity bar: every judge's UA within 1 point. (``benchmarks/precision.py --reports``
compares the first row of one report per name, UA only; this reads several seeds and amounts, UA
and soft UA.) With 8 seeds it reads docs/bench/0.24/bf16_parity/PREREGISTRATION.md's rule
(:func:`parity`).

    python benchmarks/precision_judges.py --bf16 docs/bench/0.22/bf16_val_s0 docs/bench/0.22/bf16_val_s1 \\
        --fp32 docs/eval/parts/v1_s0 docs/eval/parts/v1_s1 --json docs/bench/0.22/bf16_judges.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emort.evaluation.seed_mean import KEY_FIELDS, _comparable, setting_key  # noqa: E402
from emort.export.precision import BAR, beyond_bar  # noqa: E402

#: The rows compared, at each amount: the plain edit (no smoothing, uncond contrast, full part),
#: as KEY_FIELDS after the amount.
PLAIN = (0.0, 0, "uncond", "full")


def edit_of(options: dict) -> dict:
    """The edit the compared rows were made with, as the JSON records it: a report's base options
    (``_comparable``: without the seed, amount and prosody) with the rows' own :data:`PLAIN`
    setting. ``emort export precision`` compares each with the bundle's default."""
    return {**_comparable(options), **dict(zip(KEY_FIELDS[1:], PLAIN))}


def _ran(rep: dict) -> str:
    """The precision a report's denoiser ran in."""
    return (rep.get("precision") or {}).get("ran", "fp32")  # reports before 0.20 ran float32


def _rows(d: str, ran: str | None = None) -> tuple[dict, dict]:
    """A report's options and its emort rows by amount (:data:`PLAIN` edit); one line naming the
    folder (SystemExit) when it is not a readable ``emort eval enhance`` report with soft UA, or
    when its denoiser did not run in ``ran``."""
    try:
        rep = json.loads((Path(d) / "report.json").read_text())
        mine = [r for r in rep["rows"] if r["condition"] == "emort" and setting_key(r)[1:] == PLAIN]
        rows = {r["amount_db"]: r for r in mine}
        rep["options"]["seed"], rep["speakers"], rep["bundle"], rep["clips"]  # noqa: B018 (fields read below)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise SystemExit(f"{d}: not a readable `emort eval enhance` report ({type(e).__name__}: {e})") from None
    if len(rows) != len(mine):
        raise SystemExit(f"{d}: several plain-edit rows at one amount; compare reports of one setting per amount")
    if any("soft_gain" not in r for r in rows.values()):
        raise SystemExit(f"{d}: its rows have no soft UA gain (reports before 0.21); run `emort eval enhance` again")
    if ran is not None and _ran(rep) != ran:
        raise SystemExit(f"{d}: its denoiser ran in {_ran(rep)}, not {ran}")
    return rep, rows


def _same(d: str, rep: dict, ref: dict, ref_dir: str) -> None:
    """One line (SystemExit) naming ``d`` when its report was not made like ``ref_dir``'s but for
    the seed: the same speakers, clips and split, the same bundle edit (``edit_hash``, edit
    basis) and the same options; else a difference would subtract other edits."""
    if (rep["speakers"], rep["clips"], rep.get("split")) != (ref["speakers"], ref["clips"], ref.get("split")):
        raise SystemExit(f"{d}: other speakers, clips or split than {ref_dir} ({rep['speakers']}, {rep.get('split')})")
    mine, theirs = ((r.get("bundle") or {}).get("edit_hash") for r in (rep, ref))
    if mine is None or mine != theirs or rep.get("edit_basis") != ref.get("edit_basis"):
        raise SystemExit(f"{d}: made with another bundle edit than {ref_dir} (edit hash {mine} vs {theirs}, "
                         f"edit basis {rep.get('edit_basis')} vs {ref.get('edit_basis')})")
    if _comparable(rep["options"]) != _comparable(ref["options"]):
        diff = sorted(k for k, v in _comparable(rep["options"]).items() if _comparable(ref["options"]).get(k) != v)
        raise SystemExit(f"{d}: made with other options than {ref_dir} ({', '.join(diff)})")


def compare(bf16: list[str], fp32: list[str]) -> dict:
    """Cell differences in points, per seed and amount: ``{"pairs": [...], "seed_gap": [...]}``, with
    the edit compared (:func:`edit_of`) and, per pair, the precision each side ran in (``ran``,
    ``fp32_ran``). ``bf16[i]`` is compared with ``fp32[i]`` (same seed and speakers; one line
    otherwise). The float32 side must have run in float32; what the bf16 side ran in is recorded, not
    required (an ``--precision auto`` run may have fallen back), and ``emort export precision`` refuses
    a check whose bf16 side ran in another precision."""
    if len(bf16) != len(fp32):
        raise SystemExit(f"give as many --fp32 reports as --bf16 ones, one per seed ({len(fp32)} against {len(bf16)})")
    out: dict = {"pairs": [], "seed_gap": []}
    fp = [_rows(d, "fp32") for d in fp32]
    bp = [_rows(d) for d in bf16]
    reps = [rep for rep, _ in fp + bp]
    first = reps[0]
    for d, rep in zip([*fp32, *bf16], reps):
        _same(d, rep, first, fp32[0])
    out["bundle"] = {k: first["bundle"].get(k) for k in ("name", "hash", "edit_hash")}
    out["edit"], out["edit_basis"] = edit_of(first["options"]), first.get("edit_basis")
    out["speakers"] = first["speakers"]
    out["splits"] = sorted({str(rep.get("split")) for rep in reps})
    for d, (brep, brows), (frep, frows) in zip(bf16, bp, fp):
        if brep["options"]["seed"] != frep["options"]["seed"]:
            raise SystemExit(f"{d}: not the same seed as its float32 report")
        for a in sorted(set(brows) & set(frows)):
            out["pairs"].append({"seed": brep["options"]["seed"], "amount_db": a, "ran": _ran(brep), "fp32_ran": _ran(frep),
                                 **_diff(brows[a], frows[a])})
    seeds = [rep["options"]["seed"] for rep, _ in bp]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two --bf16 reports have the same seed (seeds {seeds})")
    for (r0, rows0), (r1, rows1) in zip(fp[0::2], fp[1::2]):  # float32 reports paired in turn: (0, 1), (2, 3), ...
        for a in sorted(set(rows0) & set(rows1)):
            out["seed_gap"].append({"seeds": [r0["options"]["seed"], r1["options"]["seed"]], "amount_db": a, **_diff(rows1[a], rows0[a])})
    return out


def machine_gap(fp32: list[str], other: list[str]) -> list[dict]:
    """The same float32 edit (same seed, speakers and amount) computed on two machines: each report
    of ``other`` against the report of ``fp32`` with its seed, cell differences in points. Each
    ``other`` report is checked as the compared ones are (:func:`_same`, float32), and must hold
    every amount its ``fp32`` report holds."""
    mine = {rep["options"]["seed"]: (d, rep, rows) for d, (rep, rows) in ((d, _rows(d, "fp32")) for d in fp32)}
    out = []
    for d in other:
        orep, orows = _rows(d, "fp32")
        seed = orep["options"]["seed"]
        if seed not in mine:
            raise SystemExit(f"{d}: no --fp32 report with its seed {seed}")
        ref_dir, ref, rows = mine[seed]
        _same(d, orep, ref, ref_dir)
        missing = sorted(set(rows) - set(orows))
        if missing:
            raise SystemExit(f"{d}: no plain-edit row at {', '.join(f'{a:g}' for a in missing)} dB, which {ref_dir} has")
        for a in sorted(rows):
            out.append({"seed": seed, "amount_db": a, "other": d, **_diff(rows[a], orows[a])})
    return out


def parity(pairs: list[dict], amount_db: float, bar: float = BAR) -> dict:
    """docs/bench/0.24/bf16_parity/PREREGISTRATION.md's statistics at ``amount_db``: per judge the
    mean UA difference over every seed and corpus; per cell (corpus x judge) the mean soft-UA
    difference over seeds (and, reported only, the hard-UA mean, min and max); ``holds`` when
    every judge's and every cell's mean is within ``bar`` points."""
    ps = [p for p in pairs if p["amount_db"] == amount_db]
    if not ps:
        raise SystemExit(f"no bf16/float32 pair at {amount_db:g} dB")
    corpora = list(ps[0]["ua"])
    judges = list(ps[0]["ua"][corpora[0]])
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    per_judge = {j: mean([p["ua"][c][j] for p in ps for c in corpora]) for j in judges}
    cells = {f"{c} {j}": {"soft_mean": mean([p["soft"][c][j] for p in ps]),
                          "ua_mean": mean([p["ua"][c][j] for p in ps]),
                          "ua_min": min(p["ua"][c][j] for p in ps), "ua_max": max(p["ua"][c][j] for p in ps)}
             for c in corpora for j in judges}
    beyond = beyond_bar(per_judge, {k: v["soft_mean"] for k, v in cells.items()}, bar)  # the verdict export reads again
    return {"amount_db": amount_db, "seeds": sorted(p["seed"] for p in ps), "bar": bar,
            "per_judge_ua_mean": per_judge, "cells": cells, "beyond": beyond, "holds": not beyond}


def _diff(a: dict, b: dict) -> dict:
    ua = {c: {j: 100 * (a["gain"][c][j] - b["gain"][c][j]) for j in a["gain"][c]} for c in a["gain"]}
    soft = {c: {j: 100 * (a["soft_gain"][c][j] - b["soft_gain"][c][j]) for j in a["soft_gain"][c]} for c in a["soft_gain"]}
    flat = lambda d: [v for c in d.values() for v in c.values()]  # noqa: E731
    return {"ua": ua, "soft": soft, "max_abs_ua": max(map(abs, flat(ua))), "max_abs_soft": max(map(abs, flat(soft)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bf16", nargs="+", required=True)
    ap.add_argument("--fp32", nargs="+", required=True)
    ap.add_argument("--other-fp32", nargs="*", default=[],
                    help="float32 reports of the same seeds made on another machine (the size of rounding alone)")
    ap.add_argument("--parity-amount", type=float, default=0.5,
                    help="amount (dB) the preregistered parity statistics are read at (the default amount)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.json is not None:
        from emort.runtime.atomic import check_writable
        from emort.runtime.errors import EmortError

        try:
            check_writable(a.json, "--json")  # before the work, not after
        except EmortError as e:
            raise SystemExit(str(e)) from None
    res = compare(a.bf16, a.fp32)
    other = sorted({p["ran"] for p in res["pairs"]} - {"bf16"})
    if other:  # a check of nothing: `emort export precision` refuses it
        print(f"note: the --bf16 side ran in {', '.join(other)} (report.json's precision), not bf16", file=sys.stderr)
    res["parity"] = parity(res["pairs"], a.parity_amount)
    res["machine_gap"] = machine_gap(a.fp32, a.other_fp32)
    cells = lambda d: " | ".join(f"{c} {j} {v:+.1f}" for c in d for j, v in d[c].items())  # noqa: E731
    print("bf16 minus float32, same seed (points): max |UA| | max |soft| | UA per cell")
    for p in res["pairs"]:
        print(f"seed {p['seed']} {p['amount_db']:g} dB ({p['ran']}): {p['max_abs_ua']:.1f} | {p['max_abs_soft']:.1f} | {cells(p['ua'])}")
        print(f"    soft per cell: {cells(p['soft'])}")
    print("float32, seed 2k+1 minus seed 2k (the yardstick):")
    for p in res["seed_gap"]:
        print(f"seeds {p['seeds']} {p['amount_db']:g} dB: {p['max_abs_ua']:.1f} | {p['max_abs_soft']:.1f} | {cells(p['ua'])}")
    for p in res["machine_gap"]:
        print(f"float32 here minus {p['other']} (seed {p['seed']}, {p['amount_db']:g} dB): {p['max_abs_ua']:.1f} | "
              f"{p['max_abs_soft']:.1f} | {cells(p['ua'])}")
    par = res["parity"]
    print(f"parity at {par['amount_db']:g} dB over seeds {par['seeds']} (bar {par['bar']:g} point):")
    print("  per judge, mean UA difference over seeds and corpora: "
          + " | ".join(f"{j} {v:+.2f}" for j, v in par["per_judge_ua_mean"].items()))
    for k, v in par["cells"].items():
        print(f"  {k}: soft {v['soft_mean']:+.3f}, UA {v['ua_mean']:+.2f} ({v['ua_min']:+.1f} to {v['ua_max']:+.1f})")
    print(f"  holds: {par['holds']}" + (f" (beyond the bar: {'; '.join(par['beyond'])})" if par["beyond"] else ""))
    if a.json:
        from emort.runtime.atomic import write_text_atomic

        write_text_atomic(a.json, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
