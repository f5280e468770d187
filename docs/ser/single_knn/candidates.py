"""Single-clip UA of the candidates of docs/ser/single_knn/PREREGISTRATION.md at several input
gains. From the repository root, with the joint classifier fitted without the validation speakers
(``emort train stats $D --features ustats+pitch+ge2e --no-fit-val --out runs/stats3j_val``):
``python docs/ser/single_knn/candidates.py val runs/stats3j_val`` (then ``test RUN``, once, after
the decision); writes docs/ser/single_knn/<split>.json. Needs the [train] extra and resemblyzer.

K: each clip z-scored with the mean statistics of the K_NEAREST training speakers nearest to it in
the GE2E space (cosine with each speaker's mean embedding; ``--neighbours spectrum``: in long-term
spectral shape, K2 of PREREGISTRATION_spectrum.md, written to <split>_spectrum.json), its level-dependent statistics first
shifted so that its frame-level mean is theirs; then the joint per-speaker classifier.
"""

import json
import sys

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.evaluation.scorer_compare import gain_cells_summary
from emort.runtime.settings import DEFAULT_MEL
from emort.runtime.ustats import fuse_weighted, num_stats, speaker_stats_from, stats_matrix
from emort.training import corpora
from emort.training.ustats import load_stats, pool_statistics

split, run = sys.argv[1], sys.argv[2]
# --neighbours ge2e (PREREGISTRATION.md, K) or spectrum (PREREGISTRATION_spectrum.md, K2)
by = sys.argv[sys.argv.index("--neighbours") + 1] if "--neighbours" in sys.argv else "ge2e"
assert by in ("ge2e", "spectrum")
K_NEAREST = 5
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
SPEAKERS = {"val": {"emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0"},
            "test": {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22", "nemo/IC0", "nemo/KS0"}}[split]
GAINS_DB = (0, -20, -10, 6)
every = corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"])
items = corpora.only_canonical(every, LABELS)
clips = [(i, *sf.read(i.path, dtype="float32")) for i in items if i.speaker_key in SPEAKERS]
clip_ser = Scorer.load()  # C0: ser_clip, the shipped single-clip scorer
assert clip_ser.ser_name == "ser_clip"
reader = Scorer.load(per_speaker=True)  # the runtime's statistics, F0 and embedding of a clip
assert reader.joint
clf, cfg = load_stats(run)
assert cfg["features"] == "ustats+pitch+ge2e" and cfg["norm"] == "speaker"
train_speakers = set(cfg["split"]["train_speakers"]) | (set(cfg["split"]["val_speakers"]) if cfg["split"]["val_in_train"] else set())
assert not train_speakers & SPEAKERS

# the training speakers' statistics over all their clips (any label), and their mean embeddings
pool = [i for i in every if i.speaker_key in train_speakers]
xp, _ = pool_statistics(pool, DEFAULT_MEL, "ustats+pitch+ge2e", cfg["pitch_version"])
spk = np.array([i.speaker_key for i in pool])
names = sorted(set(spk))
stats = speaker_stats_from(xp, spk)
means = np.stack([stats[s][0] for s in names])
stds = np.stack([stats[s][1] for s in names])
voice0 = xp.shape[1] - 256
centroids = np.stack([xp[spk == s, voice0:].mean(0) for s in names])
centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
n_mels = DEFAULT_MEL.n_mels
shapes = means[:, :n_mels] - means[:, :n_mels].mean(1, keepdims=True)  # each speaker's long-term spectral shape
LEVEL = num_stats(n_mels) - 6  # the frame level's mean, then its std, 10th and 90th percentiles
SHIFTED = np.r_[np.arange(n_mels), [LEVEL, LEVEL + 2, LEVEL + 3]]  # what a gain adds a constant to


def pseudo_speaker(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(level-aligned x, mean, std) for one clip's features ``x``."""
    if by == "ge2e":
        v = x[voice0:] / np.linalg.norm(x[voice0:])
        near = np.argsort(centroids @ v)[::-1][:K_NEAREST]
    else:
        shape = x[:n_mels] - x[:n_mels].mean()
        near = np.argsort(((shapes - shape) ** 2).sum(1))[:K_NEAREST]
    m, s = means[near].mean(0), stds[near].mean(0)
    x = x.copy()
    x[SHIFTED] -= x[LEVEL] - m[LEVEL]
    return x, m, s


def ua(y: list, p: list) -> float:
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in sorted(set(y))]))


out: dict = {"split": split, "gains_db": list(GAINS_DB), "run": run, "k": K_NEAREST, "neighbours": by,
             "ua": {"C0": {}, "K": {}, "K.C0": {}}}
for g_db in GAINS_DB:
    rows: dict = {"C0": {}, "K": {}, "K.C0": {}}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, w, sr) for i, w, sr in clips if i.speaker_key.startswith(corp)]
        gained = [(np.clip(w * 10 ** (g_db / 20), -1, 1), sr) for _, w, sr in cc]
        p0 = np.array([[s.scores[k] for k in LABELS] for s in
                       clip_ser.score_mels([clip_ser.normalize(clip_ser.log_mel(w, sr)) for w, sr in gained])])
        rows_k, ref = [], {}
        for n, (w, sr) in enumerate(gained):
            a = reader.analyse(w, sr)
            x = np.concatenate([stats_matrix([a.log_mel], DEFAULT_MEL.power)[0], a.pitch, a.voice])
            x, m, s = pseudo_speaker(x)
            rows_k.append(x)
            ref[f"clip{n}"] = (m, s)
        p1 = clf.predict_proba(np.stack(rows_k), [f"clip{n}" for n in range(len(rows_k))], ref)
        present = sorted({LABELS.index(i.emotion) for i, _, _ in cc})
        y = [LABELS.index(i.emotion) for i, _, _ in cc]
        for name, p in (("C0", p0), ("K", p1), ("K.C0", fuse_weighted(p0, p1, 1.0))):
            rows[name][corp] = ua(y, [present[k] for k in np.argmax(p[:, present], axis=1)])  # over the corpus's classes
    for name, row in rows.items():
        out["ua"][name][str(g_db)] = row
        print(f"{name:5s} {g_db:+4d} dB  " + "  ".join(f"{c} {v:.3f}" for c, v in row.items()), flush=True)
for name, by_gain in out["ua"].items():
    out.setdefault("summary", {})[name] = gain_cells_summary(by_gain)
    print(name, out["summary"][name])
with open(f"docs/ser/single_knn/{split}{'' if by == 'ge2e' else '_spectrum'}.json", "w") as f:
    json.dump(out, f, indent=1)
