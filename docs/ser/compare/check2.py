"""The second rule of docs/ser/compare (PREREGISTRATION_2.md): the per-speaker ComParE candidates
without degenerate columns, on study 1's six validation cells; writes docs/ser/compare/cells_val2.json.

    python docs/ser/compare/check2.py    # after features.py; ~5 minutes
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from check_common import BLOCK_WEIGHT, make_classifier, pick  # noqa: E402
from features import compare_matrix  # noqa: E402

from emort.evaluation.scorer_compare import SHARED_DATA, cell_features, cell_pool, speaker_cells  # noqa: E402
from emort.runtime.bundle import load_bundle  # noqa: E402
from emort.runtime.ustats import normalise_per_speaker  # noqa: E402
from emort.training.splits import VAL2_SPEAKERS, VAL_SPEAKERS  # noqa: E402

MIN_STD = 0.1  # a column's standard deviation over the training rows after the per-speaker z-score


class WithoutDegenerate:
    """A classifier fitted on the columns whose per-speaker z-scored training standard deviation is at
    least MIN_STD (the rest dropped, at fit and at prediction)."""

    def __init__(self, make):
        self.make, self.keep, self.clf = make, None, None

    @staticmethod
    def _cols(stats, keep):
        return None if stats is None else {s: (m[keep], d[keep]) for s, (m, d) in stats.items()}

    def fit(self, x, y, speakers, stats=None):
        self.keep = normalise_per_speaker(x, speakers, stats).std(axis=0) >= MIN_STD
        print(f"  dropped {int((~self.keep).sum())} of {len(self.keep)} columns", flush=True)
        self.clf = self.make(self.keep).fit(x[:, self.keep], y, speakers, self._cols(stats, self.keep))
        return self

    def predict_proba(self, x, speakers, stats=None):
        return self.clf.predict_proba(x[:, self.keep], speakers, self._cols(stats, self.keep))


b = load_bundle(None)
LABELS = tuple(b.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
groups = np.isin(c.speakers, list(VAL_SPEAKERS) + list(VAL2_SPEAKERS))
xs, xg = cell_features(c.items, b.mel, "SG").values()
xc = compare_matrix([i.path for i in c.items])
n_sg = xs.shape[1] + xg.shape[1]
feats = {"SG": np.hstack([xs, xg]), "SGC'": np.hstack([xs, xg, xc]), "SGCb'": np.hstack([xs, xg, xc])}


def make(name: str):
    if name == "SG":
        return make_classifier(n_sg, 0, False, LABELS, "speaker")
    weighted = name == "SGCb'"
    # the block weight applies to the ComParE columns that are kept
    return WithoutDegenerate(lambda keep: make_classifier(int(keep[:n_sg].sum()), int(keep[n_sg:].sum()), weighted, LABELS, "speaker"))


cells = speaker_cells(feats, c.y, c.speakers, c.corpora, c.canonical, groups, c.test, LABELS, make=make)
for n, r in cells.items():
    print(f"{n:6s}", " ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
out = {"split": "val", "block_weight": BLOCK_WEIGHT, "min_std": MIN_STD, "cells": cells,
       "rule": pick(cells, "SG", ["SGC'", "SGCb'"], "worst", "mean")}
print("rule:", out["rule"])
Path(__file__).with_name("cells_val2.json").write_text(json.dumps(out, indent=1) + "\n")
