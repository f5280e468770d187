"""Speaker-style SER augmentations: exact behaviour on synthetic log-mels."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("librosa")

from emort.runtime.settings import DEFAULT_MEL  # noqa: E402
from emort.training.augment import _warp_index, augment_batch, freq_warp, time_stretch  # noqa: E402


def test_warp_identity_and_direction():
    assert np.allclose(_warp_index(DEFAULT_MEL, 1.0), np.arange(DEFAULT_MEL.n_mels), atol=1e-4)
    x = torch.zeros(1, DEFAULT_MEL.n_mels, 4)
    x[0, 40] = 1.0  # one band lit: a "formant"
    up = freq_warp(x, DEFAULT_MEL, 1.1)  # reads the original 10% higher: the formant lands lower
    down = freq_warp(x, DEFAULT_MEL, 0.9)
    assert int(up[0, :, 0].argmax()) < 40 < int(down[0, :, 0].argmax())
    assert torch.equal(freq_warp(x, DEFAULT_MEL, 1.0), x)


def test_time_stretch_length():
    x = torch.randn(1, 80, 100)
    assert time_stretch(x, 1.2).shape == (1, 80, 120)
    assert time_stretch(x, 0.9).shape == (1, 80, 90)


def test_gain_only_is_a_constant_shift_in_range():
    rng = np.random.default_rng(0)
    mel = np.full((DEFAULT_MEL.n_mels, 50), -2.0, np.float32)
    per_db = DEFAULT_MEL.power * math.log(10) / 20
    shifts = [float((augment_batch([mel], 50, rng, DEFAULT_MEL, warp=0, stretch=0, gain_db=6)[0] - mel).mean()) for _ in range(50)]
    assert max(abs(s) for s in shifts) <= 6 * per_db + 1e-5
    assert np.std(shifts) > 0.1  # it does vary


def test_floor_is_kept_and_length_near_target():
    rng = np.random.default_rng(1)
    floor = math.log(DEFAULT_MEL.log_floor)
    mel = np.full((DEFAULT_MEL.n_mels, 400), floor, np.float32)
    out = augment_batch([mel, mel[:, :30]], 200, rng, DEFAULT_MEL)
    assert all(o.min() >= floor - 1e-6 for o in out)
    assert abs(out[0].shape[1] - 200) <= 3  # cut to ~frames/beta, then stretched
    assert out[1].shape[1] <= 34  # short clips stay short; the caller pads
