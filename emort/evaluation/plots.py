"""Figures: mel before/after."""

from __future__ import annotations

import numpy as np


def plot_mels(before: np.ndarray, after: np.ndarray, path: str, title: str = "") -> None:
    """Log-mels ``(n_mels, frames)`` before, after and their difference, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=100)
    plt.close(fig)
