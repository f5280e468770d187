"""The F0-plan comparison's pieces (the run itself reads the corpora: see docs/eval/conversion/per_speaker.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emort.evaluation.prosody_plan_eval import PLANS, _features, _ridge, render_markdown
from emort.runtime.prosody import SpeakerProsody


def test_ridge_recovers_a_linear_rule_and_leaves_the_intercept_free():
    rng = np.random.default_rng(0)
    x = np.c_[np.ones(400), rng.normal(size=(400, 2))]
    w = np.array([[5.0, -1.0], [2.0, 0.5], [-3.0, 0.0]])
    got = _ridge(x, x @ w)
    np.testing.assert_allclose(got, w, atol=0.05)  # a penalty of 1 on 400 rows barely shrinks


def test_features_per_learned_plan():
    clip = {"level": 96.0, "range": 2.0}
    base = SpeakerProsody(level=100.0, range=4.0, clips=6)
    p = np.array([0.5, 0.5, 0, 0, 0, 0])
    assert _features("ridge-posterior", clip, p, base).tolist() == [1.0, 0.5, 0.5, 0, 0, 0, 0]
    assert _features("ridge-clip", clip, p, base)[-2:].tolist() == [8.0, pytest.approx(math.log(2.0))]
    assert _features("ridge-speaker", clip, p, base)[-2:].tolist() == [pytest.approx(-1 / 3), pytest.approx(math.log(0.5))]


def test_report_lists_every_plan_per_split_and_corpus():
    cell = {p: 1.0 + i for i, p in enumerate(PLANS)}
    r = {"rows": 10, "rms_semitones": {"val": {"emodb": cell}}, "rms_log_range": {"val": {"emodb": cell}}}
    md = render_markdown(r)
    assert "| val | emodb | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 |" in md and "| corpus | clip | speaker |" in md
