"""The rule of docs/eval/per_emotion/PREREGISTRATION.md: one edit amount per target emotion.

Reads the committed validation reports of docs/eval/parts (per group and noise seed: each
corpus x judge cell's per-emotion recall for the full edit at 0.5, 1, 2 and 4 dB, `uncond`, and
for the original clips), composes every policy {emotion: amount} exactly (a clip's verdict
depends only on its own edit), and applies the rule. Prints the incumbent, the best policies and
the decision; ``--json`` writes them.

    python docs/eval/per_emotion/rule.py --json docs/eval/per_emotion/decision.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent / "parts"
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
AMOUNTS = (0.5, 1.0, 2.0, 4.0)
INCUMBENT = (0.5,) * 6
TIE, MARGIN = 0.001, 0.005  # 0.1 and 0.5 UA point


def load(group: str) -> tuple[dict, dict]:
    """Seed-mean recalls: ``recall[(corpus, judge, amount)][emotion]`` and the originals' UA per (corpus, judge)."""
    reports = [json.loads((ROOT / f"{group}_s{s}" / "report.json").read_text()) for s in (0, 1)]
    recall: dict = {}
    original: dict = {}
    for corpus in ("emodb", "nemo", "ravdess"):
        for judge in ("J1", "J2", "J3"):
            original[(corpus, judge)] = reports[0]["original"][corpus][judge]["ua"]
            for a in AMOUNTS:
                per_seed = []
                for rep in reports:
                    row = next(r for r in rep["rows"] if r["condition"] == "emort" and r["amount_db"] == a
                               and r["contrast"] == "uncond" and r.get("part", "full") == "full" and not r.get("smooth_bands"))
                    per_seed.append(row["table"][corpus][judge]["recall"])
                recall[(corpus, judge, a)] = {e: float(np.mean([r[e] for r in per_seed])) for e in EMOTIONS
                                              if per_seed[0].get(e) is not None}
    return recall, original


def cells(policy: tuple, recall: dict, original: dict) -> list[float]:
    """The policy's UA gain in each corpus x judge cell of one group."""
    out = []
    for (corpus, judge), ua0 in original.items():
        rec = [recall[(corpus, judge, a)][e] for e, a in zip(EMOTIONS, policy) if e in recall[(corpus, judge, a)]]
        out.append(float(np.mean(rec)) - ua0)
    return out


def best(scored: dict) -> tuple:
    """The rule's best policy among ``scored`` {policy: (W, M)}."""
    top = max(w for w, _ in scored.values())
    near = [p for p, (w, _) in scored.items() if w >= top - TIE]
    return max(near, key=lambda p: (scored[p][1], -float(np.mean(p))))


def wm(c: list[float]) -> tuple[float, float]:
    return min(c), float(np.mean(c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    groups = {g: load(g) for g in ("v1", "v2")}
    policies = list(itertools.product(AMOUNTS, repeat=6))
    per = {g: {p: cells(p, *groups[g]) for p in policies} for g in groups}
    scored = {"v1": {p: wm(per["v1"][p]) for p in policies}, "v2": {p: wm(per["v2"][p]) for p in policies},
              "both": {p: wm(per["v1"][p] + per["v2"][p]) for p in policies}}
    name = lambda p: ", ".join(f"{e} {x:g}" for e, x in zip(EMOTIONS, p))  # noqa: E731
    out: dict = {"incumbent": {k: scored[k][INCUMBENT] for k in scored}, "uniform": {}, "checks": {}}
    for x in AMOUNTS:
        out["uniform"][x] = {k: scored[k][(x,) * 6] for k in scored}
    print("UA gain, worst / mean cell, points (seed-mean recalls of seeds 0-1):")
    print(f"{'policy':58s} {'V1':>13s} {'V2':>13s} {'both':>13s}")
    fmt = lambda s: f"{100 * s[0]:+5.1f} / {100 * s[1]:+5.1f}"  # noqa: E731
    for x in AMOUNTS:
        p = (x,) * 6
        print(f"{'all ' + format(x, 'g') + ' dB' + (' (incumbent)' if p == INCUMBENT else ''):58s} "
              f"{fmt(scored['v1'][p])} {fmt(scored['v2'][p])} {fmt(scored['both'][p])}")
    passed = True
    for chosen_on, held in (("v1", "v2"), ("v2", "v1")):
        p = best(scored[chosen_on])
        w, m = scored[held][p]
        w0, m0 = scored[held][INCUMBENT]
        ok = w >= w0 + MARGIN and m >= m0
        passed &= ok
        out["checks"][f"chosen_on_{chosen_on}"] = {"policy": dict(zip(EMOTIONS, p)), "on_" + chosen_on: scored[chosen_on][p],
                                                   "on_" + held: (w, m), "incumbent_on_" + held: (w0, m0), "passes": ok}
        print(f"best on {chosen_on.upper()}: {name(p):45s} {fmt(scored['v1'][p])} {fmt(scored['v2'][p])} {fmt(scored['both'][p])}"
              f"  -> on {held.upper()} {'passes' if ok else 'fails'} (incumbent there {fmt((w0, m0))})")
    p = best(scored["both"])
    w, m = scored["both"][p]
    w0, m0 = scored["both"][INCUMBENT]
    adopt = passed and w > w0 + MARGIN and m >= m0
    print(f"best on both: {name(p):45s} {fmt(scored['v1'][p])} {fmt(scored['v2'][p])} {fmt(scored['both'][p])}")
    out["best_on_both"] = {"policy": dict(zip(EMOTIONS, p)), "scores": {k: scored[k][p] for k in scored},
                           "cells": {"v1": per["v1"][p], "v2": per["v2"][p]}}
    out["incumbent_cells"] = {"v1": per["v1"][INCUMBENT], "v2": per["v2"][INCUMBENT]}
    out["cell_order"] = [f"{c}/{j}" for c, j in groups["v1"][1]]
    out["cross_group_checks_pass"] = passed
    out["adopt"] = adopt
    print("decision:", "adopt " + name(p) if adopt else "keep one amount (0.5 dB)" + ("" if passed else ": a cross-group check fails"))
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
