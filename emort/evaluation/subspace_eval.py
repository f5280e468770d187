"""``python -m emort.evaluation.subspace_eval``: the own-emotion edit projected onto the spectral
shapes along which a speaker's own recordings vary, under the three judges.

Natural variation (:func:`natural_basis`): each training-speaker clip's mean log-mel over its
active frames (the runtime's front end, model grid), minus its speaker's mean; the principal
components of these offsets. Each frame's gain of the edit is projected onto the first ``k``
(:func:`project`) and calibrated to the amount as the shipped edit is. Only training speakers
shape the basis; the rows are judged as in ``adaptive_eval`` (J1 / J2 / J3 of ``emort eval
enhance``). Rule and candidates: docs/eval/adaptive/PREREGISTRATION_subspace.md. Writes
``OUT/report.json`` and ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

RANKS = (2, 4, 8, 16)
AMOUNTS = (0.5, 1.0, 2.0)


def natural_basis(items, settings) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of within-speaker spectral variation: ``(components (n_mels, n_mels)
    float64, rows orthonormal, largest variance first; explained variance ratio (n_mels,))``.

    ``items``: corpus items (``.path``, ``.speaker_key``); each clip read through the runtime's
    front end (DC offset removed, the model's rate), its log-mel (dB) averaged over its active
    frames; each speaker's mean clip removed. Raises ValueError with fewer than two clips."""
    from emort.runtime.audio import model_rate_signal, read_audio, to_float, to_mono
    from emort.runtime.frontend import NATS_TO_DB, active_frames, log_mel

    by_spk: dict[str, list[np.ndarray]] = defaultdict(list)
    for it in items:
        a = read_audio(it.path)
        m = log_mel(model_rate_signal(to_mono(to_float(a.samples)), a.sample_rate, settings.sample_rate), settings)
        by_spk[it.speaker_key].append(m[:, active_frames(m)].mean(axis=1, dtype=np.float64) * NATS_TO_DB)
    offsets = np.concatenate([np.stack(v) - np.mean(v, axis=0) for v in by_spk.values() if len(v) > 1])
    if len(offsets) < 2:
        raise ValueError("natural_basis needs speakers with two clips or more")
    _, s, vt = np.linalg.svd(offsets, full_matrices=False)
    var = s**2
    return vt, var / var.sum()


def project(raw_db: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Each frame's gain ``raw_db[:, t]`` (``(n_mels, T)``) replaced by its orthogonal projection
    onto the rows of ``components`` ``(k, n_mels)``."""
    c = np.asarray(components, np.float64)
    return c.T @ (c @ np.asarray(raw_db, np.float64))


def main(argv: list[str] | None = None) -> int:
    from emort.evaluation.adaptive_eval import (
        MARGIN,
        assemble,
        choose,
        judge_plans,
        render_markdown,
    )
    from emort.evaluation.enhance_eval import Context, EvalConfig
    from emort.runtime.atomic import write_json_atomic, write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--bundle", default=None, help="another bundle (default: the shipped one)")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--out", type=Path, default=Path("reports/subspace"))
    ap.add_argument("--candidates", default=None,
                    help="the rows to run, 'full@A' or 'k@A' (e.g. '8@1'), ';'-separated (default: all of the preregistration)")
    ap.add_argument("--max-clips", type=int, default=None, help="per corpus (quick runs)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ctx = Context(EvalConfig(data=args.data, bundle=args.bundle, split=args.split, conversion=False, max_clips=args.max_clips))
    base = ctx.table(ctx.judge(ctx.f_orig))
    plans, o, _ = ctx.plans()
    basis, explained = natural_basis(ctx.train, ctx.enhancer.bundle.mel)
    print(f"basis from {len(ctx.train)} training clips: explained variance of 2/4/8/16 components "
          + " / ".join(f"{explained[:k].sum():.3f}" for k in RANKS) + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    wanted = [("full", a) for a in AMOUNTS] + [(k, a) for k in RANKS for a in AMOUNTS]
    if args.candidates:
        keep = args.candidates.split(";")
        wanted = [(int(c.split("@")[0]) if c.split("@")[0] != "full" else "full", float(c.split("@")[1])) for c in keep]
    rows = []
    projected: dict = {}
    for k, a in wanted:
        if k != "full" and k not in projected:
            projected[k] = [replace(p, raw_db=project(p.raw_db, basis[:k])) for p in plans]
        pl = plans if k == "full" else projected[k]
        judged = judge_plans(ctx, pl, replace(o, amount_db=a, guidance=None))
        name = f"{k}@{a:g}"
        rows.append(assemble(ctx, base, name, [judged], np.zeros(len(plans), int), (a,), rank=k, amount_db=a))
        r = rows[-1]
        print(f"{args.split} {name}: worst {r['worst_gain'] * 100:+.1f}, mean {r['mean_gain'] * 100:+.1f}, beyond J3 {r['beyond']['J3']:.2f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    report = {"title": "The edit projected onto natural within-speaker spectral variation", "split": args.split,
              "speakers": sorted(set(ctx.speakers)), "clips": {c: int(sum(1 for x in ctx.clips if x.corpus == c)) for c in sorted({x.corpus for x in ctx.clips})},
              "options": o.to_dict(), "original": base, "explained_variance": {str(k): float(explained[:k].sum()) for k in RANKS},
              "basis_training_clips": len(ctx.train),
              "beyond_original": {j: float(v.mean()) for j, v in ctx.panel.beyond_range(ctx.f_orig, ctx.speakers, ctx.reference).items()},
              "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    ref = next((r for r in rows if r["candidate"] == "full@0.5"), None)
    if args.split == "val":
        best = choose(rows)
        adopt = best["rank"] != "full" and ref is not None and best["worst_gain"] >= ref["worst_gain"] + MARGIN
        report["chosen"] = {"candidate": best["candidate"], "worst_gain": best["worst_gain"], "mean_gain": best["mean_gain"],
                            "adopted": bool(adopt), "rule": "docs/eval/adaptive/PREREGISTRATION_subspace.md"}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "report.json", report)
    write_text_atomic(args.out / "report.md", render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
