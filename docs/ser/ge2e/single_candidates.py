"""Single-clip UA of the candidates of PREREGISTRATION_single.md at several input gains. From the
repository root, with the classifier fitted (``emort train stats $D --features ge2e --norm global
--no-fit-val --out runs/stats_clip_ge2e``): ``python docs/ser/ge2e/single_candidates.py val
runs/stats_clip_ge2e`` (then ``test``, once, after the decision); writes
docs/ser/ge2e/single_<split>.json. Needs the [train] extra and resemblyzer."""

import json
import sys

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.evaluation.scorer_compare import gain_cells_summary
from emort.runtime.ustats import fuse_weighted
from emort.training import corpora
from emort.training.ustats import load_stats
from emort.training.voice import embed

split, run = sys.argv[1], sys.argv[2]
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
SPEAKERS = {"val": {"emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0"},
            "test": {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22", "nemo/IC0", "nemo/KS0"}}[split]
GAINS_DB = (0, -20, -10, 6)
items = corpora.only_canonical(corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess",
                                                   "nemo=../shared/data/nemo"]), LABELS)
clips = [(i, *sf.read(i.path, dtype="float32")) for i in items if i.speaker_key in SPEAKERS]
clip_ser = Scorer.load()  # C0: ser_clip, the shipped single-clip scorer
assert clip_ser.ser_name == "ser_clip"
clf, cfg = load_stats(run)
assert cfg["features"] == "ge2e" and cfg["norm"] == "global" and not cfg["split"]["val_in_train"]


def ua(y: list, p: list) -> float:
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in sorted(set(y))]))


out: dict = {"split": split, "gains_db": list(GAINS_DB), "run": run, "ua": {"C0": {}, "C1": {}, "C2": {}}}
for g_db in GAINS_DB:
    rows: dict = {"C0": {}, "C1": {}, "C2": {}}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, w, sr) for i, w, sr in clips if i.speaker_key.startswith(corp)]
        gained = [(np.clip(w * 10 ** (g_db / 20), -1, 1), sr) for _, w, sr in cc]
        p0 = np.array([[s.scores[k] for k in LABELS] for s in
                       clip_ser.score_mels([clip_ser.normalize(clip_ser.log_mel(w, sr)) for w, sr in gained])])
        p1 = clf.predict_proba(np.stack([embed(w, sr) for w, sr in gained]), [i.speaker_key for i, _, _ in cc])
        present = sorted({LABELS.index(i.emotion) for i, _, _ in cc})
        y = [LABELS.index(i.emotion) for i, _, _ in cc]
        for name, p in (("C0", p0), ("C1", p1), ("C2", fuse_weighted(p0, p1, 1.0))):
            rows[name][corp] = ua(y, [present[k] for k in np.argmax(p[:, present], axis=1)])  # over the corpus's classes
    for name, row in rows.items():
        out["ua"][name][str(g_db)] = row
        print(f"{name} {g_db:+4d} dB  " + "  ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
for name, by_gain in out["ua"].items():
    out.setdefault("summary", {})[name] = gain_cells_summary(by_gain)
    print(name, out["summary"][name])
with open(f"docs/ser/ge2e/single_{split}.json", "w") as f:
    json.dump(out, f, indent=1)
