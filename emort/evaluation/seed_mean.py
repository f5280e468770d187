"""The selection rule over several noise seeds: average `emort eval enhance` reports cell by cell.

Each report (``report.json`` of ``emort eval enhance --edit-seed S``) holds the emort rows of one
noise seed; reports of the same seed may split the amounts between them. For every setting
(amount, smoothing, contrast) present for every seed, the UA gain of each corpus x judge cell is
averaged over the seeds (the reports must share split, speakers, clips and options, and, where they
record it, the bundle's ``edit_hash``; a seed measured twice must agree), and the selection rule of ``emort eval enhance``
(:func:`emort.evaluation.enhance_eval.choose`: the largest worst cell, ties by the mean) picks
one. Prints the table and writes the choice as a defaults file that ``emort export defaults
--defaults`` reads::

    python -m emort.evaluation.seed_mean docs/eval/val_0.8/b3_val_s0 docs/eval/val_0.8/b3_val_low_s0 ... \\
        --json docs/eval/val_0.9/defaults.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from emort.runtime.errors import EmortError

#: What tells one setting's rows from another's, in key order.
KEY_FIELDS = ("amount_db", "smooth_s", "smooth_bands", "contrast", "part")


def setting_key(row: dict) -> tuple:
    """A row's setting (:data:`KEY_FIELDS`); rows of older reports lack the later fields: their defaults."""
    return (float(row["amount_db"]), float(row.get("smooth_s", 0.0)), int(row.get("smooth_bands", 0)), row.get("contrast", "uncond"),
            row.get("part", "full"))


def _comparable(options: dict) -> dict:
    """A report's base options as they bear on its rows: without the seed and the amount,
    contrast and part (each row has its own), without the prosody settings (the evaluation runs none),
    and with options that a report of an older version lacks filled with their defaults."""
    from emort.runtime.editing import PROSODY_FIELDS, EditOptions

    skip = {"seed", "amount_db", "contrast", "part", "prosody_subspace", *PROSODY_FIELDS}
    full = {**EditOptions().to_dict(), **options}
    return {k: v for k, v in full.items() if k not in skip}


def average_cells(gains: list[dict]) -> tuple[dict, float, float]:
    """Corpus x judge gains of several runs (``[{corpus: {judge: gain}}, ...]``, one per noise
    seed) averaged cell by cell: ``(averaged gains, worst cell, mean cell)``. The selection rules
    read the worst of the averages, not the average of each seed's worst."""
    gain = {c: {j: sum(g[c][j] for g in gains) / len(gains) for j in gains[0][c]} for c in gains[0]}
    flat = [v for c in gain.values() for v in c.values()]
    return gain, min(flat), sum(flat) / len(flat)


