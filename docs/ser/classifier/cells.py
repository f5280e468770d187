"""UA of the candidates of docs/ser/classifier/PREREGISTRATION.md on the six cells
(`emort.evaluation.scorer_compare.speaker_cells`), on the validation speakers (``val``) or the test
speakers (``test``, read once, after the choice).

    python docs/ser/classifier/cells.py val     # -> docs/ser/classifier/val_cells.json
    python docs/ser/classifier/cells.py test svm10 lr0.01   # -> test_cells.json: the baseline and the rule's choice
    python docs/ser/classifier/cells.py val --blocks S svm10 lr0.01   # PREREGISTRATION_stats.md -> val_cells_S.json

Candidate names are FEATURES/CLASSIFIER: S+G or S+G+E (the blocks of docs/ser/egemaps_voice/cells.py),
and svm10, svm1, lr0.01, lr0.1 or lda. Needs the [train,eval] extras and resemblyzer; run from the
repository root.
"""
import sys
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import cell_features, cell_pool, speaker_cells, write_cells
from emort.runtime.bundle import load_bundle
from emort.training.stats_classifier import StatsClassifier

CLASSIFIERS = {"svm10": ("svm", 10.0), "svm1": ("svm", 1.0), "lr0.01": ("logreg", 0.01),
               "lr0.1": ("logreg", 0.1), "lda": ("lda", None)}

split = sys.argv[1] if len(sys.argv) > 1 else "val"
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
c = cell_pool(D, tuple(b.labels), split)
args = sys.argv[2:]
only = None
if args[:1] == ["--blocks"]:  # one feature block set, e.g. S (the statistics classifier's features)
    only, args = args[1], args[2:]
x = cell_features(c.items, b.mel, "".join(only.split("+")) if only else "SGE")  # only the blocks read
blocks = ({only: np.hstack([x[k] for k in only.split("+")])} if only else
          {"S+G": np.hstack([x["S"], x["G"]]), "S+G+E": np.hstack([x["S"], x["G"], x["E"]])})
chosen = args or list(CLASSIFIERS)
feats = {f"{f}/{k}": x for f, x in blocks.items() for k in chosen}


def make(name: str) -> StatsClassifier:
    model, C = CLASSIFIERS[name.split("/")[1]]
    return StatsClassifier(labels=tuple(b.labels), C=C, model=model)


cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, c.held, c.test, c.labels, make=make)
write_cells(cells, Path(__file__).parent / f"{split}_cells{'' if only is None else '_' + only}.json")
