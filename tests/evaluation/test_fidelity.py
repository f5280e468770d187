"""Fidelity measures: log-mel distance, MCD, the speaker-similarity proxy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from emort.evaluation.fidelity import (
    SpeakerEmbedder,
    cepstra,
    log_mel_distance,
    mel_cepstral_distortion,
    speaker_features,
    speaker_similarity,
)
from emort.runtime.settings import DEFAULT_MEL

SR = DEFAULT_MEL.sample_rate


def noise(seconds: float = 1.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_identical_clips_have_zero_distance():
    x = noise()
    assert log_mel_distance(x, x) == 0.0
    assert mel_cepstral_distortion(x, x) == 0.0


def test_plus_6db_is_log2_in_log_mel_and_zero_mcd():
    x = noise()  # white noise: every band far above the 1e-5 floor
    assert log_mel_distance(x, 2 * x) == pytest.approx(np.log(2), abs=1e-4)
    assert mel_cepstral_distortion(x, 2 * x) == pytest.approx(0.0, abs=1e-3)  # only c0 moves


def test_frames_are_aligned_and_cut_to_the_shorter():
    x = noise()
    padded = np.concatenate([x, np.zeros(4096, np.float32)])  # extra frames past the source
    assert log_mel_distance(x, padded) == pytest.approx(0.0, abs=1e-7)
    assert mel_cepstral_distortion(padded, x) == pytest.approx(0.0, abs=1e-5)


def test_mcd_grows_with_a_spectral_change():
    x = noise()
    tilted = np.convolve(x, [1.0, 0.9], mode="same").astype(np.float32)  # low-pass tilt
    assert mel_cepstral_distortion(x, tilted) > 1.0


def test_cepstra_match_scipy_dct():
    lm = np.random.default_rng(0).normal(size=(80, 7))
    ref = scipy.fft.dct(lm, type=2, norm="ortho", axis=0)[:14]
    np.testing.assert_allclose(cepstra(lm, 14), ref, atol=1e-10)


def test_speaker_similarity_values():
    a = np.array([1.0, 2.0, 3.0])
    assert speaker_similarity(a, a) == pytest.approx(1.0)
    assert speaker_similarity(a, -a) == pytest.approx(-1.0)
    assert speaker_similarity(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(0.0)
    batch = speaker_similarity(np.stack([a, a]), np.stack([a, -a]))
    np.testing.assert_allclose(batch, [1.0, -1.0])


def voice(f0_hz: float, cutoff_hz: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic 'voice' whose spectral envelope (timbre) is set by ``cutoff_hz``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    ks = np.arange(1, int(7000 / f0_hz))
    env = np.exp(-ks * f0_hz / cutoff_hz)
    x = (
        env[:, None]
        * np.sin(2 * np.pi * ks[:, None] * f0_hz * t + rng.uniform(0, 6.3, (len(ks), 1)))
    ).sum(0)
    x += 0.01 * rng.standard_normal(len(t))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def test_speaker_embedder_separates_synthetic_timbres(tmp_path):
    cutoffs = {"s1": 400.0, "s2": 1200.0, "s3": 3000.0}
    feats, spk, wavs = [], [], {}
    for s, c in cutoffs.items():
        for i in range(6):
            w = voice(100.0 + 15 * i, c, 0.4, seed=i)
            wavs.setdefault(s, []).append(w)
            feats.append(speaker_features(w))
            spk.append(s)
    emb = SpeakerEmbedder().fit(np.stack(feats), spk)
    x = wavs["s1"][0]
    assert emb.similarity(x, x) == pytest.approx(1.0)
    new_s1 = voice(170.0, cutoffs["s1"], 0.4, seed=9)
    new_s3 = voice(170.0, cutoffs["s3"], 0.4, seed=9)
    assert emb.similarity(x, new_s1) > emb.similarity(x, new_s3)

    emb.save(tmp_path / "spk.joblib")
    again = SpeakerEmbedder.load(tmp_path / "spk.joblib")
    np.testing.assert_allclose(again.embed(x), emb.embed(x))


def test_speaker_embedder_needs_two_speakers():
    with pytest.raises(ValueError, match="two speakers"):
        SpeakerEmbedder().fit(np.zeros((3, 40)), ["a", "a", "a"])
