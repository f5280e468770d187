"""F0 statistics of the per-speaker scorer's statistics classifier (``emort.runtime.ustats``):
known tones give known values; the weighted fusion's two ends."""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.frontend import log_mel
from emort.runtime.settings import DEFAULT_MEL
from emort.runtime.ustats import (
    NUM_PITCH,
    RUNTIME_FEATURES,
    clip_pitch_stats,
    fuse,
    fuse_weighted,
    num_features,
    num_stats,
    pitch_stats,
)
from tests.tiny import harmonic_tone

pytest.importorskip("pyworld", reason="F0 needs pyworld (pyworld-prebuilt, a core dependency)")

SR = DEFAULT_MEL.sample_rate
FRAME_S = DEFAULT_MEL.hop_length / SR


def _stats(x: np.ndarray) -> np.ndarray:
    return clip_pitch_stats(x, log_mel(x, DEFAULT_MEL), DEFAULT_MEL)


def test_a_steady_tone_reads_as_its_pitch():
    v = _stats(harmonic_tone(200.0, SR, seconds=1.5))
    assert v.shape == (NUM_PITCH,)
    mean, std, p5, p25, p50, p75, p95, rng, step, rising, voiced, seg_rate, slope = v
    assert mean == pytest.approx(12.0, abs=0.2)  # 200 Hz is one octave above the 100 Hz reference
    assert p50 == pytest.approx(12.0, abs=0.2) and std < 0.3 and rng < 1.0 and abs(slope) < 0.5
    assert voiced > 0.9 and seg_rate < 2.0  # one voiced segment in ~1.6 s


def test_a_rising_glide_has_a_positive_slope_and_range():
    """150 Hz -> 250 Hz over 1.5 s: about 8.8 semitones, rising all the way."""
    v = _stats(harmonic_tone(200.0, SR, seconds=1.5, glide=0.5))
    assert v[7] > 6.0  # 5-95 range, semitones
    assert v[12] == pytest.approx(12 * np.log2(250 / 150) / 1.5, rel=0.25)  # slope, semitones per second
    assert v[9] > 0.8  # nearly every step rises


def test_no_voice_gives_zeros():
    noise = (np.random.default_rng(0).standard_normal(SR) * 0.05).astype(np.float32)
    assert not _stats(np.zeros(SR, np.float32)).any()
    assert not pitch_stats(np.zeros(50), np.zeros((80, 50)), FRAME_S).any()
    assert _stats(noise)[10] < 0.5  # white noise is mostly unvoiced


def test_feature_widths():
    assert num_features("ustats", 80) == num_stats(80) and num_features("ustats+pitch", 80) == num_stats(80) + NUM_PITCH
    assert RUNTIME_FEATURES == ("ustats", "ustats+pitch")
    with pytest.raises(ValueError, match="unknown statistics features"):
        num_features("ustats+egemaps", 80)


def test_weighted_fusion_spans_the_classifier_alone_to_the_geometric_mean():
    rng = np.random.default_rng(1)
    p_ser, p_stats = rng.dirichlet(np.ones(6), 20), rng.dirichlet(np.ones(6), 20)
    np.testing.assert_allclose(fuse_weighted(p_ser, p_stats, 1.0), fuse(p_ser, p_stats))
    np.testing.assert_allclose(fuse_weighted(p_ser, p_stats, 0.0), p_stats, atol=1e-9)  # the classifier alone
    half = fuse_weighted(p_ser, p_stats, 0.5)
    want = p_ser ** (1 / 3) * p_stats ** (2 / 3)
    np.testing.assert_allclose(half, want / want.sum(1, keepdims=True))
    # the argmax is that of p_ser^w * p_stats, which `emort eval ser --ser-weight` reports
    assert (half.argmax(1) == (np.sqrt(p_ser) * p_stats).argmax(1)).all()


def test_the_f0_analysis_is_pinned_to_the_pitch_version():
    """The statistics read WORLD F0 with --prosody's F0 range at each version's rate and DIO speed:
    a change to them changes what shipped classifiers were fitted on, so it must come with a new
    PITCH_VERSION (and the older versions stay computable for bundles fitted on them)."""
    from emort.runtime import prosody
    from emort.runtime.ustats import PITCH_ANALYSES, PITCH_REF_HZ, PITCH_VERSION

    assert PITCH_VERSION == 2, "update the pinned values below with the new version"
    assert PITCH_ANALYSES == {1: (16000, 1), 2: (8000, 2)}
    assert (prosody.F0_FLOOR, prosody.F0_CEIL, prosody.F0_ANALYSIS_RATE, PITCH_REF_HZ) == (60.0, 700.0, 16000, 100.0)


def test_each_pitch_version_is_its_own_analysis_and_unknown_ones_are_refused(tmp_path):
    """Version 1 is --prosody's F0 analysis (16 kHz, DIO speed 1); version 2 runs at 8 kHz with DIO
    speed 2: nearly the same statistics on a voiced clip, not the same numbers."""
    from emort.runtime.audio import model_rate_signal
    from emort.runtime.frontend import log_mel
    from emort.runtime.prosody import f0_contour
    from emort.runtime.settings import DEFAULT_MEL
    from emort.runtime.ustats import clip_pitch_stats

    sr = DEFAULT_MEL.sample_rate
    t = np.arange(int(1.5 * sr)) / sr
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = model_rate_signal((0.2 * sum(np.sin(k * ph) / k for k in range(1, 12))).astype(np.float32), sr, sr)
    m = log_mel(x, DEFAULT_MEL)
    v1, v2 = (clip_pitch_stats(x, m, DEFAULT_MEL, v) for v in (1, 2))
    np.testing.assert_array_equal(v1, clip_pitch_stats(x, m, DEFAULT_MEL, 1))
    assert not np.array_equal(v1, v2)
    np.testing.assert_allclose(v2[:8], v1[:8], atol=0.1)  # F0 level and spread in semitones: the same voice
    c1 = f0_contour(x, sr, DEFAULT_MEL)  # --prosody's analysis is version 1's
    assert np.array_equal(c1, f0_contour(x, sr, DEFAULT_MEL, analysis_rate=16000, dio_speed=1))
    with pytest.raises(ValueError, match="unknown pitch statistics version 3"):
        clip_pitch_stats(x, m, DEFAULT_MEL, 3)
