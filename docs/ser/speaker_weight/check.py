"""The candidates of docs/ser/speaker_weight/PREREGISTRATION.md on six validation cells (``val``), or, after
the decision only, the test speakers with the shipped models (``test``); writes
docs/ser/speaker_weight/cells_<split>.json.

    python docs/ser/speaker_weight/check.py val

``val`` needs runs/small_groups/ser_speaker_v2 (docs/ser/small_groups/report.md) and
runs/single_loco/speaker_wo_* (docs/ser/single_loco/run.sh); the [train,eval] extras and resemblyzer;
run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emort import Scorer
from emort.evaluation.scorer_compare import (
    CORPORA,
    SHARED_DATA,
    cell_features,
    cell_pool,
    ua_present,
)
from emort.runtime.frontend import fit_norm
from emort.runtime.ustats import fuse_weighted, speaker_stats_from
from emort.training.data import NormStats
from emort.training.ser import load_ser, predict
from emort.training.splits import VAL2_SPEAKERS as V2
from emort.training.splits import VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
WEIGHTS = (0.0, 0.5, 1.0)
reader = Scorer.load(per_speaker=True, threads=2)  # the runtime's log-mel (and, for the test, the shipped models)
LABELS = tuple(reader.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
spk = c.speakers


_MELS: dict[int, np.ndarray] = {}  # the validation speakers' clips are read by two cells: once


def mels_of(mask: np.ndarray) -> dict[int, np.ndarray]:
    """The runtime log-mel of every clip of the speakers in ``mask`` (all their clips, any label)."""
    keep = np.where(np.isin(spk, sorted(set(spk[mask]))))[0]
    for k in keep:
        if int(k) not in _MELS:
            _MELS[int(k)] = reader.log_mel(*sf.read(c.items[k].path, dtype="float32"))
    print(f"  log-mels of {len(keep)} clips", flush=True)
    return {int(k): _MELS[int(k)] for k in keep}


def ser_probs(model, mels: dict[int, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The per-speaker SER's probabilities of ``rows``, each speaker z-scored over all its clips."""
    out = np.zeros((len(rows), len(LABELS)))
    for s in sorted(set(spk[rows])):
        own = [k for k in mels if spk[k] == s]
        st = NormStats.fit([mels[k] for k in own])
        idx = [i for i, k in enumerate(rows) if spk[k] == s]
        out[idx] = predict(model, [mels[rows[i]] for i in idx], st)[0]
    return out


def cells_for(p_ser: np.ndarray, p_cls: np.ndarray, rows: np.ndarray, name: str) -> dict[str, dict[str, float]]:
    out = {}
    for w in WEIGHTS:
        p = fuse_weighted(p_ser, p_cls, w)
        for k in CORPORA:
            m = c.corpora[rows] == k
            if m.any():
                out.setdefault(f"w={w:g}", {})[f"{name} {k}"] = ua_present(c.y[rows][m], p[m], len(LABELS))
    return out


out: dict = {"split": split, "weights": list(WEIGHTS), "cells": {}}
if split == "val":
    xs, xg = cell_features(c.items, reader.bundle.mel, "SG").values()
    x = np.hstack([xs, xg])
    ref = speaker_stats_from(x, spk)  # each speaker z-scored over all its clips

    def classifier(train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        clf = StatsClassifier(labels=LABELS, C=0.01, model="logreg").fit(x[train], c.y[train], spk[train], ref)
        return clf.predict_proba(x[rows], spk[rows], ref)

    groups = np.isin(spk, list(VAL_SPEAKERS) + list(V2))
    rows = np.where(c.canonical & groups)[0]
    model, cfg = load_ser(Path("runs/small_groups/ser_speaker_v2"))
    assert not set(cfg["split"]["train_speakers"]) & set(spk[rows])
    p_cls = classifier(c.canonical & ~c.test & ~groups, rows)
    for w, r in cells_for(ser_probs(model, mels_of(c.canonical & groups), rows), p_cls, rows, "held-out").items():
        out["cells"].setdefault(w, {}).update(r)
    for k in CORPORA:
        rows = np.where(c.canonical & (c.corpora == k) & ~c.test)[0]
        model, cfg = load_ser(Path(f"runs/single_loco/speaker_wo_{k}"))
        assert not any(s.startswith(k + "/") for s in cfg["split"]["train_speakers"])
        p_cls = classifier(c.canonical & ~c.test & (c.corpora != k), rows)
        for w, r in cells_for(ser_probs(model, mels_of(c.canonical & (c.corpora == k) & ~c.test), rows), p_cls, rows, "LOCO").items():
            out["cells"].setdefault(w, {}).update(r)
        print(k, {w: round(r[f"LOCO {k}"], 3) for w, r in out["cells"].items()}, flush=True)
else:  # the shipped per-speaker SER and classifier (its ser_weight 0: score_analyses gives the classifier's probabilities)
    assert reader.stats_spec.ser_weight == 0.0 and reader.joint
    rows = np.where(c.canonical & c.test)[0]
    p_ser, p_cls = np.zeros((len(rows), len(LABELS))), np.zeros((len(rows), len(LABELS)))
    for s in sorted(set(spk[rows])):
        own = np.where(spk == s)[0]  # all its clips, any label, as a speaker folder
        an = [reader.analyse(*sf.read(c.items[k].path, dtype="float32")) for k in own]
        p_cls_own = np.array([[x.scores[lab] for lab in LABELS] for x in reader.score_analyses(an)])
        mean, std = fit_norm([a.log_mel for a in an])
        p_ser_own = np.array([[x.scores[lab] for lab in LABELS] for x in
                              reader.score_mels([((a.log_mel - mean[:, None]) / std[:, None]).astype(np.float32) for a in an])])
        for i, k in enumerate(rows):
            if spk[k] == s:
                j = int(np.where(own == k)[0][0])
                p_ser[i], p_cls[i] = p_ser_own[j], p_cls_own[j]
    out["cells"] = cells_for(p_ser, p_cls, rows, "test")
for w, r in out["cells"].items():
    v = list(r.values())
    r["worst"], r["mean"] = min(v), float(np.mean(v))
    print(w, {k: round(x, 3) for k, x in r.items()}, flush=True)
if split == "val":
    base = out["cells"]["w=0"]
    ok = {w: r for w, r in out["cells"].items() if w != "w=0" and r["worst"] >= base["worst"] + 0.02 and r["mean"] >= base["mean"]}
    chosen = None
    if ok:
        best = max(r["worst"] for r in ok.values())
        chosen = max((w for w in ok if ok[w]["worst"] >= best - 0.02), key=lambda w: ok[w]["mean"])
    out["rule"] = {"qualify": sorted(ok), "adopted": chosen}
    print("rule: adopted", chosen)
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
