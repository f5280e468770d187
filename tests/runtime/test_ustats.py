"""emort.runtime.ustats: utterance statistics, per-speaker z-score, probability fusion (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.ustats import (
    ACTIVE_DB,
    fuse,
    normalise_per_speaker,
    num_stats,
    speaker_stats_from,
    utterance_stats,
)


def test_utterance_stats_exact_over_active_frames():
    rng = np.random.default_rng(0)
    speech = rng.normal(0.0, 1.0, (4, 20))
    silence = np.full((4, 10), -20.0)  # far more than 35 dB below: not active
    m = np.concatenate([speech[:, :12], silence, speech[:, 12:]], axis=1)
    v = utterance_stats(m)
    assert v.shape == (num_stats(4),) == (18,)
    assert np.allclose(v[:4], speech.mean(1)) and np.allclose(v[4:8], speech.std(1))
    # Each active frame's change from the frame before it: the jump from silence back into
    # speech counts (it lands on an active frame), the jump into silence does not.
    d = np.abs(np.diff(m, axis=1))[:, np.r_[0:11, 21:29]]
    assert np.allclose(v[8:12], d.mean(1))
    level = speech.mean(0)
    assert np.allclose(v[12:], [level.mean(), level.std(), np.percentile(level, 10), np.percentile(level, 90), 20 / 30, np.log(30)])


def test_active_threshold_follows_the_mel_power():
    # 35 dB is 4.03 natural-log units of a magnitude mel and 8.06 of a power mel.
    db_to_ln = np.log(10) / 20
    m = np.zeros((2, 5))
    m[:, 0] = -30 * db_to_ln  # 30 dB down (magnitude mel): active
    assert utterance_stats(m, power=1.0)[-2] == 1.0
    m[:, 0] = -40 * db_to_ln
    assert utterance_stats(m, power=1.0)[-2] == pytest.approx(4 / 5)
    assert utterance_stats(m, power=2.0)[-2] == 1.0  # the same 4.6 units are only 20 dB in a power mel
    assert ACTIVE_DB == 35.0


def test_short_or_quiet_clips_use_all_frames():
    m = np.full((3, 10), -100.0)
    m[:, [2, 7]] = 0.0  # only two frames within 35 dB of the loudest: too few, all frames count
    v = utterance_stats(m)
    assert v[-2] == 1.0 and np.allclose(v[:3], m.mean(1)) and np.allclose(v[3:6], m.std(1))
    m[:, 4] = 0.0  # a third loud frame: only the three count
    v = utterance_stats(m)
    assert v[-2] == pytest.approx(3 / 10) and np.allclose(v[:3], 0.0)
    assert np.isfinite(utterance_stats(np.zeros((3, 2)))).all()  # two frames: no delta to speak of, still finite
    with pytest.raises(ValueError):
        utterance_stats(np.zeros((3, 0)))


def test_speaker_zscore_exact():
    f = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0]])
    z = normalise_per_speaker(f, ["a", "a", "b"])
    assert np.allclose(z, [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # constant feature and single clip: std 1
    st = speaker_stats_from(f[:2], ["a", "a"])
    assert np.allclose(normalise_per_speaker(f[2:], ["a"], st), [[8.0, -5.0]])
    with pytest.raises(ValueError, match="no speaker statistics"):
        normalise_per_speaker(f, ["a", "a", "c"], st)


def test_fuse_is_the_renormalised_geometric_mean():
    a = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    b = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    g = np.sqrt(np.clip(a, 1e-9, None) * np.clip(b, 1e-9, None))
    assert np.allclose(fuse(a, b), g / g.sum(1, keepdims=True))
    assert np.allclose(fuse(a, b)[1], [0.2, 0.3, 0.5])  # agreeing models: unchanged
    assert fuse(a, b)[0].argmax() == 0 and np.allclose(fuse(a, b).sum(1), 1)
