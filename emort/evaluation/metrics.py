"""Re-exports :mod:`emort.training.metrics` and :func:`~emort.training.plots.plot_confusion`.

The metrics live below training and evaluation (training reports validation UA with
them); this module keeps the older import path working.
"""

from emort.training.metrics import (  # noqa: F401
    ClassificationReport,
    classification_report,
    confusion_matrix,
    format_confusion,
    format_prf,
    report_from_confusion,
    ua_interval,
    ua_interval_text,
)
from emort.training.plots import plot_confusion  # noqa: F401
