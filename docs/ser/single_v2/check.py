"""The candidates of docs/ser/single_v2/PREREGISTRATION.md on both validation groups (``val``), or,
after an adoption only, the test speakers (``test NAME``); writes docs/ser/single_v2/cells_<split>.json.

    python docs/ser/single_v2/check.py val

Needs runs/clip_v2/none_s0 (``bash docs/ser/clip_v2/run.sh``), the [train,eval] extras and
resemblyzer; run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emort import Scorer
from emort.evaluation.scorer_compare import (
    CLIP_GAINS_DB,
    CORPORA,
    SHARED_DATA,
    at_gain,
    cell_features,
    cell_pool,
    gain_cells_summary,
    group_cells,
)
from emort.runtime.ustats import fuse_weighted
from emort.training.data import NormStats
from emort.training.ser import load_ser, predict
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.splits import VAL2_SPEAKERS as V2
from emort.training.stats_classifier import StatsClassifier

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
shipped = Scorer.load(threads=2)  # ser_clip: its runtime log-mel, and the test row's reference
assert shipped.ser_name == "ser_clip"
LABELS = tuple(shipped.bundle.labels)
reader = Scorer.load(per_speaker=True, egemaps=True)  # the runtime's S, G and E of a clip
c0_model, c0_cfg = load_ser(Path("runs/clip_v2/none_s0"))
assert tuple(c0_cfg["labels"]) == LABELS and c0_cfg["train"]["norm"] == "global"
c = cell_pool(SHARED_DATA, LABELS, "val")
held = np.isin(c.speakers, list(VAL_SPEAKERS) + list(V2)) | c.test
train = c.canonical & ~held
xs, xg, xe = cell_features(c.items, shipped.bundle.mel, "SGE").values()
y, spk_train = c.y[train], c.speakers[train]
ns, ng = xs.shape[1], xg.shape[1]


def linear(x: np.ndarray) -> StatsClassifier:
    return StatsClassifier(labels=LABELS, C=0.01, model="logreg", norm="global").fit(x, y, spk_train)


c5 = linear(np.hstack([xs, xg])[train])
c7 = linear(np.hstack([xs, xg, xe])[train])
print("fitted on", int(train.sum()), "clips of", len(set(spk_train)), "speakers", flush=True)
groups = {"V1": set(VAL_SPEAKERS), "V2": set(V2)} if split == "val" else {"test": set(TEST_SPEAKERS)}
speakers = set().union(*groups.values())
clips = [(i, *sf.read(i.path, dtype="float32")) for i, m in zip(c.items, c.canonical) if m and i.speaker_key in speakers]
print(len(clips), "clips", flush=True)


def rows(a) -> np.ndarray:
    return np.concatenate([reader._stats_features([a.log_mel], [a.pitch])[0], a.voice, a.egemaps])


names = ("C0", "C5", "C6", "C7", "C8") + (("shipped", "shipped x C5") if split == "test" else ())
out: dict = {"split": split, "gains_db": list(CLIP_GAINS_DB), "groups": {g: sorted(s) for g, s in groups.items()},
             "train_clips": int(train.sum()), "ua": {n: {} for n in names}}
for g_db in CLIP_GAINS_DB:
    for corp in CORPORA:
        cc = [(i, at_gain(w, g_db), sr) for i, w, sr in clips if i.corpus == corp]
        analyses = [reader.analyse(w, sr) for _, w, sr in cc]  # each clip's log-mel (the shipped front end), F0, GE2E, eGeMAPS once
        mels = [a.log_mel for a in analyses]
        p0 = predict(c0_model, mels, NormStats.from_dict(c0_cfg["norm"]))[0]
        r = np.stack([rows(a) for a in analyses])
        spk = [i.speaker_key for i, _, _ in cc]
        p5, p7 = c5.predict_proba(r[:, :ns + ng], spk), c7.predict_proba(r, spk)
        probs = {"C0": p0, "C5": p5, "C6": fuse_weighted(p0, p5, 1.0), "C7": p7, "C8": fuse_weighted(p0, p7, 1.0)}
        if split == "test":
            probs["shipped"] = np.array([[s.scores[k] for k in LABELS] for s in shipped.score_mels([shipped.normalize(m) for m in mels])])
            probs["shipped x C5"] = fuse_weighted(probs["shipped"], p5, 1.0)  # C6 as it would ship: ser_clip's shipped seed
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        spk = np.array(spk)
        for n, p in probs.items():
            out["ua"][n].setdefault(str(g_db), {}).update(group_cells(corp, yy, p, spk, groups, len(LABELS)))
        print(f"{g_db:+4d} dB {corp}: " + "  ".join(f"{n} {out['ua'][n][str(g_db)][corp + '/pooled']:.3f}" for n in probs), flush=True)
summ = out["summary"] = {}
for n, by_gain in out["ua"].items():
    summ[n] = gain_cells_summary({g: {k: r[f"{k}/pooled"] for k in CORPORA} for g, r in by_gain.items()})
    print(n, {k: round(v, 4) for k, v in summ[n].items()})
if split == "val":
    base = summ["C0"]
    ok = {n: s for n, s in summ.items() if n != "C0" and s["worst_0db"] >= base["worst_0db"] + 0.02 and s["mean_0db"] >= base["mean_0db"]}
    chosen = None
    if ok:
        best = max(s["worst_0db"] for s in ok.values())
        chosen = max((n for n, s in ok.items() if s["worst_0db"] >= best - 0.02), key=lambda n: ok[n]["mean_0db"])
    out["rule"] = {"qualify": sorted(ok), "adopted": chosen}
    print("rule: adopted", chosen)
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
