"""The companion contour model (emort.training.prosody_model): its contours, a short training run
and the plan it gives (the measurement: docs/eval/conversion/prosody_model/)."""

import math

import numpy as np
import pytest

pytest.importorskip("pyworld")

from emort.runtime.settings import DEFAULT_MEL  # noqa: E402
from emort.training.prosody_model import (  # noqa: E402
    ContourTrainConfig,
    continuous_log_f0,
    load,
    plan_edit,
    raw_contours,
    train_contour_model,
)


def voice(f0: float, seconds: float = 1.0, sr: int = 16000, gain: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return (gain * x / 2 * np.hanning(len(t)) ** 0.2).astype(np.float32)


def test_unvoiced_frames_are_filled_between_voiced_ones_and_held_at_the_ends():
    lf0 = np.array([0, 0, 5.0, 0, 0, 5.3, 0])
    v = lf0 > 0
    np.testing.assert_allclose(continuous_log_f0(lf0, v), [5.0, 5.0, 5.0, 5.1, 5.2, 5.3, 5.3])
    assert not continuous_log_f0(np.zeros(4), np.zeros(4, bool)).any()


def test_contours_are_three_channels_on_the_mel_grid():
    c = raw_contours(voice(150.0), 16000, DEFAULT_MEL)
    assert c.shape[0] == 3 and set(np.unique(c[1])) <= {-1.0, 1.0}
    voiced = c[1] > 0
    assert voiced.mean() > 0.5 and abs(np.median(np.exp(c[0][voiced])) - 150.0) < 5.0


def test_a_short_run_trains_saves_and_plans(tmp_path):
    clips = [voice(f0, gain=g) for f0, g in ((120, 0.2), (125, 0.2), (220, 0.5), (230, 0.5))]
    contours = [raw_contours(x, 16000, DEFAULT_MEL) for x in clips]
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]  # two "emotions": low and quiet, high and loud
    cfg = ContourTrainConfig(out=str(tmp_path), channels=[16, 16, 16], steps=3, batch_size=4)
    hist = train_contour_model(cfg, contours, emb, emb.copy(), ["a", "a", "b", "b"], DEFAULT_MEL, {"note": "test"})
    assert len(hist["history"]) == 1 and math.isfinite(hist["history"][0]["loss"])
    model, norm, meta = load(tmp_path)
    assert meta["note"] == "test" and meta["history"] == hist["history"]
    p = plan_edit(model, norm, contours[0], emb[0], emb[2], draws=2)
    assert set(p) == {"semitones", "f0_range", "loudness_db"} and all(math.isfinite(v) for v in p.values()) and p["f0_range"] > 0
    # the same conditioning on both sides: no change
    same = plan_edit(model, norm, contours[0], emb[0], emb[0], draws=2)
    assert abs(same["semitones"]) < 1e-6 and abs(same["loudness_db"]) < 1e-6 and abs(same["f0_range"] - 1) < 1e-6
    silent = np.stack([np.zeros(50), -np.ones(50), np.zeros(50)])
    assert plan_edit(model, norm, silent, emb[0], emb[2]) is None
