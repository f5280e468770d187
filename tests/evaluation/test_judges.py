"""FeatureJudge: features, per-speaker normalisation, fit/predict, persistence, cache."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emort.evaluation.judges import (
    FEATURE_NAMES,
    NUM_FEATURES,
    ExtractionTiming,
    FeatureJudge,
    fit_feature_judge,
    items_features,
    normalise_per_speaker,
    speaker_stats_from,
    utterance_features,
)
from emort.runtime.settings import EMOTIONS
from emort.training.corpora import Item

SR = 22050


def harmonic(
    f0_hz: float, seconds: float = 1.0, amp: float = 0.3, sr: int = SR, n_harm: int = 8
) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, n_harm + 1))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def test_features_shape_and_finite():
    v = utterance_features(harmonic(150.0))
    assert v.shape == (NUM_FEATURES,) == (len(FEATURE_NAMES),)
    assert v.dtype == np.float32 and np.all(np.isfinite(v))


def test_pitch_feature_is_semitones_re_100hz():
    i = FEATURE_NAMES.index("f0_st_p50")
    # 200 Hz is 12 semitones above 100 Hz; 150 Hz is 12 * log2(1.5) = 7.02.
    assert utterance_features(harmonic(200.0))[i] == pytest.approx(12.0, abs=0.3)
    assert utterance_features(harmonic(150.0))[i] == pytest.approx(7.02, abs=0.3)
    assert utterance_features(harmonic(150.0))[FEATURE_NAMES.index("voiced_ratio")] > 0.9


def test_other_sample_rates_are_resampled():
    a = utterance_features(harmonic(150.0, sr=16000), sr=16000)
    b = utterance_features(harmonic(150.0))
    i = FEATURE_NAMES.index("f0_st_p50")
    assert a.shape == b.shape and a[i] == pytest.approx(b[i], abs=0.3)


def test_level_moves_energy_features_only_in_level():
    x = harmonic(150.0)
    a, b = utterance_features(x), utterance_features(2 * x)
    assert b[FEATURE_NAMES.index("rms_db_mean")] - a[
        FEATURE_NAMES.index("rms_db_mean")
    ] == pytest.approx(20 * np.log10(2), abs=0.01)
    # log-mel band means move by log 2 (natural log of power: 2 log 2)
    assert b[FEATURE_NAMES.index("logmel05_mean")] - a[
        FEATURE_NAMES.index("logmel05_mean")
    ] == pytest.approx(2 * np.log(2), abs=0.01)


def test_speaker_stats_floor_constant_features():
    f = np.array([[1.0, 5.0], [3.0, 5.0]])
    mean, std = speaker_stats_from(f, ["a", "a"])["a"]
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # second: constant -> 1


def test_per_speaker_normalisation_own_vs_reference_stats():
    rng = np.random.default_rng(0)
    orig = rng.normal(size=(20, 5))
    spk = ["s1"] * 10 + ["s2"] * 10
    shifted = orig.copy()
    shifted[:10] += 3.0  # a global change applied to all of s1's clips
    own = normalise_per_speaker(shifted, spk)
    np.testing.assert_allclose(own, normalise_per_speaker(orig, spk))  # removed by its own stats
    ref = normalise_per_speaker(shifted, spk, speaker_stats_from(orig, spk))
    std1 = orig[:10].std(axis=0)
    np.testing.assert_allclose(
        ref[:10] - normalise_per_speaker(orig, spk)[:10], np.broadcast_to(3.0 / std1, (10, 5))
    )
    np.testing.assert_allclose(ref[10:], normalise_per_speaker(orig, spk)[10:])


def test_missing_speaker_stats_raise():
    with pytest.raises(ValueError, match="s9"):
        normalise_per_speaker(np.zeros((2, 3)), ["s9", "s9"], {"s1": (np.zeros(3), np.ones(3))})


def _synthetic(n_speakers: int, per_class: int, rng: np.random.Generator):
    """3 classes with class means +-2 on 4 of 10 dims; each speaker adds its own big offset."""
    centres = np.zeros((3, 10))
    centres[0, :2], centres[1, 2:4], centres[2, 4:6] = 2.0, 2.0, 2.0
    x, y, s = [], [], []
    for k in range(n_speakers):
        offset = rng.normal(scale=5.0, size=10)
        for c in range(3):
            x.append(centres[c] + offset + rng.normal(scale=0.5, size=(per_class, 10)))
            y += [c] * per_class
            s += [f"spk{k}"] * per_class
    return np.concatenate(x), np.array(y), np.array(s)


def test_judge_separates_synthetic_classes_on_unseen_speakers(tmp_path):
    rng = np.random.default_rng(1)
    x, y, s = _synthetic(6, 10, rng)
    judge = FeatureJudge(labels=("a", "b", "c")).fit(x, y, s)
    xt, yt, st = _synthetic(2, 10, rng)  # new speakers, new offsets
    p = judge.predict_proba(xt, st)
    assert p.shape == (60, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (p.argmax(axis=1) == yt).mean() > 0.9
    # without per-speaker normalisation the speaker offsets would dominate; with it the
    # judge is also invariant to a global shift of a test speaker
    np.testing.assert_allclose(judge.predict_proba(xt + 7.0, st), p, atol=1e-9)

    judge.save(tmp_path / "judge.joblib")
    again = FeatureJudge.load(tmp_path / "judge.joblib")
    np.testing.assert_allclose(again.predict_proba(xt, st), p)
    assert again.labels == ("a", "b", "c")


def test_unfitted_judge_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureJudge().predict_proba(np.zeros((1, 3)), ["a"])


def test_fit_feature_judge_from_files_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    items = []
    for spk in ("01", "02"):
        for i in range(6):
            for emotion, f0 in (("sad", 110.0), ("angry", 260.0)):
                p = tmp_path / f"{spk}_{emotion}_{i}.wav"
                amp = 0.1 if emotion == "sad" else 0.5
                sf.write(p, harmonic(f0 * (1 + 0.02 * i), seconds=0.5, amp=amp), SR)
                items.append(Item(str(p), emotion, spk, "synth"))
    items.append(Item(items[0].path, "boredom", "01", "synth"))  # outside the six: dropped
    judge = fit_feature_judge(items)
    assert len(list((tmp_path / "cache" / "judge_features").glob("*.npy"))) == 24
    timing = ExtractionTiming()
    x = items_features(items[:24], timing=timing)
    assert timing.cached == 24 and timing.computed == 0
    p = judge.predict_proba(x, [it.speaker_key for it in items[:24]])
    assert p.shape == (24, len(EMOTIONS))
    assert np.all(p[:, EMOTIONS.index("neutral")] == 0)  # a class never seen keeps probability 0
    pred = [EMOTIONS[k] for k in p.argmax(axis=1)]
    assert pred == [it.emotion for it in items[:24]]
