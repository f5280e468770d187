"""Validation check for PREREGISTRATION.md: per-speaker scoring with and without the voice
classifier, on originals and on edits toward each clip's own emotion, each speaker normalised
with its original clips. Validation speakers only.

    python docs/ser/reference_voice/check.py --data ../shared/data --out docs/ser/reference_voice/val.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from emort.runtime.audio import read_audio
from emort.runtime.enhancer import Enhancer
from emort.runtime.scorer import Scorer
from emort.training.corpora import only_canonical, read_corpus

VAL = {"emodb": ["10"], "ravdess": ["19", "20"], "nemo": ["MP0"]}


def ua(y: list[str], p: list[str]) -> float:
    labels = sorted(set(y))
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in labels]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--amounts", default="0.5,2")
    a = ap.parse_args()
    enh = Enhancer.load()
    scorers = {"voice": Scorer.load(per_speaker=True, voice=True), "no_voice": Scorer.load(per_speaker=True, voice=False)}
    assert scorers["voice"].needs_voice and not scorers["no_voice"].needs_voice
    res: dict = {"validation_speakers": VAL, "cells": {}}
    for corpus, speakers in VAL.items():
        items = [it for it in only_canonical(read_corpus(Path(a.data) / corpus, corpus)) if it.speaker in speakers]
        by_spk = defaultdict(list)
        for it in items:
            by_spk[it.speaker].append(it)
        for amount in [None, *[float(x) for x in a.amounts.split(",")]]:
            for name, sc in scorers.items():
                y, pred = [], []
                for _spk, its in sorted(by_spk.items()):
                    orig = [(au.samples, au.sample_rate) for au in (read_audio(it.path) for it in its)]
                    clips = orig if amount is None else [
                        (enh.enhance(w, sr, it.emotion, amount_db=amount).wav, sr) for (w, sr), it in zip(orig, its)]
                    scores = sc.score_speaker(clips, reference=orig)
                    y += [it.emotion for it in its]
                    pred += [s.prediction for s in scores]
                key = f"{corpus}/{'original' if amount is None else f'{amount:g}dB'}/{name}"
                res["cells"][key] = {"ua": ua(y, pred), "n": len(y), "pred": pred, "true": y}
                print(f"{key:32s} UA {res['cells'][key]['ua']:.3f}  n={len(y)}", flush=True)
    summary = {}
    for corpus in VAL:
        for name in scorers:
            o = res["cells"][f"{corpus}/original/{name}"]
            for amount in a.amounts.split(","):
                e = res["cells"][f"{corpus}/{float(amount):g}dB/{name}"]
                summary[f"{corpus}/{float(amount):g}dB/{name}"] = {
                    "change_pts": round(100 * (e["ua"] - o["ua"]), 1),
                    "top_class_changed": round(float(np.mean([p != q for p, q in zip(o["pred"], e["pred"])])), 3)}
    res["summary"] = summary
    d = {k: v["change_pts"] for k, v in summary.items() if k.split("/")[1] == "0.5dB"}
    voice_bad = any(v < -5.0 for k, v in d.items() if k.endswith("/voice"))
    novoice_ok = all(v >= -5.0 for k, v in d.items() if k.endswith("/no_voice"))
    res["rule"] = {"voice_below_-5_somewhere": voice_bad, "no_voice_at_or_above_-5_everywhere": novoice_ok,
                   "reference_defaults_to_no_voice": voice_bad and novoice_ok}
    for k, v in summary.items():
        print(f"{k:32s} change {v['change_pts']:+5.1f} pts, top class changed {v['top_class_changed']:.0%}")
    print("rule:", res["rule"])
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
