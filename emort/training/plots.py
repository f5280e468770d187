"""Figures (matplotlib, imported lazily: the ``[train]`` extra): confusion matrices and mels."""

from __future__ import annotations

import numpy as np

from emort.runtime.atomic import atomic_write
from emort.training.metrics import ClassificationReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training and CI machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, dpi: int) -> None:
    plt = _pyplot()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def plot_confusion(rep: ClassificationReport, path: str, title: str = "") -> None:
    """PNG heat map of the row-normalised confusion matrix (percent of each true class)."""
    plt = _pyplot()
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
    _save(fig, path, 120)


def plot_mels(before: np.ndarray, after: np.ndarray, path: str, title: str = "") -> None:
    """Log-mels ``(n_mels, frames)`` before, after and their difference, one PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    vmin, vmax = float(before.min()), float(before.max())
    for ax, m, name in ((axes[0], before, "source"), (axes[1], after, "enhanced")):
        ax.imshow(m, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_ylabel(f"{name}\nmel band")
    diff = after - before
    lim = max(float(np.abs(diff).max()), 1e-3)
    im = axes[2].imshow(diff, origin="lower", aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim)
    axes[2].set_ylabel("difference\n(log units)")
    axes[2].set_xlabel("frame")
    fig.colorbar(im, ax=axes, fraction=0.02)
    fig.suptitle(title)
    _save(fig, path, 100)
