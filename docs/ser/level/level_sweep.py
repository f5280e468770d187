"""Single-clip UA of the shipped SER with and without level normalisation, at several input
gains (PREREGISTRATION.md). From the repository root:
``python docs/ser/level/level_sweep.py val`` (then ``test``, once); writes docs/ser/level/<split>.json."""

import json
import sys

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.runtime.frontend import active_frames
from emort.training import corpora

split = sys.argv[1] if len(sys.argv) > 1 else "val"
LAB = ("neutral","happy","sad","angry","fear","disgust")
items = corpora.only_canonical(corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]), LAB)
sc = Scorer.load(level_robust=False)  # the SER that scored single clips until 0.11
b = sc.bundle
train_spk = set(b.training["ser"].split.train_speakers)


def level(m):
    """Mean log level of the active frames (active_frames' own measure)."""
    act = active_frames(m, power=b.mel.power)
    return float(m[:, act].mean())
tr = [i for i in items if i.speaker_key in train_spk]
Ls = []
for i in tr:
    w, sr = sf.read(i.path, dtype="float32")
    Ls.append(level(sc.log_mel(w, sr)))
L_ref = float(np.median(Ls))
print(f"reference level from {len(tr)} training clips: {L_ref:.4f} (IQR {np.percentile(Ls,25):.3f}..{np.percentile(Ls,75):.3f})")
spk = {"val": {"emodb/10", "ravdess/19", "ravdess/20", "nemo/MP0"}, "test": {"emodb/03","emodb/08","ravdess/21","ravdess/22","nemo/IC0","nemo/KS0"}}[split]
sel = [i for i in items if i.speaker_key in spk]
clips = [(i, *sf.read(i.path, dtype="float32")) for i in sel]


def ua(y, p):
    present = sorted(set(y))
    return float(np.mean([np.mean([pp == c for yy, pp in zip(y, p) if yy == c]) for c in present]))




def arg(m, present):
    """The most probable of the corpus's classes (as scorer_compare counts UA)."""
    s = sc.score_mels([b.normalize(m)])[0].scores
    return max(present, key=lambda k: s[k])


out = {"L_ref": L_ref, "rows": {}}
for g_db in ((0,) if split == "test" else (0, -30, -20, -10, 6)):
    g = 10 ** (g_db / 20)
    row = {}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, w, sr) for i, w, sr in clips if i.speaker_key.startswith(corp)]
        present = sorted({i.emotion for i, _, _ in cc})
        y = [i.emotion for i, _, _ in cc]
        base, normd = [], []
        for _i, w, sr in cc:
            m = sc.log_mel(np.clip(w * g, -1, 1), sr)
            # restrict argmax to classes present in the corpus, as scorer_compare does
            base.append(arg(m, present))
            normd.append(arg(m - (level(m) - L_ref), present))
        row[corp] = {"shipped": ua(y, base), "level-normalised": ua(y, normd)}
    out["rows"][g_db] = row
    print(f"{g_db:+4d} dB  " + "  ".join(f"{c}: {r['shipped']:.3f} -> {r['level-normalised']:.3f}" for c, r in row.items()))
with open(f"docs/ser/level/{split}.json", "w") as f:
    json.dump(out, f, indent=1)
