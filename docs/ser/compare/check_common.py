"""Helpers shared by docs/ser/compare/check.py and check2.py: the block-weighted classifier and the rule."""
import numpy as np

from emort.training.stats_classifier import StatsClassifier

BLOCK_WEIGHT = float(np.sqrt(88 / 6373))  # Cb: the ComParE block's columns after the scaler


class BlockWeighted(StatsClassifier):
    """A StatsClassifier whose scaled columns ``weights`` (``(D,)``) are multiplied in after the
    StandardScaler (folded into its ``scale_``), so a block's share of the L2 penalty is set."""

    def __init__(self, weights: np.ndarray, **kw):
        super().__init__(**kw)
        self.weights = np.asarray(weights, dtype=np.float64)

    def fit(self, features, labels, speakers, speaker_stats=None):
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(labels, dtype=np.int64)
        z = self._normalise(features, speakers, speaker_stats)
        self._scaler = StandardScaler().fit(z)
        self._scaler.scale_ = self._scaler.scale_ / self.weights
        self._svm = self._linear(len(np.unique(y))).fit(self._scaler.transform(z), y)
        return self


def make_classifier(n_plain: int, n_compare: int, weighted: bool, labels, norm: str) -> StatsClassifier:
    if not weighted:
        return StatsClassifier(labels=labels, C=0.01, model="logreg", norm=norm)
    w = np.concatenate([np.ones(n_plain), np.full(n_compare, BLOCK_WEIGHT)])
    return BlockWeighted(w, labels=labels, C=0.01, model="logreg", norm=norm)


def pick(cells: dict[str, dict[str, float]], base: str, candidates: list[str], worst_key: str, mean_key: str) -> dict:
    """The rule: worst >= base's + 0.02 and mean not lower; the best worst, within 0.02 the higher mean."""
    b = cells[base]
    ok = {n: cells[n] for n in candidates if cells[n][worst_key] >= b[worst_key] + 0.02 and cells[n][mean_key] >= b[mean_key]}
    chosen = None
    if ok:
        best = max(r[worst_key] for r in ok.values())
        chosen = max((n for n in ok if ok[n][worst_key] >= best - 0.02), key=lambda n: ok[n][mean_key])
    return {"qualify": sorted(ok), "adopted": chosen}
