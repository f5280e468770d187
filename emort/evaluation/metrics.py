"""Classification metrics of the paper's section 5 (WA, UA, P/R/F1, confusion matrices)."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    def confusion_percent(self) -> np.ndarray:
        """Row-normalised confusion in percent (the layout of the paper's Tables 6-9)."""
        cm = np.asarray(self.confusion, dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        return np.divide(100 * cm, rows, out=np.zeros_like(cm), where=rows > 0)


def report_from_confusion(cm: np.ndarray, labels: Sequence[str]) -> ClassificationReport:
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
    )


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> ClassificationReport:
    return report_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)


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
    rows = ["| emotion | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for lab in rep.labels:
        rows.append(f"| {lab} | {rep.precision[lab]:.3f} | {rep.recall[lab]:.3f} | {rep.f1[lab]:.3f} | {rep.support[lab]} |")
    rows.append(f"| **WA / UA / macro-F1** | | | | {rep.wa:.3f} / {rep.ua:.3f} / {rep.macro_f1:.3f} |")
    return "\n".join(rows)


def plot_confusion(rep: ClassificationReport, path: str, title: str = "") -> None:
    """PNG heat map of the row-normalised confusion matrix (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = rep.confusion_percent()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(pct, vmin=0, vmax=100, cmap="Blues")
    ax.set_xticks(range(len(rep.labels)), rep.labels, rotation=45, ha="right")
    ax.set_yticks(range(len(rep.labels)), rep.labels)
    for i in range(len(rep.labels)):
        for j in range(len(rep.labels)):
            ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", color="white" if pct[i, j] > 60 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"WA {rep.wa:.3f}  UA {rep.ua:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
