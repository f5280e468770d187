"""Classification metrics of the paper's section 5: confusion matrix, WA, UA, P/R/F1.

numpy only, so training (validation UA), evaluation and the benchmarks share one
definition; figures are in :mod:`emort.training.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts, shape ``(num_classes, num_classes)``: rows true, columns predicted."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


@dataclass
class ClassificationReport:
    labels: list[str]
    confusion: list[list[int]]  # rows true, columns predicted
    wa: float  # overall accuracy
    ua: float  # mean per-class recall over classes present in y_true
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    macro_f1: float
    n: int
    #: 95% interval of ``ua`` (:func:`ua_interval`, Jeffreys posteriors of the class recalls): how
    #: far it could move with other clips of the same speakers, not with other speakers.
    ua_ci95: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def confusion_percent(self) -> np.ndarray:
        """Row-normalised confusion in percent (the layout of the paper's Tables 6-9)."""
        cm = np.asarray(self.confusion, dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        return np.divide(100 * cm, rows, out=np.zeros_like(cm), where=rows > 0)


def ua_interval(cm: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Interval of the UA of a ``(C, C)`` confusion matrix: each present class's recall is drawn
    from its Jeffreys posterior ``Beta(hits + 1/2, misses + 1/2)`` and the UA (their mean, as UA
    weighs classes equally) taken at the ``level`` percentiles. Unlike a bootstrap of the clips,
    a class read perfectly (or never) still has spread. It says how far the UA could move with
    other clips of the same speakers, not with other speakers. Seeded: the same matrix, the same
    interval. ``(nan, nan)`` for an empty matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n, hits = support[present], np.diag(cm)[present]
    draws = rng.beta(hits + 0.5, n - hits + 0.5, size=(resamples, len(n)))
    ua = draws.mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(ua, a)), float(np.quantile(ua, 1.0 - a))


def report_from_confusion(cm: np.ndarray, labels: Sequence[str]) -> ClassificationReport:
    """Report of a ``(C, C)`` count matrix (rows true, columns predicted; ``C = len(labels)``).

    UA and macro-F1 average over the classes present in the true labels, so a class
    missing from a test set (EmoDB's held-out speakers lack some emotions) does not count as 0.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    n = int(cm.sum())
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    return ClassificationReport(
        labels=list(labels),
        confusion=cm.tolist(),
        wa=float(tp.sum() / n) if n else 0.0,
        ua=float(recall[present].mean()) if present.any() else 0.0,
        precision={lab: float(v) for lab, v in zip(labels, precision)},
        recall={lab: float(v) for lab, v in zip(labels, recall)},
        f1={lab: float(v) for lab, v in zip(labels, f1)},
        support={lab: int(v) for lab, v in zip(labels, support)},
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        n=n,
        ua_ci95=ua_interval(cm) if present.any() else None,
    )


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> ClassificationReport:
    """Report of integer labels ``(N,)`` indexing ``labels``: :func:`report_from_confusion` of their counts."""
    return report_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)


def ua_interval_text(rep: ClassificationReport) -> str:
    """`` [0.801, 0.874]`` (the report's 95% UA interval), or ``""`` without one."""
    return "" if rep.ua_ci95 is None else f" [{rep.ua_ci95[0]:.3f}, {rep.ua_ci95[1]:.3f}]"


def format_confusion(rep: ClassificationReport) -> str:
    """Markdown table, rows true / columns predicted, percentages."""
    pct = rep.confusion_percent()
    head = "| true \\ pred | " + " | ".join(rep.labels) + " | n |"
    sep = "|" + "---|" * (len(rep.labels) + 2)
    rows = [
        f"| {lab} | " + " | ".join(f"{v:.1f}" for v in pct[i]) + f" | {rep.support[lab]} |"
        for i, lab in enumerate(rep.labels)
    ]
    return "\n".join([head, sep, *rows])


def format_prf(rep: ClassificationReport) -> str:
    """Markdown table of per-class precision, recall, F1 and support, then WA / UA / macro-F1."""
    rows = ["| emotion | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for lab in rep.labels:
        rows.append(f"| {lab} | {rep.precision[lab]:.3f} | {rep.recall[lab]:.3f} | {rep.f1[lab]:.3f} | {rep.support[lab]} |")
    rows.append(f"| **WA / UA / macro-F1** | | | | {rep.wa:.3f} / {rep.ua:.3f} / {rep.macro_f1:.3f} |")
    if rep.ua_ci95 is not None:
        rows.append(f"| UA, 95% interval (each emotion's recall from its Jeffreys posterior) | | | | [{rep.ua_ci95[0]:.3f}, {rep.ua_ci95[1]:.3f}] |")
    return "\n".join(rows)
