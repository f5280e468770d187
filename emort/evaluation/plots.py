"""Re-exports :func:`emort.training.plots.plot_mels` (the figures live with the training code)."""

from emort.training.plots import plot_confusion, plot_mels  # noqa: F401
