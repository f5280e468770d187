"""emort.training.metrics (and plots) against hand-computed values."""

from __future__ import annotations

import json
from fractions import Fraction as F

import numpy as np
import pytest

from emort.training.metrics import (
    classification_report,
    confusion_matrix,
    format_confusion,
    format_prf,
    report_from_confusion,
    ua_interval,
)
from emort.training.plots import plot_confusion

LABELS = ["a", "b", "c"]
# Hand-made 3-class case, rows true, columns predicted:
#
#          pred a  pred b  pred c | support
#   a         4       1       0   |   5
#   b         1       2       0   |   3
#   c         1       1       2   |   4
#   -------------------------------
#   predicted 6       4       2      n = 12
#
# WA = (4 + 2 + 2) / 12 = 2/3
# recall:    a 4/5, b 2/3, c 2/4 = 1/2  ->  UA = (4/5 + 2/3 + 1/2) / 3 = 59/90
# precision: a 4/6 = 2/3, b 2/4 = 1/2, c 2/2 = 1
# F1 = 2PR/(P+R): a 2(2/3)(4/5)/(2/3+4/5) = 8/11; b 2(1/2)(2/3)/(1/2+2/3) = 4/7; c 2(1)(1/2)/(3/2) = 2/3
# macro-F1 = (8/11 + 4/7 + 2/3) / 3
CM = np.array([[4, 1, 0], [1, 2, 0], [1, 1, 2]])
WA = F(2, 3)
UA = F(59, 90)
PRECISION = {"a": F(2, 3), "b": F(1, 2), "c": F(1)}
RECALL = {"a": F(4, 5), "b": F(2, 3), "c": F(1, 2)}
F1 = {"a": F(8, 11), "b": F(4, 7), "c": F(2, 3)}
MACRO_F1 = (F(8, 11) + F(4, 7) + F(2, 3)) / 3


def _pairs_from_confusion(cm: np.ndarray) -> tuple[list[int], list[int]]:
    y_true, y_pred = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            y_true += [i] * int(cm[i, j])
            y_pred += [j] * int(cm[i, j])
    # shuffle so nothing depends on order
    order = np.random.default_rng(0).permutation(len(y_true))
    return [y_true[k] for k in order], [y_pred[k] for k in order]


def test_confusion_matrix_counts():
    y_true, y_pred = _pairs_from_confusion(CM)
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, CM)
    # orientation: rows are true labels
    np.testing.assert_array_equal(confusion_matrix([0], [2], 3), [[0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_report_hand_computed():
    y_true, y_pred = _pairs_from_confusion(CM)
    rep = classification_report(y_true, y_pred, LABELS)
    assert rep.n == 12
    assert rep.confusion == CM.tolist()
    assert rep.wa == pytest.approx(float(WA), abs=1e-12)
    assert rep.ua == pytest.approx(float(UA), abs=1e-12)
    assert rep.wa != pytest.approx(rep.ua)  # the case separates the two
    for lab in LABELS:
        assert rep.precision[lab] == pytest.approx(float(PRECISION[lab]), abs=1e-12), lab
        assert rep.recall[lab] == pytest.approx(float(RECALL[lab]), abs=1e-12), lab
        assert rep.f1[lab] == pytest.approx(float(F1[lab]), abs=1e-12), lab
    assert rep.support == {"a": 5, "b": 3, "c": 4}
    assert rep.macro_f1 == pytest.approx(float(MACRO_F1), abs=1e-12)


def test_report_from_confusion_equals_classification_report():
    y_true, y_pred = _pairs_from_confusion(CM)
    assert report_from_confusion(CM, LABELS).to_dict() == classification_report(y_true, y_pred, LABELS).to_dict()


def test_absent_class_excluded_from_ua():
    # 4 labels; "d" never occurs in y_true but is predicted once.
    labels = ["a", "b", "c", "d"]
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 3, 1, 1, 0]
    rep = classification_report(y_true, y_pred, labels)
    # recall a 1/2, b 2/2, c 0/1; d has no support -> UA = (1/2 + 1 + 0) / 3 = 1/2 (not 3/8)
    assert rep.ua == pytest.approx(0.5)
    assert rep.wa == pytest.approx(3 / 5)
    assert rep.support["d"] == 0
    assert rep.recall["d"] == 0.0 and rep.precision["d"] == 0.0
    # precision a = 1/2 (a predicted for a and c), F1 a = 1/2; b = 1; c = 0 -> macro over present = 1/2
    assert rep.precision["a"] == pytest.approx(0.5)
    assert rep.macro_f1 == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_perfect_and_empty():
    rep = classification_report([0, 1, 2, 2], [0, 1, 2, 2], LABELS)
    assert rep.wa == rep.ua == rep.macro_f1 == 1.0
    empty = classification_report([], [], LABELS)
    assert empty.n == 0 and empty.wa == 0.0 and empty.ua == 0.0


def test_confusion_percent_rows():
    rep = report_from_confusion(np.array([[4, 1, 0], [0, 0, 0], [1, 1, 2]]), LABELS)
    pct = rep.confusion_percent()
    np.testing.assert_allclose(pct[0], [80.0, 20.0, 0.0])
    np.testing.assert_allclose(pct[2], [25.0, 25.0, 50.0])
    np.testing.assert_allclose(pct[[0, 2]].sum(axis=1), 100.0)
    np.testing.assert_array_equal(pct[1], 0.0)  # a row with no support stays zero, not NaN


def test_format_confusion_and_prf():
    rep = report_from_confusion(CM, ["neutral", "angry", "sad"])
    table = format_confusion(rep)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    for lab in ("neutral", "angry", "sad"):
        assert lab in lines[0]
    assert lines[2].startswith("| neutral | 80.0 | 20.0 | 0.0 | 5 |")
    prf = format_prf(rep)
    assert "0.667 / 0.656 /" in prf  # WA / UA
    assert "| angry | 0.500 | 0.667 | 0.571 | 3 |" in prf


def test_report_to_dict_is_json():
    rep = report_from_confusion(CM, LABELS)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["confusion"] == CM.tolist() and d["labels"] == LABELS


def test_plot_confusion_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is in the [train] extra")
    rep = report_from_confusion(CM, LABELS)
    out = tmp_path / "cm.png"
    plot_confusion(rep, str(out), title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000
    assert not [p for p in tmp_path.iterdir() if p != out]  # written through a temp file, none left


def test_evaluation_keeps_the_old_import_paths():
    import emort.evaluation.metrics as old
    import emort.training.metrics as new

    assert old.classification_report is new.classification_report and old.plot_confusion is plot_confusion


def test_the_interval_brackets_ua_and_narrows_with_more_clips():
    cm = np.array([[8, 2, 0], [1, 7, 2], [0, 3, 7]])
    rep = report_from_confusion(cm, ["a", "b", "c"])
    lo, hi = rep.ua_ci95
    assert lo < rep.ua < hi
    lo10, hi10 = ua_interval(cm * 10)
    assert hi10 - lo10 < hi - lo  # ten times the clips, the same recalls: a narrower interval
    assert ua_interval(cm) == ua_interval(cm)  # seeded


def test_perfect_and_absent_classes():
    rep = classification_report([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b", "c"])  # c absent: not counted
    assert rep.ua == 1.0 and rep.ua_ci95[1] <= 1.0 and rep.ua_ci95[0] < 0.9  # two clips a class read right: still uncertain
    assert report_from_confusion(np.zeros((2, 2), int), ["a", "b"]).ua_ci95 is None
