"""``python -m emort.evaluation.subspace_eval``: the own-emotion edit projected onto the spectral
shapes along which a speaker's own recordings vary, under the three judges.

Natural variation (:func:`emort.training.edit_basis.natural_basis`): each training-speaker clip's mean log-mel over its
active frames (the runtime's front end, model grid), minus its speaker's mean; the principal
components of these offsets. Each frame's gain of the edit is projected onto the first ``k``
(:func:`emort.runtime.editing.project_edit`, the function ``--subspace`` uses), or the projection is removed from it (``cK``: the complement), and
calibrated to the amount as the shipped edit is. The bundle's basis (``emort export edit-basis``)
is used where it carries one, else it is measured here; only training speakers shape it; the rows are judged as in ``adaptive_eval`` (J1 / J2 / J3 of ``emort eval
enhance``). Rules and candidates: docs/eval/adaptive/PREREGISTRATION_subspace.md, _complement.md and
_speaker.md (the last over edit seeds 0-3: ``--edit-seed`` runs, then ``--average``). Writes
``OUT/report.json`` and ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RANKS = (2, 4, 8, 16)
AMOUNTS = (0.5, 1.0, 2.0)


def _within(raw_db: np.ndarray, components: np.ndarray, keep: bool) -> np.ndarray:
    """The edit's projection onto ``components`` (``keep``), or the edit without it."""
    from emort.runtime.editing import project_edit

    part = project_edit(raw_db, components)
    return part if keep else raw_db - part


def seed_average(reports: list[dict]) -> list[dict]:
    """Rows present in every report (one per edit seed; same split and clips), each corpus x judge
    gain averaged over the reports, then the worst and mean cell of the averages (the project's
    rule over seeds: :func:`emort.evaluation.seed_mean.average_cells`, as ``seed_mean`` reads
    ``emort eval enhance`` reports)."""
    from emort.evaluation.seed_mean import average_cells

    keys = ("split", "speakers", "clips")
    for rep in reports[1:]:
        if any(rep.get(k) != reports[0].get(k) for k in keys):
            raise ValueError(f"seed_average: the reports differ in {', '.join(k for k in keys if rep.get(k) != reports[0].get(k))}")
    names = [r["candidate"] for r in reports[0]["rows"] if all(any(x["candidate"] == r["candidate"] for x in rep["rows"]) for rep in reports)]
    out = []
    for name in names:
        rows = [next(x for x in rep["rows"] if x["candidate"] == name) for rep in reports]
        g, worst, mean = average_cells([r["gain"] for r in rows])
        out.append({"candidate": name, "gain": g, "worst_gain": worst, "mean_gain": mean, "seeds": len(rows),
                    "amount_mean_db": rows[0]["amount_mean_db"], "beyond": {j: float(np.mean([r["beyond"][j] for r in rows])) for j in rows[0]["beyond"]}})
    return out


