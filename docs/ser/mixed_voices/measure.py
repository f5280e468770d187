"""A speaker folder that holds more than one voice: the figures behind
emort.runtime.voice.GROUP_VOICE_MIN, the note `emort score --per-speaker` gives such a group (0.30).

    python docs/ser/mixed_voices/measure.py     # from the repository root, ~3 minutes; writes measure.json

Per-speaker scoring normalises a folder's clips as one speaker; a folder of several voices (a new
user's `emort score enhanced/angry/ --per-speaker` of four speakers' outputs) is read with the
wrong statistics, silently. Every speaker of the three corpora in ../shared/data (GE2E embeddings of
every clip, any label): the median over a group's pairs of clips of their embeddings' cosine, for
groups of 5, 10, 20 and 40 clips of one speaker ("one voice", 200 draws a speaker) and of 2, 3 or 4
speakers in equal shares (1,000 draws each).
"""
import json
from pathlib import Path

import numpy as np

from emort import Scorer
from emort.evaluation.scorer_compare import SHARED_DATA, cell_features, cell_pool
from emort.runtime.voice import group_voice_similarity

THRESHOLDS = (0.55, 0.58, 0.6, 0.62)
sc = Scorer.load(per_speaker=True)
c = cell_pool(SHARED_DATA, tuple(sc.bundle.labels), "val")
G = cell_features(c.items, sc.bundle.mel, "G")["G"]
speakers = sorted(set(c.speakers))
by = {s: np.where(c.speakers == s)[0] for s in speakers}
rng = np.random.default_rng(0)
out: dict = {"speakers": len(speakers), "clips": len(G), "groups": {}}
for n in (5, 10, 20, 40):
    one = [group_voice_similarity(G[rng.choice(by[s], n, replace=False)]) for s in speakers if len(by[s]) >= n for _ in range(200)]
    row = {"one voice": {"draws": len(one), "p1": float(np.percentile(one, 1)), "median": float(np.median(one)),
                         "below": {str(t): float(np.mean(np.array(one) < t)) for t in THRESHOLDS}}}
    for k in (2, 3, 4):
        per = max(1, n // k)
        mix = [group_voice_similarity(G[np.concatenate([rng.choice(by[s], per, replace=False) for s in rng.choice(speakers, k, replace=False)])])
               for _ in range(1000)]
        row[f"{k} voices"] = {"draws": len(mix), "clips": per * k, "median": float(np.median(mix)),
                              "below": {str(t): float(np.mean(np.array(mix) < t)) for t in THRESHOLDS}}
    out["groups"][str(n)] = row
    print(n, {k: v["below"] for k, v in row.items()}, flush=True)
(Path(__file__).parent / "measure.json").write_text(json.dumps(out, indent=1) + "\n")
