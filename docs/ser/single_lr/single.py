"""Single-clip UA of the candidates of docs/ser/single_lr/PREREGISTRATION.md at several input gains,
on the validation speakers (``val``) or the test speakers (``test``, read once, after the choice);
writes docs/ser/single_lr/single_<split>.json.

    python docs/ser/single_lr/single.py val

C0 = ser_clip (shipped); C5 / C7 = logistic regression (C 0.01, no speaker normalisation) on S+G /
S+G+E rows of the training speakers' clips as recorded; C9 = C5 fitted on the same clips at a random
gain each (+-10 dB); C6, C8, C10 = their geometric means with C0. Needs the [train,eval] extras and
resemblyzer; run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.evaluation.scorer_compare import cell_features, cell_pool, gain_cells_summary, ua_present
from emort.runtime.ustats import fuse_weighted
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier

split = sys.argv[1]
GAINS_DB = (0, -20, -10, 6)
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
clip_ser = Scorer.load()  # C0: ser_clip, the shipped single-clip scorer
assert clip_ser.ser_name == "ser_clip"
# the runtime's analysis: log-mel, F0 statistics and GE2E, and eGeMAPS only where a candidate reads it
readers = {False: Scorer.load(per_speaker=True), True: Scorer.load(per_speaker=True, egemaps=True)}
LABELS = tuple(clip_ser.bundle.labels)
c = cell_pool(D, LABELS, "val")
train = c.canonical & ~c.test & ~np.isin(c.speakers, VAL_SPEAKERS)
xs, xg, xe = cell_features(c.items, clip_ser.bundle.mel, "SGE").values()
y = c.y[train]


def linear(x: np.ndarray) -> StatsClassifier:
    return StatsClassifier(labels=LABELS, C=0.01, model="logreg", norm="global").fit(x, y, c.speakers[train])


def rows(wav: np.ndarray, sr: int, ege: bool) -> np.ndarray:
    reader = readers[ege]
    a = reader.analyse(wav, sr)
    parts = [reader._stats_features([a.log_mel], [a.pitch])[0], a.voice] + ([a.egemaps] if ege else [])
    return np.concatenate(parts)


def gain(w: np.ndarray, g_db: float) -> np.ndarray:
    return np.clip(w * 10 ** (g_db / 20), -1, 1).astype(np.float32)


c5 = linear(np.hstack([xs, xg])[train])
c7 = linear(np.hstack([xs, xg, xe])[train])
rng = np.random.default_rng(0)
train_items = [i for i, m in zip(c.items, train) if m]


def gained_row(path: str) -> np.ndarray:
    w, sr = sf.read(path, dtype="float32")
    return rows(gain(w, rng.uniform(-10, 10)), sr, False)


x9 = np.stack([gained_row(i.path) for i in train_items])
c9 = linear(x9)
print("fitted on", len(train_items), "clips", flush=True)

speakers = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
clips = [(i, *sf.read(i.path, dtype="float32")) for i, m in zip(c.items, c.canonical) if m and i.speaker_key in speakers]
NAMES = ("C0", "C5", "C6", "C7", "C8", "C9", "C10")


out: dict = {"split": split, "gains_db": list(GAINS_DB), "train_clips": len(train_items), "ua": {n: {} for n in NAMES}}
for g_db in GAINS_DB:
    cells: dict = {n: {} for n in NAMES}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, gain(w, g_db), sr) for i, w, sr in clips if i.corpus == corp]
        p0 = np.array([[s.scores[k] for k in LABELS] for s in
                       clip_ser.score_mels([clip_ser.normalize(clip_ser.log_mel(w, sr)) for _, w, sr in cc])])
        r = np.stack([rows(w, sr, True) for _, w, sr in cc])
        spk = [i.speaker_key for i, _, _ in cc]
        p5, p7, p9 = c5.predict_proba(r[:, :xs.shape[1] + xg.shape[1]], spk), c7.predict_proba(r, spk), \
            c9.predict_proba(r[:, :xs.shape[1] + xg.shape[1]], spk)
        probs = {"C0": p0, "C5": p5, "C6": fuse_weighted(p0, p5, 1.0), "C7": p7, "C8": fuse_weighted(p0, p7, 1.0),
                 "C9": p9, "C10": fuse_weighted(p0, p9, 1.0)}
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        for n, p in probs.items():
            cells[n][corp] = ua_present(yy, p, len(LABELS))  # over the corpus's classes
    for n, row in cells.items():
        out["ua"][n][str(g_db)] = row
        print(f"{n:3s} {g_db:+4d} dB  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
for n, by_gain in out["ua"].items():
    out.setdefault("summary", {})[n] = gain_cells_summary(by_gain)
    print(n, out["summary"][n])
(Path(__file__).parent / f"single_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
