"""UA of the candidates of docs/ser/ref_mix/PREREGISTRATION.md on the six cells
(`emort.evaluation.scorer_compare.speaker_cells`): each feature set fitted as shipped and fitted on
rows z-scored over varied pools of each training speaker's clips (R).

    python docs/ser/ref_mix/cells.py val [--seed S]   # -> docs/ser/ref_mix/val_cells[_seedS].json
    python docs/ser/ref_mix/cells.py test             # read once, after the choice

Needs the [train,eval] extras and resemblyzer; run from the repository root.
"""
import sys
import time
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import cell_features, cell_pool, speaker_cells, write_cells
from emort.runtime.bundle import load_bundle
from emort.training.ustats import mixed_pool_rows

K = 3          # extra pools per training speaker
split = sys.argv[1] if len(sys.argv) > 1 else "val"
seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
c = cell_pool(D, tuple(b.labels), split)
xs, xg, xe = cell_features(c.items, b.mel, "SGE").values()
feats = {"S+G": np.hstack([xs, xg]), "S+G R": np.hstack([xs, xg]),
         "S+G+E": np.hstack([xs, xg, xe]), "S+G+E R": np.hstack([xs, xg, xe])}


def fit_rows(name, x, train, ref):
    """R (emort.training.ustats.mixed_pool_rows, K pools per training speaker) for the "R" candidates."""
    if not name.endswith(" R"):
        return x[train], c.y[train], c.speakers[train], ref
    return mixed_pool_rows(x, c.y, c.speakers, c.emotions, train, ref, K, seed)


t = time.time()
cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, c.held, c.test, c.labels, fit_rows=fit_rows)
print(f"fits {time.time() - t:.0f} s")
write_cells(cells, Path(__file__).parent / f"{split}_cells{f'_seed{seed}' if seed else ''}.json")
