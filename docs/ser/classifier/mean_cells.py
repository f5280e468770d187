"""UA of the candidates of docs/ser/classifier/PREREGISTRATION_mean.md on the six cells, on the
validation speakers (``val``) or the test speakers (``test``, read once, only if adopted).

    python docs/ser/classifier/mean_cells.py val    # -> docs/ser/classifier/val_cells_mean.json
"""
import sys
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import cell_features, cell_pool, speaker_cells, write_cells
from emort.runtime.bundle import load_bundle
from emort.training.stats_classifier import StatsClassifier


class Mean:
    """The arithmetic mean of the probabilities of svm10 and lr0.01, fitted on the same rows."""

    def __init__(self, labels):
        self.parts = [StatsClassifier(labels=labels, C=10.0, model="svm"), StatsClassifier(labels=labels, C=0.01, model="logreg")]

    def fit(self, *rows):
        for p in self.parts:
            p.fit(*rows)
        return self

    def predict_proba(self, *args):
        return np.mean([p.predict_proba(*args) for p in self.parts], axis=0)


split = sys.argv[1] if len(sys.argv) > 1 else "val"
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
c = cell_pool(D, tuple(b.labels), split)
x = cell_features(c.items, b.mel, "SGE")
blocks = {"S+G": np.hstack([x["S"], x["G"]]), "S+G+E": np.hstack([x["S"], x["G"], x["E"]])}
feats = {f"{f}/{k}": v for f, v in blocks.items() for k in ("lr0.01", "mean")}


def make(name: str):
    return Mean(tuple(b.labels)) if name.endswith("/mean") else StatsClassifier(labels=tuple(b.labels), C=0.01, model="logreg")


cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, c.held, c.test, c.labels, make=make)
write_cells(cells, Path(__file__).parent / f"{split}_cells_mean.json")
