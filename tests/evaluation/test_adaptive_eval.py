"""The per-clip amount chosen by the SER: the choice per clip and the preregistered rule."""

import numpy as np
import pytest

from emort.evaluation.adaptive_eval import adaptive_choice, choose, qualifies, render_markdown

LADDER = (0.5, 1.0, 2.0, 3.0, 4.0)


def test_the_smallest_amount_that_reaches_the_threshold_is_chosen():
    p = np.array([
        [0.95, 0.96, 0.97, 0.98, 0.99],  # clear already: the smallest amount
        [0.10, 0.20, 0.75, 0.80, 0.90],  # clear from 2 dB
        [0.10, 0.20, 0.30, 0.40, 0.75],  # only at 4 dB: beyond a top of 2 dB
        [0.10, 0.10, 0.10, 0.10, 0.10],  # never
    ])
    assert adaptive_choice(p, LADDER, 0.7, 4.0, "top").tolist() == [0, 2, 4, 4]
    assert adaptive_choice(p, LADDER, 0.7, 4.0, "bottom").tolist() == [0, 2, 4, 0]
    assert adaptive_choice(p, LADDER, 0.7, 2.0, "top").tolist() == [0, 2, 2, 2]
    assert adaptive_choice(p, LADDER, 0.7, 2.0, "bottom").tolist() == [0, 2, 0, 0]


def _row(name, worst, mean, kind="auto"):
    return {"candidate": name, "worst_gain": worst, "mean_gain": mean, "kind": kind}


def test_the_rule_takes_the_largest_worst_cell_and_breaks_ties_by_the_mean():
    rows = [_row("a", 0.010, 0.05), _row("b", 0.012, 0.02), _row("c", 0.008, 0.09), _row("d", 0.030, 0.00)]
    assert choose(rows)["candidate"] == "d"  # worst cell first
    rows = [_row("a", 0.010, 0.05), _row("b", 0.012, 0.02), _row("c", 0.008, 0.09)]
    assert choose(rows)["candidate"] == "c"  # all within half a point: the mean decides


def test_the_report_renders_every_candidate():
    g = {"emodb": {"J1": 0.1, "J2": -0.02, "J3": 0.0}}
    row = {"candidate": "auto@0.7,2,top", "worst_gain": -0.02, "mean_gain": 0.027, "gain": g, "amount_mean_db": 1.2,
           "beyond": {"J1": 0.1, "J2": 0.2, "J3": 0.3}}
    rep = {"split": "val", "speakers": ["emodb/10"], "clips": {"emodb": 3}, "original": g, "beyond_original": {"J1": 0.0, "J2": 0.0, "J3": 0.1},
           "ser_target_p_source_mean": 0.4, "ser_target_p": {"0.5": 0.41}, "rows": [row],
           "chosen": {"candidate": "auto@0.7,2,top", "worst_gain": -0.02, "mean_gain": 0.027, "adopted": False, "rule": "r"}}
    md = render_markdown(rep)
    assert "| auto@0.7,2,top | -2.0 | +2.7 | +10.0 | -2.0 | +0.0 | 1.20 | 0.10 / 0.20 / 0.30 |" in md
    assert "adopted: False" in md


def test_bad_ladders_are_refused():
    p = np.full((1, len(LADDER)), 0.9)
    with pytest.raises(ValueError, match="below the ladder"):
        adaptive_choice(p, LADDER, 0.7, 0.25, "top")
    with pytest.raises(ValueError, match="fallback"):
        adaptive_choice(p, LADDER, 0.7, 2.0, "middle")


def test_adoption_needs_a_candidate_ahead_by_the_margin():
    ref = {"worst_gain": 0.0}
    assert qualifies({"worst_gain": 0.0104}, ref, True)
    assert qualifies({"worst_gain": 0.01}, ref, True)  # exactly one point counts
    assert not qualifies({"worst_gain": 0.009}, ref, True)
    assert not qualifies({"worst_gain": 0.05}, ref, False)  # a reference row never "wins adoption"
    assert not qualifies({"worst_gain": 0.05}, None, True)
