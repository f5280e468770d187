"""Single-clip UA of the candidates of docs/ser/egemaps_voice/PREREGISTRATION_single.md at several
input gains, on the validation speakers (``val``) or the test speakers (``test``, read once, after
the choice); writes docs/ser/egemaps_voice/single_<split>.json.

    python docs/ser/egemaps_voice/single.py val

C0 = ser_clip (shipped), C3 = an RBF SVM on eGeMAPS without speaker normalisation (fitted here on
the training speakers of the three corpora), C4 = their geometric mean. Needs the [train,eval] extras.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.evaluation.scorer_compare import gain_cells_summary
from emort.runtime.egemaps import egemaps_features
from emort.runtime.ustats import fuse_weighted
from emort.training import corpora
from emort.training.egemaps import egemaps_matrix
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier

split = sys.argv[1]
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
SPEAKERS = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
GAINS_DB = (0, -20, -10, 6)
items = corpora.only_canonical(corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess",
                                                   "nemo=../shared/data/nemo"]), LABELS)
train = [i for i in items if i.speaker_key not in set(VAL_SPEAKERS) | set(TEST_SPEAKERS)]
c3 = StatsClassifier(labels=LABELS, C=10.0, norm="global").fit(
    egemaps_matrix([i.path for i in train]), np.array([LABELS.index(i.emotion) for i in train]), [i.speaker_key for i in train], None)
clips = [(i, *sf.read(i.path, dtype="float32")) for i in items if i.speaker_key in SPEAKERS]
clip_ser = Scorer.load()  # C0: ser_clip, the shipped single-clip scorer
assert clip_ser.ser_name == "ser_clip"


def ua(y: list, p: list) -> float:
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in sorted(set(y))]))


def mono(w: np.ndarray) -> np.ndarray:
    return w.mean(axis=1) if w.ndim == 2 else w


out: dict = {"split": split, "gains_db": list(GAINS_DB), "train_clips": len(train), "ua": {"C0": {}, "C3": {}, "C4": {}}}
for g_db in GAINS_DB:
    rows: dict = {"C0": {}, "C3": {}, "C4": {}}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, w, sr) for i, w, sr in clips if i.speaker_key.startswith(corp)]
        gained = [(np.clip(w * 10 ** (g_db / 20), -1, 1), sr) for _, w, sr in cc]
        p0 = np.array([[s.scores[k] for k in LABELS] for s in
                       clip_ser.score_mels([clip_ser.normalize(clip_ser.log_mel(w, sr)) for w, sr in gained])])
        p3 = c3.predict_proba(np.stack([egemaps_features(mono(w), sr) for w, sr in gained]), [i.speaker_key for i, _, _ in cc])
        present = sorted({LABELS.index(i.emotion) for i, _, _ in cc})
        y = [LABELS.index(i.emotion) for i, _, _ in cc]
        for name, p in (("C0", p0), ("C3", p3), ("C4", fuse_weighted(p0, p3, 1.0))):
            rows[name][corp] = ua(y, [present[k] for k in np.argmax(p[:, present], axis=1)])  # over the corpus's classes
    for name, row in rows.items():
        out["ua"][name][str(g_db)] = row
        print(f"{name} {g_db:+4d} dB  " + "  ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
for name, by_gain in out["ua"].items():
    out.setdefault("summary", {})[name] = gain_cells_summary(by_gain)
    print(name, out["summary"][name])
(Path(__file__).parent / f"single_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
