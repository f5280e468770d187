"""Re-exports :mod:`emort.training.joblib_io` (saving fitted models lives with the training code)."""

from emort.training.joblib_io import dump_atomic, load_checked  # noqa: F401
