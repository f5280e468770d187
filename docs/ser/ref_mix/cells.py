"""UA of the candidates of docs/ser/ref_mix/PREREGISTRATION.md on the six cells
(`emort.evaluation.scorer_compare.speaker_cells`): each feature set fitted as shipped and fitted on
rows z-scored over varied pools of each training speaker's clips (R).

    python docs/ser/ref_mix/cells.py val [--seed S]   # -> docs/ser/ref_mix/val_cells[_seedS].json
    python docs/ser/ref_mix/cells.py test             # read once, after the choice

Needs the [train,eval] extras and resemblyzer; run from the repository root.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import speaker_cells
from emort.runtime.bundle import load_bundle
from emort.training.corpora import only_canonical, read_specs
from emort.training.egemaps import egemaps_matrix
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.ustats import mixed_pool_rows, pool_statistics
from emort.training.voice import voice_matrix

K = 3          # extra pools per training speaker
split = sys.argv[1] if len(sys.argv) > 1 else "val"
seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
labels = tuple(b.labels)
pool = list(read_specs(D))
canon = set(i.path for i in only_canonical(pool))
t = time.time()
xs, _ = pool_statistics(pool, b.mel, "ustats+pitch", None)
xg = voice_matrix(pool)
xe = egemaps_matrix([i.path for i in pool])
print("S, G, E", xs.shape, xg.shape, xe.shape, f"{time.time() - t:.0f} s", flush=True)
spk = np.array([i.speaker_key for i in pool])
emo = np.array([i.emotion for i in pool])          # every label, calm / boredom / surprised included
corp = np.array([i.corpus for i in pool])
isc = np.array([i.path in canon for i in pool])
y = np.array([labels.index(i.emotion) if i.path in canon else -1 for i in pool])
test = np.isin(spk, TEST_SPEAKERS)
held = test if split == "test" else np.isin(spk, VAL_SPEAKERS)
feats = {"S+G": np.hstack([xs, xg]), "S+G R": np.hstack([xs, xg]),
         "S+G+E": np.hstack([xs, xg, xe]), "S+G+E R": np.hstack([xs, xg, xe])}


def fit_rows(name, x, train, ref):
    """R (emort.training.ustats.mixed_pool_rows, K pools per training speaker) for the "R" candidates."""
    if not name.endswith(" R"):
        return x[train], y[train], spk[train], ref
    return mixed_pool_rows(x, y, spk, emo, train, ref, K, seed)


t = time.time()
cells = speaker_cells(feats, y, spk, corp, isc, held, test, labels, fit_rows=fit_rows)
print(f"fits {time.time() - t:.0f} s")
for name, row in cells.items():
    print(f"{name:8s} " + " ".join(f"{k}={x:.3f}" for k, x in row.items()), flush=True)
out = Path(__file__).parent / f"{split}_cells{f'_seed{seed}' if seed else ''}.json"
out.write_text(json.dumps(cells, indent=1) + "\n")
print("wrote", out)
