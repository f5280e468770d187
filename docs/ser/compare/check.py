"""The two studies of docs/ser/compare/PREREGISTRATION.md on the validation cells (``val``); writes
docs/ser/compare/cells_val.json.

    python docs/ser/compare/features.py   # ComParE of every clip, cached (~4 minutes)
    python docs/ser/compare/check.py val

Needs runs/clip_v2/none_s0 (``bash docs/ser/clip_v2/run.sh``), the [train,eval,egemaps] extras and
resemblyzer; run from the repository root. The test speakers are read by ``test.py`` only after an
adoption.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from features import compare_matrix  # noqa: E402

from emort import Scorer  # noqa: E402
from emort.evaluation.scorer_compare import CORPORA, SHARED_DATA, cell_features, cell_pool, group_cells, speaker_cells  # noqa: E402
from emort.runtime.ustats import fuse_weighted  # noqa: E402
from emort.training.data import NormStats  # noqa: E402
from emort.training.ser import load_ser, predict  # noqa: E402
from emort.training.splits import VAL2_SPEAKERS, VAL_SPEAKERS  # noqa: E402
from emort.training.stats_classifier import StatsClassifier  # noqa: E402

torch.set_num_threads(2)
BLOCK_WEIGHT = float(np.sqrt(88 / 6373))  # Cb: the ComParE block's columns after the scaler


class BlockWeighted(StatsClassifier):
    """A StatsClassifier whose scaled columns ``weights`` (``(D,)``) are multiplied in after the
    StandardScaler (folded into its ``scale_``), so a block's share of the L2 penalty is set."""

    def __init__(self, weights: np.ndarray, **kw):
        super().__init__(**kw)
        self.weights = np.asarray(weights, dtype=np.float64)

    def fit(self, features, labels, speakers, speaker_stats=None):
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(labels, dtype=np.int64)
        z = self._normalise(features, speakers, speaker_stats)
        self._scaler = StandardScaler().fit(z)
        self._scaler.scale_ = self._scaler.scale_ / self.weights
        self._svm = self._linear(len(np.unique(y))).fit(self._scaler.transform(z), y)
        return self


def make_classifier(n_plain: int, n_compare: int, weighted: bool, labels, norm: str) -> StatsClassifier:
    if not weighted:
        return StatsClassifier(labels=labels, C=0.01, model="logreg", norm=norm)
    w = np.concatenate([np.ones(n_plain), np.full(n_compare, BLOCK_WEIGHT)])
    return BlockWeighted(w, labels=labels, C=0.01, model="logreg", norm=norm)


def pick(cells: dict[str, dict[str, float]], base: str, candidates: list[str], worst_key: str, mean_key: str) -> dict:
    """The rule: worst >= base's + 0.02 and mean not lower; the best worst, within 0.02 the higher mean."""
    b = cells[base]
    ok = {n: cells[n] for n in candidates if cells[n][worst_key] >= b[worst_key] + 0.02 and cells[n][mean_key] >= b[mean_key]}
    chosen = None
    if ok:
        best = max(r[worst_key] for r in ok.values())
        chosen = max((n for n in ok if ok[n][worst_key] >= best - 0.02), key=lambda n: ok[n][mean_key])
    return {"qualify": sorted(ok), "adopted": chosen}