def seed_means(report_dirs: list[str | Path], statistic: str = "ua") -> dict:
    """``{"rows": [...], "chosen": row, "seeds": [...]}``: per setting, each cell's gain averaged over
    the seeds that measured it (settings missing for some seed are left out, and named).
    ``statistic``: what the rule reads in each cell, ``ua`` or ``soft`` (the soft UA gain, in
    reports since 0.21); rows hold both where every report has the soft gains."""
    from emort.evaluation.enhance_eval import RULES, choose

    if statistic not in RULES:
        raise EmortError(f"unknown statistic {statistic!r} (one of {', '.join(RULES)})")

    by_seed: dict[int, dict[tuple, dict]] = defaultdict(dict)
    first: dict | None = None
    for d in report_dirs:
        f = Path(d) / "report.json"
        try:
            rep = json.loads(f.read_text())
            same = {"split": rep["split"], "speakers": sorted(rep.get("speakers") or []), "clips": rep.get("clips"),
                    "options": _comparable(rep["options"]),
                    # the edit the bundle makes: edit_hash where the report records it (0.9), else the whole bundle's
                    "bundle": (rep.get("bundle") or {}).get("edit_hash")}
            seed = int(rep["options"]["seed"])
            rows = [r for r in rep["rows"] if r.get("condition") == "emort"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise EmortError(f"{f}: not a readable `emort eval enhance` report ({type(e).__name__}: {e})") from None
        if first is None:
            first = same
        for k in ("split", "speakers", "clips", "options"):
            if same[k] != first[k]:
                raise EmortError(f"{f}: other {k} than the first report ({same[k]} vs {first[k]})")
        if same["bundle"] and first["bundle"] and same["bundle"] != first["bundle"]:
            raise EmortError(f"{f}: made by a bundle whose edit differs from the first report's (edit_hash {same['bundle']} vs {first['bundle']})")
        first["bundle"] = first["bundle"] or same["bundle"]
        for row in rows:
            key = setting_key(row)
            if key in by_seed[seed] and by_seed[seed][key]["gain"] != row["gain"]:
                raise EmortError(f"{f}: seed {seed} at {key[0]:g} dB was measured already by another report, with other results")
            by_seed[seed][key] = row
    if not by_seed:
        raise EmortError("no emort rows in the reports given")
    seeds = sorted(by_seed)
    common = set.intersection(*(set(v) for v in by_seed.values()))
    partial = sorted(set.union(*(set(v) for v in by_seed.values())) - common)
    rows = []
    for key in sorted(common):
        gain, worst, mean = average_cells([by_seed[s][key]["gain"] for s in seeds])
        row = {**dict(zip(KEY_FIELDS, key)), "gain": gain,
               "worst_gain": worst, "mean_gain": mean,
               "per_seed_worst": {s: by_seed[s][key]["worst_gain"] for s in seeds}}
        if all("soft_gain" in by_seed[s][key] for s in seeds):
            sg, sw, sm = average_cells([by_seed[s][key]["soft_gain"] for s in seeds])
            row.update(soft_gain=sg, worst_soft_gain=sw, mean_soft_gain=sm,
                       per_seed_worst_soft={s: by_seed[s][key]["worst_soft_gain"] for s in seeds})
        elif statistic == "soft":
            raise EmortError(f"setting {key} has no soft UA gains in some report (made before emort 0.21): rerun it or use --statistic ua")
        rows.append(row)
    if not rows:
        raise EmortError(f"no setting was measured with every seed ({', '.join(map(str, seeds))})")
    return {"split": first["split"], "seeds": seeds, "options": first["options"], "rows": rows, "chosen": choose(rows, statistic), "statistic": statistic,
            "left_out": [dict(zip(KEY_FIELDS, k)) for k in partial]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="report folders of `emort eval enhance` (one or more per noise seed)")
    ap.add_argument("--json", type=Path, help="write the chosen options (a defaults file for `emort export defaults`)")
    from emort.evaluation.enhance_eval import RULES

    ap.add_argument("--statistic", choices=tuple(RULES), default="ua",
                    help="what the rule reads in each cell: ua (UA gain) or soft (soft UA gain)")
    a = ap.parse_args(argv)
    try:
        res = seed_means(a.reports, a.statistic)
    except EmortError as e:
        raise SystemExit(f"error: {e}") from None
    corpora = sorted(res["rows"][0]["gain"])
    judges = sorted(res["rows"][0]["gain"][corpora[0]])
    print(f"{res['split']} split, UA gain in points, mean over noise seeds {', '.join(map(str, res['seeds']))}")
    # Label the other settings only where the rows differ in them (the output of a plain amount sweep is unchanged).
    extra = [k for k in ("contrast", "part", "smooth_s", "smooth_bands") if len({r[k] for r in res["rows"]}) > 1]

    def table(gain: str, per_seed: str, chosen_mark: str) -> None:
        """One row per setting: each cell's seed-mean ``gain``, worst, mean, each seed's worst."""
        print("amount dB | " + "".join(f"{k} | " for k in extra) + " | ".join(f"{c} {j}" for c in corpora for j in judges)
              + " | worst | mean | worst per seed")
        for r in res["rows"]:
            print(f"{r['amount_db']:g} | " + "".join(f"{r[k]} | " if isinstance(r[k], str) else f"{r[k]:g} | " for k in extra)
                  + " | ".join(f"{100 * r[gain][c][j]:+.1f}" for c in corpora for j in judges)
                  + f" | {100 * r[f'worst_{gain}']:+.1f} | {100 * r[f'mean_{gain}']:+.1f} | "
                  + " ".join(f"{100 * v:+.1f}" for v in r[per_seed].values()) + (chosen_mark if r is res["chosen"] else ""))

    table("gain", "per_seed_worst", " <- chosen" if res["statistic"] == "ua" else " <- chosen (by the soft rule, below)")
    if all("soft_gain" in r for r in res["rows"]):
        print(f"soft UA gain in points (the rule reads: {res['statistic']})")
        table("soft_gain", "per_seed_worst_soft", " <- chosen")
    if res["left_out"]:
        print(f"left out (not measured with every seed): {res['left_out']}")
    if a.json:
        from emort.evaluation.enhance_eval import rule_text
        from emort.runtime.atomic import write_json_atomic

        c = res["chosen"]
        # res["options"] holds no prosody settings (_comparable): the evaluation runs none, so they
        # are not chosen here and not written (emort export defaults would otherwise reset them)
        write_json_atomic(a.json, {**res["options"], "amount_db": c["amount_db"], "smooth_s": c["smooth_s"],
                                   "smooth_bands": c["smooth_bands"], "contrast": c["contrast"], "part": c["part"],
                                   "rule": rule_text(res["statistic"], ", ".join(map(str, res["seeds"]))),
                                   "split": res["split"], "reports": [str(r) for r in a.reports]})


if __name__ == "__main__":
    main()
