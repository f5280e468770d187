"""The prosody probe's renderer and its per-emotion targets."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("python_stretch", exc_type=ImportError, reason="the prosody probe needs python-stretch (the [augment] extra)")

from emort.evaluation.prosody_probe import prosody_targets, stretch  # noqa: E402
from emort.training.corpora import Item  # noqa: E402


def _tone(f0: float, sr: int = 16000, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x[len(x) // 4 : 3 * len(x) // 4] * np.hanning(len(x) // 2)))
    return float(np.argmax(spec) * sr / (len(x) // 2))


def test_stretch_is_near_transparent_at_identity_and_shifts_pitch_and_tempo():
    x = _tone(200.0)
    y = stretch(x, 16000, 0.0, 1.0)
    assert y.shape == x.shape and np.abs(y - x).mean() < 1e-2 * np.abs(x).mean()
    up = stretch(x, 16000, 12.0, 1.0)  # an octave up
    assert _peak_hz(up, 16000) == pytest.approx(400.0, rel=0.03)
    fast = stretch(x, 16000, 0.0, 1.25)
    assert len(fast) == pytest.approx(len(x) / 1.25, abs=2)
    assert _peak_hz(fast, 16000) == pytest.approx(200.0, rel=0.03)  # tempo alone keeps the pitch


def test_prosody_targets_average_per_speaker_offsets_from_neutral(tmp_path):
    import soundfile as sf

    items, f0 = [], []
    for spk, (shift, slow) in {"a": (4.0, 1.0), "b": (2.0, 2.0)}.items():
        for emo, semis, seconds in (("neutral", 30.0, 1.0), ("angry", 30.0 + shift, 1.0 * slow)):
            p = tmp_path / f"{spk}_{emo}.wav"
            sf.write(p, np.zeros(int(16000 * seconds), np.float32), 16000)
            items.append(Item(str(p), emo, spk, "c"))
            f0.append(semis)
    t = prosody_targets(items, np.array(f0))
    assert set(t) == {"angry"} and t["angry"]["speakers"] == 2
    assert t["angry"]["semitones"] == pytest.approx(3.0)  # mean of +4 and +2
    assert t["angry"]["tempo"] == pytest.approx(0.75)  # mean of 1/1 and 1/2: angry twice as long for b