def main(argv: list[str] | None = None) -> int:
    from emort.evaluation.adaptive_eval import (
        assemble,
        choose,
        judge_plans,
        originals_beyond,
        qualifies,
        run_arguments,
        write_report,
    )
    from emort.evaluation.enhance_eval import Context, EvalConfig
    from emort.training.edit_basis import natural_basis, speaker_basis

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    run_arguments(ap, "reports/subspace", "KIND=PATH, repeatable (every run but --average)")
    ap.add_argument("--candidates", default=None,
                    help="the rows to run, 'full@A', 'K@A' (the first K components, e.g. '8@1'), 'cK@A' (the edit without them) "
                         "or 'sK@A' (the edit without the first K between-speaker components), "
                         "';'-separated (default: the subspace preregistration's)")
    ap.add_argument("--edit-seed", type=int, default=None, help="the edit's noise seed (default: the bundle's)")
    ap.add_argument("--average", nargs="+", type=Path, default=None,
                    help="no run: average the report.json of these OUT folders (one per --edit-seed) cell by cell, write OUT")
    args = ap.parse_args(argv)
    if args.average:
        import json

        reps = [json.loads((d / "report.json").read_text()) for d in args.average]
        rep = {**{k: reps[0][k] for k in ("split", "speakers", "clips", "original", "beyond_original")},
               "title": f"Edit seeds averaged ({len(reps)} reports: {', '.join(str(d) for d in args.average)})", "rows": seed_average(reps)}
        rule = (reps[0].get("chosen") or {}).get("rule")
        if rep["split"] == "val" and rule:  # the rule read on the average, as the four-seed preregistrations say
            best = choose(rep["rows"])
            ref = next((r for r in rep["rows"] if r["candidate"] == "full@0.5"), None)
            rep["chosen"] = {"candidate": best["candidate"], "worst_gain": best["worst_gain"], "mean_gain": best["mean_gain"],
                             "adopted": qualifies(best, ref, not best["candidate"].startswith("full")), "rule": rule,
                             "over": "the edit seeds averaged cell by cell"}
        write_report(args.out, rep)
        return 0
    if not args.data:
        ap.error("--data is required (except with --average)")
    wanted = [("full", a) for a in AMOUNTS] + [(str(k), a) for k in RANKS for a in AMOUNTS]
    if args.candidates:
        try:
            wanted = [(c.split("@")[0], float(c.split("@")[1])) for c in args.candidates.split(";")]
        except (IndexError, ValueError):
            ap.error(f"--candidates {args.candidates!r}: each is KIND@AMOUNT, e.g. full@0.5;16@1;c4@1;s4@2")
        bad = [k for k, _ in wanted if k != "full" and not re.fullmatch(r"[cs]?[1-9][0-9]*", k)]
        if bad:
            ap.error(f"--candidates: {', '.join(bad)} is not full, K, cK or sK")
    kinds = {k[0] if k[0] in "cs" else "k" for k, _ in wanted if k != "full"}
    if len(kinds) > 1:  # each preregistration has its own kind of rows
        ap.error("--candidates: do not mix kinds of rows (K, cK, sK) in one run")
    t0 = time.perf_counter()
    ctx = Context(EvalConfig(data=args.data, bundle=args.bundle, split=args.split, conversion=False, max_clips=args.max_clips))
    base = ctx.table(ctx.judge(ctx.f_orig))
    plans, o, _ = ctx.plans(**({"seed": args.edit_seed} if args.edit_seed is not None else {}))
    o = replace(o, subspace=0)  # rows project the plans themselves; "full" is the model's whole edit
    b = ctx.enhancer.bundle
    if b.edit_basis is not None and b.edit_basis_explained is not None:  # the basis the option uses (emort export edit-basis)
        basis, explained = b.edit_basis, b.edit_basis_explained
        source = f"the bundle's edit basis ({b.edit_basis_source.get('clips')} training clips)"
    else:  # measured here on the evaluation's training speakers
        basis, explained, used = natural_basis(ctx.train, b.mel)
        source = f"measured on {used} training clips"
    print(f"basis: {source}; explained variance of 2/4/8/16 components "
          + " / ".join(f"{explained[:k].sum():.3f}" for k in RANKS) + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = []
    projected: dict = {}
    voices, speakers_info = None, None
    if kinds == {"s"}:
        voices, v_explained, v_used = speaker_basis(ctx.train, b.mel)
        speakers_info = {"speakers": v_used, "components": len(voices),
                         "explained_variance": {str(k): float(v_explained[:k].sum()) for k in (2, 4, 8, 16)}}
        print(f"between-speaker basis from {v_used} training speakers: explained variance of 4/8 components "
              f"{v_explained[:4].sum():.3f} / {v_explained[:8].sum():.3f}", flush=True)
    for k, a in wanted:
        if k != "full" and k not in projected:
            # "8": the first 8 components; "c2": the edit minus the first 2; "s4": the edit minus the
            # first 4 between-speaker components
            rank = int(k.lstrip("cs"))
            have = len(voices) if k.startswith("s") else len(basis)
            if rank > have:
                raise SystemExit(f"subspace_eval: {k} asks for {rank} components; the basis has {have}")
            rows_of = (voices if k.startswith("s") else basis)[:rank]
            keep = k[0].isdigit()  # K keeps the projection; cK and sK remove it
            projected[k] = [replace(p, raw_db=_within(p.raw_db, rows_of, keep)) for p in plans]
        pl = plans if k == "full" else projected[k]
        judged = judge_plans(ctx, pl, replace(o, amount_db=a, guidance=None))
        name = f"{k}@{a:g}"
        rows.append(assemble(ctx, base, name, [judged], np.zeros(len(plans), int), (a,), rank=k, amount_db=a))
        r = rows[-1]
        print(f"{args.split} {name}: worst {r['worst_gain'] * 100:+.1f}, mean {r['mean_gain'] * 100:+.1f}, beyond J3 {r['beyond']['J3']:.2f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    title = {"s": "The edit without the shapes that tell speakers apart", "c": "The edit without its broadest within-speaker shapes"}
    report = {"title": title.get(next(iter(kinds), ""), "The edit projected onto natural within-speaker spectral variation"), "split": args.split,
              "speakers": sorted(set(ctx.speakers)), "clips": ctx.corpus_clips(),
              "options": o.to_dict(), "original": base, "explained_variance": {str(k): float(explained[:k].sum()) for k in RANKS},
              "basis": source, **({"speaker_basis": speakers_info} if speakers_info else {}),
              **({"edit_seed": args.edit_seed} if args.edit_seed is not None else {}),
              "beyond_original": originals_beyond(ctx),
              "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    ref = next((r for r in rows if r["candidate"] == "full@0.5"), None)
    if args.split == "val":
        best = choose(rows)
        rule = {"s": "speaker", "c": "complement"}.get(next(iter(kinds), ""), "subspace")
        report["chosen"] = {"candidate": best["candidate"], "worst_gain": best["worst_gain"], "mean_gain": best["mean_gain"],
                            "adopted": qualifies(best, ref, best["rank"] != "full"),
                            "rule": f"docs/eval/adaptive/PREREGISTRATION_{rule}.md"}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
