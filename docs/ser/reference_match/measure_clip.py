"""One clip against a speaker's reference clips: the figures behind
emort.runtime.voice.REFERENCE_CLIP_MIN, the per-clip check of `emort score --reference` (0.28).

    python docs/ser/reference_match/measure_clip.py     # from the repository root, ~5 minutes; writes measure_clip.json

Every speaker of the three corpora in ../shared/data (GE2E embeddings of every clip, any label):
the cosine (emort.runtime.voice.voice_match) of one clip with the mean of 5 or 10 other clips of the
same speaker ("same", 200 draws a speaker), of another speaker ("other", 3 draws an ordered pair),
and of emort's edits of a clip of the speaker (not among the reference clips): the default edit and
`--prosody` conversions to a random other emotion (4 clips a speaker), as `emort score --reference`
meets them when it scores an enhanced batch against its originals.
"""
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from emort import Enhancer, Scorer
from emort.evaluation.scorer_compare import SHARED_DATA, cell_features, cell_pool
from emort.runtime.voice import voice_match

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7)
sc = Scorer.load(per_speaker=True)
enh = Enhancer.load()
LABELS = tuple(sc.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
G = cell_features(c.items, sc.bundle.mel, "G")["G"]
speakers = sorted(set(c.speakers))
rng = np.random.default_rng(1)
out: dict = {"speakers": len(speakers), "clips": len(G), "below": {}}
for b in (5, 10):
    same, other = [], []
    for s in speakers:
        idx = np.where(c.speakers == s)[0]
        for _ in range(200):
            p = rng.permutation(idx)
            same.append(voice_match(G[p[:1]], G[p[1:1 + b]]))
        for t in speakers:
            if t != s:
                q = np.where(c.speakers == t)[0]
                other += [voice_match(G[rng.permutation(idx)[:1]], G[rng.permutation(q)[:b]]) for _ in range(3)]
    out["below"][f"1 vs {b}"] = {"same": {str(t): float(np.mean(np.array(same) < t)) for t in THRESHOLDS},
                                 "other": {str(t): float(np.mean(np.array(other) < t)) for t in THRESHOLDS}}
    print(f"1 vs {b}:", out["below"][f"1 vs {b}"], flush=True)
edits: dict[str, list[float]] = {"default": [], "prosody": []}
for s in speakers:
    idx = rng.permutation(np.where(c.speakers == s)[0])
    ref = G[idx[4:9]]  # 5 reference clips, none of them edited
    for k in idx[:4]:
        wav, sr = sf.read(c.items[k].path, dtype="float32")
        for kind in edits:
            target = c.emotions[k] if kind == "default" or c.emotions[k] not in LABELS else \
                str(rng.choice([e for e in LABELS if e != c.emotions[k]]))
            target = target if target in LABELS else "neutral"
            y = enh.enhance(wav, sr, target, prosody=kind == "prosody").wav
            edits[kind].append(voice_match([sc.analyse(y, sr).voice], ref))
out["edits_1_vs_5"] = {kind: {"n": len(v), "min": float(np.min(v)), **{str(t): float(np.mean(np.array(v) < t)) for t in THRESHOLDS}}
                       for kind, v in edits.items()}
print("edits:", out["edits_1_vs_5"], flush=True)
Path(__file__).with_name("measure_clip.json").write_text(json.dumps(out, indent=1) + "\n")
