"""``python -m emort.evaluation.adaptive_eval``: a per-clip amount chosen by emort's own SER,
against fixed amounts, under the three judges (own-emotion enhancement).

Each clip's edit toward its own emotion is planned once; at every amount of a ladder the
calibrated gain is rendered and judged (J1 / J2 / J3 of ``emort eval enhance``, fitted on the
training speakers), and the SER that conditions the edit reads the edited log-mel
(:meth:`emort.runtime.enhancer.Enhancer.target_probability`). An adaptive candidate
``(threshold, top, fallback)`` gives a clip the smallest ladder amount up to ``top`` at which
the SER's probability of the target reaches ``threshold``, else ``fallback``. The judges'
verdicts of each clip depend only on that clip (each speaker is normalised with its original
clips), so every candidate's table is assembled exactly from the per-amount verdicts.

Rule and candidates: docs/eval/adaptive/PREREGISTRATION.md. Writes ``OUT/report.json`` and
``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

LADDER = (0.5, 1.0, 2.0, 3.0, 4.0)
THRESHOLDS = (0.5, 0.7, 0.9)
TOPS = (2.0, 4.0)
FALLBACKS = ("top", "bottom")
#: Within this many UA points of the best worst cell, the larger mean wins (the preregistered tie).
TIE = 0.005
#: An adaptive winner is adopted only if its worst cell beats the fixed 0.5 dB's by this much.
MARGIN = 0.01


def adaptive_choice(p: np.ndarray, ladder: tuple[float, ...], threshold: float, top: float, fallback: str) -> np.ndarray:
    """Index into ``ladder`` per clip: the smallest amount <= ``top`` whose SER probability
    ``p[:, i]`` reaches ``threshold``; where none does, ``top`` (``fallback="top"``) or the
    smallest amount (``"bottom"``). ``p``: ``(clips, len(ladder))``."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    allowed = np.array([a <= top for a in ladder])
    if not allowed.any():
        raise ValueError(f"top {top} lies below the ladder {ladder}")
    top_i = int(np.flatnonzero(allowed)[-1])
    hit = (p >= threshold) & allowed[None]
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), top_i if fallback == "top" else 0)
    return first.astype(int)


def choose(rows: list[dict]) -> dict:
    """The preregistered rule: largest worst cell; within TIE of it, the larger mean."""
    best_worst = max(r["worst_gain"] for r in rows)
    near = [r for r in rows if r["worst_gain"] >= best_worst - TIE - 1e-9]  # "within 0.5 points" includes 0.5
    return max(near, key=lambda r: (r["mean_gain"], r["worst_gain"]))


def judge_plans(ctx, plans, options) -> dict:
    """Render every plan at ``options`` and judge it: ``{"pred": {judge: (N,)}, "beyond": {judge:
    bool (N,)}, "change": (N,) dB}``. Each clip's verdict depends on that clip alone (its speaker is
    normalised with the original clips), so rows can be assembled clip by clip (:func:`assemble`)."""
    wavs, change = ctx.render(plans, options)
    feats = ctx.panel.wav_features(wavs)
    return {"pred": ctx.judge(feats), "beyond": ctx.panel.beyond_range(feats, ctx.speakers, ctx.reference), "change": change}


def assemble(ctx, base: dict, name: str, judged: list[dict], idx: np.ndarray, amounts, **extra) -> dict:
    """One candidate's row: clip i takes its verdicts from ``judged[idx[i]]`` (rendered at
    ``amounts[idx[i]]`` dB). UA gains per corpus and judge over ``base`` (the originals' table),
    worst and mean cell, the amounts applied, the share beyond each judge's range."""
    from emort.evaluation.enhance_eval import _gains, _mean, _worst

    n = len(idx)
    judges = list(judged[0]["pred"])
    pr = {j: np.array([judged[idx[i]]["pred"][j][i] for i in range(n)]) for j in judges}
    by = {j: float(np.mean([judged[idx[i]]["beyond"][j][i] for i in range(n)])) for j in judges}
    tab = ctx.table(pr)
    g = _gains(base, tab)
    amt = np.array([amounts[i] for i in idx], np.float64)
    return {"candidate": name, **extra, "gain": g, "worst_gain": _worst(g), "mean_gain": _mean(g), "table": tab,
            "amount_mean_db": float(amt.mean()), "amount_share": {f"{a:g}": float((amt == a).mean()) for a in amounts},
            "change_db_mean": float(np.mean([judged[idx[i]]["change"][i] for i in range(n)])), "beyond": by}


def qualifies(best: dict, reference: dict | None, candidate: bool) -> bool:
    """The preregistered adoption test: ``best`` (the rule's winner) is adopted only if it is a
    candidate (not a reference row) and its worst cell beats ``reference``'s (the shipped edit) by
    at least :data:`MARGIN`."""
    return bool(candidate and reference is not None and best["worst_gain"] >= reference["worst_gain"] + MARGIN - 1e-9)


def originals_beyond(ctx) -> dict[str, float]:
    """Per judge, the share of the split's original clips beyond the judge's range (the baseline
    of every row's ``beyond``)."""
    return {j: float(v.mean()) for j, v in ctx.panel.beyond_range(ctx.f_orig, ctx.speakers, ctx.reference).items()}


def write_report(out: Path, report: dict) -> None:
    """``OUT/report.json`` and ``OUT/report.md`` (:func:`render_markdown`), atomically; the
    Markdown is printed too."""
    from emort.runtime.atomic import write_json_atomic, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", report)
    md = render_markdown(report)
    write_text_atomic(out / "report.md", md)
    print(md)


