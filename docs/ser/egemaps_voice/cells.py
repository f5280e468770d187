"""UA of the candidates of docs/ser/egemaps_voice/PREREGISTRATION.md on the six cells
(`emort.evaluation.scorer_compare.speaker_cells`), on the validation speakers (``val``) or the test
speakers (``test``, read once, after the choice).

    python docs/ser/egemaps_voice/cells.py val     # -> docs/ser/egemaps_voice/val_cells.json
    python docs/ser/egemaps_voice/cells.py test    # -> test_cells.json

S = log-mel + F0 statistics, G = the GE2E voice embedding (the shipped voice classifier's features,
`ustats+pitch+ge2e`), E = openSMILE's eGeMAPSv02 functionals. Needs the [train,eval] extras and
resemblyzer; run from the repository root.
"""
import sys
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import cell_features, cell_pool, speaker_cells, write_cells
from emort.runtime.bundle import load_bundle

split = sys.argv[1] if len(sys.argv) > 1 else "val"
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
c = cell_pool(D, tuple(b.labels), split)
xs, xg, xe = cell_features(c.items, b.mel, "SGE").values()
feats = {"S+G": np.hstack([xs, xg]), "S+G+E": np.hstack([xs, xg, xe]), "S+E": np.hstack([xs, xe]),
         "G+E": np.hstack([xg, xe])}
cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, c.held, c.test, c.labels)
write_cells(cells, Path(__file__).parent / f"{split}_cells.json")
