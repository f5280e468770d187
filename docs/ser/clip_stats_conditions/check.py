"""The rule of docs/ser/clip_stats_conditions/PREREGISTRATION.md on both validation groups (``val``);
writes docs/ser/clip_stats_conditions/cells_val.json.

    python docs/ser/clip_stats_conditions/check.py val    # ~10 minutes; the [train,augment] extras, resemblyzer

Needs runs/clip_v2/classic_s0 and the classic copies runs/aug/*_classic_s0 (docs/ser/clip_v2/run.sh).
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "conditions"))
from degrade import KINDS, clip_seed, condition_summary, degrade  # noqa: E402

from emort import Scorer  # noqa: E402
from emort.evaluation.scorer_compare import (  # noqa: E402
    CORPORA,
    SHARED_DATA,
    cell_features,
    cell_pool,
    group_cells,
)
from emort.runtime.ustats import fuse_weighted  # noqa: E402
from emort.training.corpora import read_specs  # noqa: E402
from emort.training.data import NormStats  # noqa: E402
from emort.training.ser import load_ser, predict  # noqa: E402
from emort.training.splits import TEST_SPEAKERS, VAL2_SPEAKERS, VAL_SPEAKERS  # noqa: E402
from emort.training.stats_classifier import StatsClassifier  # noqa: E402

torch.set_num_threads(2)
reader = Scorer.load(per_speaker=True, threads=2)  # the runtime's S and G of a clip
LABELS = tuple(reader.bundle.labels)
ser, cfg = load_ser(Path("runs/clip_v2/classic_s0"))
assert cfg["train"]["norm"] == "global"
c = cell_pool(SHARED_DATA, LABELS, "val")
held = np.isin(c.speakers, list(VAL_SPEAKERS) + list(VAL2_SPEAKERS) + list(TEST_SPEAKERS))
train = c.canonical & ~held
xs, xg = cell_features(c.items, reader.bundle.mel, "SG").values()
copies = [i for k in CORPORA for i in read_specs([f"csv=runs/aug/{k}_classic_s0/manifest.csv"])]
copies = [i for i in copies if i.source_speaker_key not in set(c.speakers[held])]  # never a V1, V2 or test voice
cs, cg = cell_features(copies, reader.bundle.mel, "SG").values()
x0, y0, s0 = np.hstack([xs, xg])[train], c.y[train], c.speakers[train]
x1 = np.vstack([x0, np.hstack([cs, cg])])
y1 = np.concatenate([y0, [LABELS.index(i.emotion) for i in copies]])
s1 = np.concatenate([s0, [i.speaker_key for i in copies]])
fits = {n: StatsClassifier(labels=LABELS, C=0.01, model="logreg", norm="global").fit(x, y, s)
        for n, (x, y, s) in {"R0": (x0, y0, s0), "R1": (x1, y1, s1)}.items()}
print("fitted on", len(y0), "clips and", len(y1) - len(y0), "copies", flush=True)
groups = {"V1": set(VAL_SPEAKERS), "V2": set(VAL2_SPEAKERS)}
idx = [int(k) for k in np.where(c.canonical & np.isin(c.speakers, list(VAL_SPEAKERS) + list(VAL2_SPEAKERS)))[0]]
raw = {}
for k in idx:
    w, sr = sf.read(c.items[k].path, dtype="float32")
    raw[k] = (w.mean(axis=1) if w.ndim == 2 else w, sr)
out: dict = {"kinds": KINDS, "groups": {g: sorted(s) for g, s in groups.items()}, "ua": {}}
for kind in KINDS:
    for corp in CORPORA:
        ks = [k for k in idx if c.corpora[k] == corp]
        an = [reader.analyse(degrade(kind, raw[k][0], raw[k][1], clip_seed(c.items[k].path)), raw[k][1]) for k in ks]
        p_ser = predict(ser, [a.log_mel for a in an], NormStats.from_dict(cfg["norm"]))[0]
        rows = np.stack([np.concatenate([reader._stats_features([a.log_mel], [a.pitch])[0], a.voice]) for a in an])
        spk = c.speakers[ks]
        probs = {"C": p_ser, **{f"C x {n}": fuse_weighted(p_ser, f.predict_proba(rows, spk), 1.0) for n, f in fits.items()}}
        for n, p in probs.items():
            out["ua"].setdefault(n, {}).setdefault(kind, {}).update(group_cells(corp, c.y[ks], p, spk, groups, len(LABELS)))
        print(f"{kind:9s} {corp:8s} " + "  ".join(f"{n} {out['ua'][n][kind][corp + '/pooled']:.3f}" for n in probs), flush=True)
summ = out["summary"] = condition_summary(out["ua"], CORPORA)
a, b = summ["C x R1"], summ["C x R0"]
adopt = (a["worst_degraded"] >= b["worst_degraded"] + 0.05 and a["mean_degraded"] > b["mean_degraded"]
         and a["worst_recorded"] >= b["worst_recorded"] - 0.02 and a["mean_recorded"] >= b["mean_recorded"] - 0.02)
out["rule"] = {"adopt_R1": bool(adopt)}
print("rule: R1", "ADOPTED" if adopt else "not adopted")
Path(__file__).with_name("cells_val.json").write_text(json.dumps(out, indent=1) + "\n")
