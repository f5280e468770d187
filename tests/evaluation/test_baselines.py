"""Identity and DSP prosody baselines on a synthetic harmonic tone."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from emort.evaluation.baselines import (
    PEAK_LIMIT,
    PROSODY_TABLE,
    identity,
    prosody_shift,
    spectral_tilt,
)
from emort.runtime.errors import LabelError
from emort.runtime.settings import EMOTIONS

SR = 22050


def tone(f0_hz: float = 150.0, seconds: float = 1.5, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 11))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def median_f0(x: np.ndarray) -> float:
    f0 = librosa.yin(x, fmin=60, fmax=500, sr=SR, frame_length=1024)
    return float(np.median(f0[5:-5]))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_table_covers_the_six():
    assert set(PROSODY_TABLE) == set(EMOTIONS)


def test_identity_is_an_equal_copy():
    x = tone()
    y = identity(x, SR)
    assert y is not x and y.dtype == np.float32
    np.testing.assert_array_equal(x, y)


def test_neutral_is_no_change():
    x = tone()
    np.testing.assert_array_equal(prosody_shift(x, SR, "neutral"), x)


@pytest.mark.parametrize(("emotion", "louder"), [("angry", True), ("sad", False)])
def test_angry_and_sad_move_pitch_energy_and_duration(emotion, louder):
    x = tone()
    p = PROSODY_TABLE[emotion]
    y = prosody_shift(x, SR, emotion)
    assert (rms(y) > rms(x)) == louder
    shift_st = 12 * np.log2(median_f0(y) / median_f0(x))
    assert shift_st == pytest.approx(p.semitones, abs=0.3)
    assert len(y) == pytest.approx(len(x) / p.rate, rel=0.01)


def test_keep_duration_keeps_length():
    x = tone()
    for e in EMOTIONS:
        assert len(prosody_shift(x, SR, e, keep_duration=True)) == len(x)


def test_peak_safe():
    y = prosody_shift(tone(amp=0.95), SR, "angry")
    assert np.max(np.abs(y)) <= PEAK_LIMIT + 1e-6


def test_alias_and_unknown_emotion():
    x = tone(seconds=0.3)
    assert len(prosody_shift(x, SR, "Anger")) == len(prosody_shift(x, SR, "angry"))
    with pytest.raises(LabelError):
        prosody_shift(x, SR, "bored")


def test_tilt_brightens_and_darkens_only_above_1khz():
    x = tone()
    cent = lambda w: float(librosa.feature.spectral_centroid(y=w, sr=SR).mean())  # noqa: E731
    assert cent(spectral_tilt(x, SR, 2.0)) > cent(x) > cent(spectral_tilt(x, SR, -2.0))

    # 150 Hz fundamental sits below 1 kHz: its level is unchanged
    def level_at(w, f):
        s = np.abs(np.fft.rfft(w))
        return s[int(round(f * len(w) / SR))]

    assert level_at(spectral_tilt(x, SR, 2.0), 150.0) == pytest.approx(level_at(x, 150.0), rel=0.02)