split = sys.argv[1] if len(sys.argv) > 1 else "val"
assert split == "val", "the test speakers are read by test.py, after an adoption only"
shipped = Scorer.load(threads=2)
LABELS = tuple(shipped.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
groups = np.isin(c.speakers, list(VAL_SPEAKERS) + list(VAL2_SPEAKERS))
xs, xg, xe = cell_features(c.items, shipped.bundle.mel, "SGE").values()
xc = compare_matrix([i.path for i in c.items])
print("ComParE", xc.shape, flush=True)
out: dict = {"split": split, "block_weight": BLOCK_WEIGHT}

# Study 1: per-speaker classifier, six cells
feats = {"SG": np.hstack([xs, xg]), "SGE": np.hstack([xs, xg, xe]), "SGC": np.hstack([xs, xg, xc]),
         "SGCb": np.hstack([xs, xg, xc]), "C (information)": xc, "GC (information)": np.hstack([xg, xc])}
n_sg = xs.shape[1] + xg.shape[1]


def make(name: str) -> StatsClassifier:
    return make_classifier(n_sg, xc.shape[1], name == "SGCb", LABELS, "speaker")


cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, groups, c.test, LABELS, make=make)
out["per_speaker"] = {"cells": cells, "rule": pick(cells, "SG", ["SGE", "SGC", "SGCb"], "worst", "mean")}
if out["per_speaker"]["rule"]["adopted"] in ("SGC", "SGCb") and "SGE" not in out["per_speaker"]["rule"]["qualify"]:
    a = out["per_speaker"]["rule"]["adopted"]
    out["per_speaker"]["rule"]["replaces_egemaps"] = cells[a]["worst"] >= cells["SGE"]["worst"] + 0.02
print("per-speaker rule:", out["per_speaker"]["rule"], flush=True)

# Study 2: single clips (docs/ser/single_v2's layout, recorded level only)
reader = Scorer.load(per_speaker=True)  # the runtime's S and G of a clip
c0_model, c0_cfg = load_ser(Path("runs/clip_v2/none_s0"))
assert tuple(c0_cfg["labels"]) == LABELS and c0_cfg["train"]["norm"] == "global"
train = c.canonical & ~groups & ~c.test
y, spk_train = c.y[train], c.speakers[train]
fits = {}
for name, x, weighted in (("C5", np.hstack([xs, xg]), False), ("SGC", np.hstack([xs, xg, xc]), False), ("SGCb", np.hstack([xs, xg, xc]), True)):
    fits[name] = make_classifier(n_sg, xc.shape[1], weighted, LABELS, "global").fit(x[train], y, spk_train)
print("single-clip regressions fitted on", int(train.sum()), "clips", flush=True)
vg = {"V1": set(VAL_SPEAKERS), "V2": set(VAL2_SPEAKERS)}
idx = [k for k in np.where(c.canonical & groups)[0]]
single: dict[str, dict[str, float]] = {n: {} for n in ("C0", "C6", "C9", "C10")}
for corp in CORPORA:
    ks = [k for k in idx if c.corpora[k] == corp]
    an = [reader.analyse(*sf.read(c.items[k].path, dtype="float32")) for k in ks]
    p0 = predict(c0_model, [a.log_mel for a in an], NormStats.from_dict(c0_cfg["norm"]))[0]
    sg = np.stack([np.concatenate([reader._stats_features([a.log_mel], [a.pitch])[0], a.voice]) for a in an])
    sgc = np.hstack([sg, xc[ks]])
    spk = c.speakers[ks]
    probs = {"C0": p0, "C6": fuse_weighted(p0, fits["C5"].predict_proba(sg, spk), 1.0),
             "C9": fuse_weighted(p0, fits["SGC"].predict_proba(sgc, spk), 1.0),
             "C10": fuse_weighted(p0, fits["SGCb"].predict_proba(sgc, spk), 1.0)}
    for n, p in probs.items():
        single[n].update(group_cells(corp, c.y[ks], p, spk, vg, len(LABELS)))
    print(corp, {n: round(single[n][f"{corp}/pooled"], 3) for n in probs}, flush=True)
for n, r in single.items():
    v = [r[f"{k}/pooled"] for k in CORPORA]
    r["worst"], r["mean"] = min(v), float(np.mean(v))
out["single_clip"] = {"cells": single, "rule": pick(single, "C6", ["C9", "C10"], "worst", "mean")}
print("single-clip rule:", out["single_clip"]["rule"], flush=True)
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
