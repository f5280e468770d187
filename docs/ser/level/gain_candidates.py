"""Single-clip UA of the shipped SER and of gain-augmented SER runs at several input gains
(PREREGISTRATION_gain.md). From the repository root, with the runs trained:
``python docs/ser/level/gain_candidates.py val runs/ser_gain10 runs/ser_gain20`` (then ``test``,
once, after the decision); writes docs/ser/level/gain_<split>.json. Needs the [train] extra."""

import json
import sys

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.training import corpora
from emort.training.ser import eval_stats, load_ser, predict

split, runs = sys.argv[1], sys.argv[2:]
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
SPEAKERS = {"val": {"emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0"},
            "test": {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22", "nemo/IC0", "nemo/KS0"}}[split]
GAINS_DB = (0, -20, -10, 6)
items = corpora.only_canonical(corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess",
                                                   "nemo=../shared/data/nemo"]), LABELS)
clips = [(i, *sf.read(i.path, dtype="float32")) for i in items if i.speaker_key in SPEAKERS]
shipped = Scorer.load(level_robust=False)  # S: the SER that scored single clips until 0.11
models = {run: load_ser(run) for run in runs}


def ua(y: list, p: list) -> float:
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in sorted(set(y))]))


def probs_of(name: str, mels: list, items_: list) -> np.ndarray:
    if name == "shipped":
        return np.array([[s.scores[k] for k in LABELS] for s in shipped.score_mels([shipped.bundle.normalize(m) for m in mels])])
    model, cfg = models[name]
    p, _ = predict(model, mels, eval_stats(cfg, mels, items_))
    return p


out: dict = {"split": split, "gains_db": list(GAINS_DB), "ua": {}}
for name in ("shipped", *runs):
    out["ua"][name] = {}
    for g_db in GAINS_DB:
        row = {}
        for corp in ("emodb", "ravdess", "nemo"):
            cc = [(i, w, sr) for i, w, sr in clips if i.speaker_key.startswith(corp)]
            mels = [shipped.log_mel(np.clip(w * 10 ** (g_db / 20), -1, 1), sr) for _, w, sr in cc]
            p = probs_of(name, mels, [i for i, _, _ in cc])
            present = sorted({LABELS.index(i.emotion) for i, _, _ in cc})
            pred = [present[k] for k in np.argmax(p[:, present], axis=1)]  # over the corpus's classes
            row[corp] = ua([LABELS.index(i.emotion) for i, _, _ in cc], pred)
        out["ua"][name][str(g_db)] = row
        print(f"{name:22s} {g_db:+4d} dB  " + "  ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
with open(f"docs/ser/level/gain_{split}.json", "w") as f:
    json.dump(out, f, indent=1)
