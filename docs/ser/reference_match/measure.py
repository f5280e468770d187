"""How alike a speaker's clips sound to its own other clips, and to another speaker's, as the mean
GE2E embeddings' cosine (emort.runtime.voice.voice_match): the figures behind
emort.runtime.voice.REFERENCE_VOICE_MIN and the group sizes `emort score --reference` checks.

    python docs/ser/reference_match/measure.py        # from the repository root; writes measure.json here

Every speaker of the three corpora in ../shared/data (GE2E embeddings of every clip, any label); for
each size pair (scored clips, reference clips), 200 random draws per speaker of disjoint clips of that
speaker ("same") and, per ordered pair of speakers, one draw ("other").
"""
import json
from pathlib import Path

import numpy as np

from emort import Scorer
from emort.evaluation.scorer_compare import SHARED_DATA, cell_features, cell_pool
from emort.runtime.voice import REFERENCE_VOICE_MIN, voice_match

SIZES = ((1, 1), (1, 5), (2, 2), (2, 5), (3, 5), (5, 5), (2, 30))
sc = Scorer.load()
c = cell_pool(SHARED_DATA, tuple(sc.bundle.labels), "val")
G = cell_features(c.items, sc.bundle.mel, "G")["G"]
speakers = sorted(set(c.speakers))
rng = np.random.default_rng(0)
out = {"speakers": len(speakers), "clips": len(G), "threshold": REFERENCE_VOICE_MIN, "below": {}}
for a, b in SIZES:
    same = []
    for s in speakers:
        idx = np.where(c.speakers == s)[0]
        for _ in range(200):
            p = rng.permutation(idx)
            same.append(voice_match(G[p[:a]], G[p[a:a + b]]))
    other = [voice_match(G[rng.permutation(np.where(c.speakers == s)[0])[:a]], G[rng.permutation(np.where(c.speakers == t)[0])[:b]])
             for s in speakers for t in speakers if s != t]
    row = {"same": float(np.mean(np.array(same) < REFERENCE_VOICE_MIN)), "other": float(np.mean(np.array(other) < REFERENCE_VOICE_MIN)),
           "same_min": float(np.min(same))}
    out["below"][f"{a} vs {b}"] = row
    print(f"{a} scored vs {b} reference clips: below {REFERENCE_VOICE_MIN}: same speaker {row['same']:.3f} (lowest {row['same_min']:.2f}), "
          f"another speaker {row['other']:.2f}", flush=True)
Path(__file__).with_name("measure.json").write_text(json.dumps(out, indent=1) + "\n")