def run_arguments(ap: argparse.ArgumentParser, out: str, data_help: str = "KIND=PATH, repeatable") -> None:
    """The options every run of these evaluations takes: --data, --bundle, --split, --out, --max-clips."""
    ap.add_argument("--data", action="append", default=None, help=data_help)
    ap.add_argument("--bundle", default=None, help="another bundle (default: the shipped one)")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--max-clips", type=int, default=None, help="per corpus (quick runs)")


def main(argv: list[str] | None = None) -> int:
    from emort.evaluation.enhance_eval import Context, EvalConfig
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    run_arguments(ap, "reports/adaptive")
    ap.add_argument("--candidates", default=None,
                    help="test split: the candidates to report, 'fixed@A' or 'auto@THRESHOLD,TOP,FALLBACK', ';'-separated (default: all)")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data is required")
    t0 = time.perf_counter()
    ctx = Context(EvalConfig(data=args.data, bundle=args.bundle, split=args.split, conversion=False, max_clips=args.max_clips))
    enh = ctx.enhancer
    base_pred = ctx.judge(ctx.f_orig)
    base = ctx.table(base_pred)
    plans, o, _ = ctx.plans()
    o = replace(o, subspace=0)  # the model's whole edit (the run in docs/eval/adaptive/val.md predates the edit basis)
    ladder = LADDER
    p = np.stack([enh.target_probability(pl, o, ladder) for pl in plans])  # (clips, ladder)
    p0 = np.array([pl.scores_before[pl.target] for pl in plans])
    judged = []
    for a in ladder:
        judged.append(judge_plans(ctx, plans, replace(o, amount_db=a, guidance=None)))
        print(f"{args.split}: amount {a:g} dB judged ({time.perf_counter() - t0:.0f} s)", flush=True)
    n = len(plans)

    def row(name: str, idx: np.ndarray, **extra) -> dict:
        r = assemble(ctx, base, name, judged, idx, ladder, **extra)
        r["ser_target_p_mean"] = float(np.mean(p[np.arange(n), idx]))
        return r

    rows = [row(f"fixed@{a:g}", np.full(n, i), kind="fixed", amount_db=a) for i, a in enumerate(ladder)]
    for th, top, fb in itertools.product(THRESHOLDS, TOPS, FALLBACKS):
        rows.append(row(f"auto@{th:g},{top:g},{fb}", adaptive_choice(p, ladder, th, top, fb), kind="auto", threshold=th, top=top, fallback=fb))
    if args.candidates:
        keep = set(args.candidates.split(";"))
        rows = [r for r in rows if r["candidate"] in keep]
    fixed05 = next((r for r in rows if r["candidate"] == "fixed@0.5"), None)
    report = {"split": args.split, "speakers": sorted(set(ctx.speakers)), "clips": ctx.corpus_clips(),
              "ladder_db": list(ladder), "options": o.to_dict(), "original": base,
              "ser_target_p_source_mean": float(p0.mean()), "ser_target_p": {f"{a:g}": float(p[:, i].mean()) for i, a in enumerate(ladder)},
              "beyond_original": originals_beyond(ctx),
              "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    if args.split == "val":
        best = choose(rows)
        report["chosen"] = {"candidate": best["candidate"], "worst_gain": best["worst_gain"], "mean_gain": best["mean_gain"],
                            "adopted": qualifies(best, fixed05, best["kind"] == "auto"), "rule": "docs/eval/adaptive/PREREGISTRATION.md"}
    write_report(args.out, report)
    return 0


def _pts(v: float) -> str:
    """A gain in points, signed, one decimal; never "-0.0" (averages of cancelling cells)."""
    return f"{round(v * 100, 1) + 0.0:+.1f}"


def render_markdown(rep: dict) -> str:
    corpora = sorted(rep["original"])
    judges = sorted(next(iter(rep["original"].values())))
    head = " | ".join(f"{c} {j}" for c in corpora for j in judges)
    ser = ""
    if "ser_target_p" in rep:
        ser = (f" SER probability of the target, mean: source {rep['ser_target_p_source_mean']:.3f}; "
               + ", ".join(f"{a} dB {v:.3f}" for a, v in rep["ser_target_p"].items()) + ".")
    L = [f"# {rep.get('title', 'Per-clip amount chosen by the SER')} ({rep['split']} speakers: {', '.join(rep['speakers'])})", "",
         f"Clips: {json.dumps(rep['clips'])}. UA gain over the original clips, points; beyond: share of clips beyond "
         f"each judge's range (originals: {', '.join(f'{j} {v:.2f}' for j, v in rep['beyond_original'].items())})." + ser, "",
         f"| candidate | worst | mean | {head} | mean amount (dB) | beyond J1 / J2 / J3 |",
         "|---|---:|---:|" + "---:|" * (len(corpora) * len(judges)) + "---:|---|"]
    for r in rep["rows"]:
        cells = " | ".join(_pts(r["gain"][c][j]) for c in corpora for j in judges)
        by = " / ".join(f"{r['beyond'][j]:.2f}" for j in judges)
        L.append(f"| {r['candidate']} | {_pts(r['worst_gain'])} | {_pts(r['mean_gain'])} | {cells} | {r['amount_mean_db']:.2f} | {by} |")
    if rep.get("chosen"):
        ch = rep["chosen"]
        L += ["", f"Chosen by the preregistered rule: **{ch['candidate']}** (worst {_pts(ch['worst_gain'])}, mean "
              f"{_pts(ch['mean_gain'])}); adopted: {ch['adopted']} ({ch['rule']})."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
