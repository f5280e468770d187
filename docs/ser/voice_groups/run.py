"""Speakers found by voice (docs/ser/voice_groups/PREREGISTRATION.md). From the repository root:

    python docs/ser/voice_groups/run.py choose   # B-cubed F1 of each threshold, the 31 non-test speakers in one pool
    python docs/ser/voice_groups/run.py val      # UA on the validation speakers in one pool, at the chosen threshold
    python docs/ser/voice_groups/run.py test     # the same on the test speakers (once, after the decision)

Writes docs/ser/voice_groups/<split>.json and prints a table. Reads the corpora from
../shared/data (or $EMORT_SHARED_DATA); needs the [train] extra (the corpus readers) and the
shipped bundle's voice encoder (the runtime's).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.training import corpora

sys.path.insert(0, str(Path(__file__).parent))
from cluster import VOICE_THRESHOLD, group_by_voice  # noqa: E402

HERE = Path(__file__).parent
DATA = Path(os.environ.get("EMORT_SHARED_DATA", "../shared/data"))
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
TEST = {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22", "nemo/IC0", "nemo/KS0"}
VAL = {"emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0"}
THRESHOLDS = [round(0.55 + 0.05 * k, 2) for k in range(8)]  # 0.55 ... 0.90


def bcubed(speakers: list[str], groups: np.ndarray) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of ``groups`` against the true ``speakers`` (clip average)."""
    s = np.asarray(speakers)
    p = r = 0.0
    for i in range(len(s)):
        same_group = groups == groups[i]
        same_speaker = s == s[i]
        both = np.sum(same_group & same_speaker)
        p += both / np.sum(same_group)
        r += both / np.sum(same_speaker)
    p, r = p / len(s), r / len(s)
    return p, r, 2 * p * r / (p + r)


def ua(y: list[str], pred: list[str]) -> float:
    """Unweighted average recall over the classes present in ``y``."""
    return float(np.mean([np.mean([p == c for t, p in zip(y, pred) if t == c]) for c in sorted(set(y))]))


def items_of(keys: set[str]) -> list:
    every = corpora.read_specs([f"{c}={DATA / c}" for c in ("emodb", "ravdess", "nemo")])
    return [i for i in corpora.only_canonical(every, LABELS) if i.speaker_key in keys]


def analyse(scorer: Scorer, items: list, classifiers: bool) -> list:
    def one(i):
        wav, sr = sf.read(i.path, dtype="float32")
        return scorer.analyse(wav, sr, what=i.path, classifiers=classifiers, embed=False)

    with ThreadPoolExecutor(2) as pool:
        clips = list(pool.map(one, items))
        return scorer.embed_voices(clips, pool.map)


def choose() -> dict:
    keys = {i.speaker_key for i in corpora.read_specs([f"{c}={DATA / c}" for c in ("emodb", "ravdess", "nemo")])} - TEST
    items = items_of(keys)
    scorer = Scorer.load(per_speaker=True)
    t0 = time.time()
    clips = analyse(scorer, items, classifiers=True)
    emb = np.stack([c.voice for c in clips])
    speakers = [i.speaker_key for i in items]
    rows = []
    for t in THRESHOLDS:
        t1 = time.time()
        g = group_by_voice(emb, t)
        p, r, f = bcubed(speakers, g)
        per_corpus = {}
        for corpus in ("emodb", "nemo", "ravdess"):  # each corpus's speakers alone, as a folder of one corpus would be
            k = [n for n, i in enumerate(items) if i.corpus == corpus]
            per_corpus[corpus] = round(float(bcubed([speakers[n] for n in k], group_by_voice(emb[k], t))[2]), 4)
        rows.append({"threshold": t, "groups": int(g.max()) + 1, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                     "f1_per_corpus_pool": per_corpus, "seconds": round(time.time() - t1, 3)})
        print(f"T {t:.2f}: {rows[-1]['groups']:3d} groups for {len(keys)} speakers, B-cubed P {p:.3f} R {r:.3f} F1 {f:.3f}; "
              f"per-corpus pools {per_corpus}", flush=True)
    best = max(r["f1"] for r in rows)
    chosen = max(r["threshold"] for r in rows if r["f1"] >= best - 0.005)
    print(f"chosen T = {chosen} (largest F1 {best:.4f}; ties within 0.005 to the larger T)")
    return {"speakers": sorted(keys), "clips": len(items), "analysis_s": round(time.time() - t0, 1), "rows": rows, "chosen": chosen}


def evaluate(keys: set[str], threshold: float) -> dict:
    items = items_of(keys)
    scorer = Scorer.load(per_speaker=True)
    single = Scorer.load()
    assert single.ser_name == "ser_clip"
    clips = analyse(scorer, items, classifiers=True)
    emb = np.stack([c.voice for c in clips])
    speakers = [i.speaker_key for i in items]

    def grouped(groups) -> list[str]:
        pred = [""] * len(items)
        for g in sorted(set(groups)):
            k = [n for n, x in enumerate(groups) if x == g]
            for n, s in zip(k, scorer.score_analyses([clips[n] for n in k])):
                pred[n] = s.prediction
        return pred

    g = group_by_voice(emb, threshold)
    methods = {
        "true speakers (folders)": grouped(speakers),
        f"speakers found by voice (T {threshold})": grouped(list(g)),
        "all clips as one speaker": grouped([0] * len(items)),
        "single clip (ser_clip)": [single.score(*sf.read(i.path, dtype="float32")).prediction for i in items],
    }
    p, r, f = bcubed(speakers, g)
    out = {"speakers": sorted(keys), "clips": len(items), "threshold": threshold, "groups": int(g.max()) + 1,
           "bcubed": {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)},
           "group_sizes": sorted(np.bincount(g).tolist(), reverse=True), "ua": {}}
    for name, pred in methods.items():
        out["ua"][name] = {c: round(ua([i.emotion for i in items if i.corpus == c], [pp for i, pp in zip(items, pred) if i.corpus == c]), 4)
                           for c in ("emodb", "nemo", "ravdess")}
    print(f"{len(keys)} speakers, {len(items)} clips, {out['groups']} groups found (B-cubed P {p:.3f} R {r:.3f} F1 {f:.3f}); sizes {out['group_sizes']}")
    print(f"{'UA':40s} {'EmoDB':>7s} {'nEMO':>7s} {'RAVDESS':>7s}")
    for name, row in out["ua"].items():
        print(f"{name:40s} {row['emodb']:7.3f} {row['nemo']:7.3f} {row['ravdess']:7.3f}")
    return out


if __name__ == "__main__":
    split = sys.argv[1]
    if split == "choose":
        res = choose()
    elif split in ("val", "test"):
        res = evaluate(VAL if split == "val" else TEST, float(sys.argv[2]) if len(sys.argv) > 2 else VOICE_THRESHOLD)
    else:
        sys.exit("usage: run.py choose | val [T] | test [T]")
    (HERE / f"{split}.json").write_text(json.dumps(res, indent=1) + "\n")
