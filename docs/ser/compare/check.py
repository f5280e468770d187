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
from check_common import make_classifier, pick  # noqa: E402
from features import compare_matrix  # noqa: E402

from emort import Scorer  # noqa: E402
from emort.evaluation.scorer_compare import (  # noqa: E402
    CORPORA,
    SHARED_DATA,
    cell_features,
    cell_pool,
    group_cells,
    speaker_cells,
)
from emort.runtime.ustats import fuse_weighted  # noqa: E402
from emort.training.data import NormStats  # noqa: E402
from emort.training.ser import load_ser, predict  # noqa: E402
from emort.training.splits import VAL2_SPEAKERS, VAL_SPEAKERS  # noqa: E402

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
assert split == "val", "the test speakers are read by test.py, after an adoption only"
shipped = Scorer.load(threads=2)
LABELS = tuple(shipped.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
groups = np.isin(c.speakers, list(VAL_SPEAKERS) + list(VAL2_SPEAKERS))
xs, xg, xe = cell_features(c.items, shipped.bundle.mel, "SGE").values()
xc = compare_matrix([i.path for i in c.items])
print("ComParE", xc.shape, flush=True)
out: dict = {"split": split, "block_weight": float(np.sqrt(88 / 6373))}

# Study 1: per-speaker classifier, six cells
feats = {"SG": np.hstack([xs, xg]), "SGE": np.hstack([xs, xg, xe]), "SGC": np.hstack([xs, xg, xc]),
         "SGCb": np.hstack([xs, xg, xc]), "C (information)": xc, "GC (information)": np.hstack([xg, xc])}
n_sg = xs.shape[1] + xg.shape[1]


def make(name: str):
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
for r in single.values():
    v = [r[f"{k}/pooled"] for k in CORPORA]
    r["worst"], r["mean"] = min(v), float(np.mean(v))
out["single_clip"] = {"cells": single, "rule": pick(single, "C6", ["C9", "C10"], "worst", "mean")}
print("single-clip rule:", out["single_clip"]["rule"], flush=True)
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
