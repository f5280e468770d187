"""UA of the candidates of docs/ser/egemaps_voice/PREREGISTRATION.md on the six cells
(`emort.evaluation.scorer_compare.speaker_cells`), on the validation speakers (``val``) or the test
speakers (``test``, read once, after the choice).

    python docs/ser/egemaps_voice/cells.py val     # -> docs/ser/egemaps_voice/val_cells.json
    python docs/ser/egemaps_voice/cells.py test    # -> test_cells.json

S = log-mel + F0 statistics, G = the GE2E voice embedding (the shipped voice classifier's features,
`ustats+pitch+ge2e`), E = openSMILE's eGeMAPSv02 functionals. Needs the [train,eval] extras and
resemblyzer; run from the repository root.
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
from emort.training.ustats import pool_statistics
from emort.training.voice import voice_matrix

split = sys.argv[1] if len(sys.argv) > 1 else "val"
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
corp = np.array([i.corpus for i in pool])
isc = np.array([i.path in canon for i in pool])
y = np.array([labels.index(i.emotion) if i.path in canon else -1 for i in pool])
test = np.isin(spk, TEST_SPEAKERS)
held = test if split == "test" else np.isin(spk, VAL_SPEAKERS)
feats = {"S+G": np.hstack([xs, xg]), "S+G+E": np.hstack([xs, xg, xe]), "S+E": np.hstack([xs, xe]),
         "G+E": np.hstack([xg, xe])}
cells = speaker_cells(feats, y, spk, corp, isc, held, test, labels)
for name, row in cells.items():
    print(f"{name:6s} " + " ".join(f"{k}={x:.3f}" for k, x in row.items()), flush=True)
out = Path(__file__).parent / f"{split}_cells.json"
out.write_text(json.dumps(cells, indent=1) + "\n")
print("wrote", out)
