"""Utterance statistics of a log-mel, z-scored per speaker (numpy only; runtime-safe).

The per-speaker SER sees a clip's frames through convolutions and pools them;
a classifier (an RBF SVM until 0.18, a logistic regression since 0.19) over plain
utterance statistics of the same log-mel (per-band level,
spread and frame-to-frame change over the active frames, plus loudness
statistics), each z-scored against the speaker's own clips, errs on other clips.
Fusing the two (geometric mean of the probabilities) is what ``emort score
--per-speaker`` does when a bundle carries the statistics classifier
(``stats.onnx``). The same per-speaker z-score serves the evaluation judge
(``emort.evaluation.judges``), which re-exports these two functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emort.runtime.frontend import ACTIVE_DB, active_frames  # noqa: F401 (ACTIVE_DB re-exported)

#: Bumped whenever :func:`utterance_stats` changes; recorded with a trained classifier.
STATS_VERSION = 1
#: Fewest clips of one speaker for which the classifier is fused: its z-scores need a group
#: (one clip z-scores to all zeros, two to +-1 everywhere), so smaller groups get the SER alone,
#: or the SER with the single-clip classifier (emort.runtime.scorer.Scorer.reads_small_groups).
MIN_GROUP = 5
_STD_FLOOR = 1e-6

SpeakerStats = Mapping[str, tuple[np.ndarray, np.ndarray]]


def num_stats(n_mels: int) -> int:
    """Length of :func:`utterance_stats`' vector for ``n_mels`` bands."""
    return 3 * n_mels + 6


def utterance_stats(log_mel: np.ndarray, power: float = 1.0) -> np.ndarray:
    """``(n_mels, frames)`` natural-log magnitude mel -> ``(3 n_mels + 6,)`` float64.

    Over the active frames: per-band mean, per-band std, per-band mean |delta|;
    then the frame level's mean, std, 10th and 90th percentiles, the active
    fraction and log(frames). Active frames: :func:`emort.runtime.frontend.active_frames`
    (within ACTIVE_DB of the loudest); ``power``: the mel's exponent (1 magnitude, 2 power),
    which sets how many natural-log units ACTIVE_DB is.
    """
    m = np.asarray(log_mel, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 1:
        raise ValueError(f"expected a (n_mels, frames) log-mel, got shape {m.shape}")
    level = m.mean(axis=0)
    active = active_frames(m, ACTIVE_DB, power)
    a = m[:, active]
    d = np.diff(m, axis=1)[:, active[1:]] if m.shape[1] > 2 else np.zeros_like(a)
    if d.shape[1] == 0:
        d = np.zeros((m.shape[0], 1))
    la = level[active]
    tail = [la.mean(), la.std(), np.percentile(la, 10), np.percentile(la, 90), active.mean(), np.log(m.shape[1])]
    return np.concatenate([a.mean(axis=1), a.std(axis=1), np.abs(d).mean(axis=1), tail])


def zscore(log_mel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-band z-score of a log-mel: ``(..., n_mels, frames)`` with ``mean`` and ``std``
    ``(n_mels,)`` -> float32 of the same shape. The one definition of the models' input
    normalisation: the bundle's global statistics, a run's ``NormStats`` and a speaker's own
    (:func:`emort.runtime.frontend.fit_norm`) are all applied with it."""
    return ((log_mel - np.asarray(mean)[:, None]) / np.asarray(std)[:, None]).astype(np.float32)


def stats_matrix(log_mels: Sequence[np.ndarray], power: float = 1.0) -> np.ndarray:
    """Raw log-mels -> ``(N, 3 n_mels + 6)`` utterance statistics, one row per clip."""
    return np.stack([utterance_stats(m, power) for m in log_mels])


def speaker_stats_from(features: np.ndarray, speakers: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-speaker ``(mean, std)`` of ``features`` ``(N, D)``, each ``(D,)`` float64.

    Standard deviations below 1e-6 (a constant feature, or a single clip) are
    set to 1 so normalising only centres that feature.
    """
    features = np.asarray(features, dtype=np.float64)
    speakers = np.asarray(speakers)
    if features.ndim != 2 or len(features) != len(speakers):
        raise ValueError(f"features {features.shape} and speakers ({len(speakers)},) disagree")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in np.unique(speakers):
        f = features[speakers == s]
        std = f.std(axis=0)
        out[str(s)] = (f.mean(axis=0), np.where(std < _STD_FLOOR, 1.0, std))
    return out


def normalise_per_speaker(features: np.ndarray, speakers: Sequence[str], speaker_stats: SpeakerStats | None = None) -> np.ndarray:
    """Z-score each row with its speaker's ``(mean, std)``; ``(N, D)`` -> ``(N, D)`` float64.

    ``speaker_stats=None`` uses the statistics of the rows given. Pass the
    statistics of a speaker's original clips to judge edited clips.
    """
    features = np.asarray(features, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    stats = speaker_stats_from(features, speakers) if speaker_stats is None else speaker_stats
    missing = sorted(set(speakers) - set(stats))
    if missing:
        raise ValueError(f"no speaker statistics for: {', '.join(missing)}")
    out = np.empty_like(features)
    for s in np.unique(speakers):
        m = speakers == s
        mean, std = stats[s]
        out[m] = (features[m] - mean) / std
    return out


def fuse(*probs: np.ndarray) -> np.ndarray:
    """Geometric mean of class probabilities ``(N, C)`` each, renormalised per row."""
    return _normalised(np.mean([np.log(np.clip(p, 1e-9, None)) for p in probs], axis=0))


def _normalised(logp: np.ndarray) -> np.ndarray:
    """Rows of log-probabilities (up to a constant) -> probabilities summing to 1."""
    e = np.exp(logp - logp.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fuse_weighted(p_ser: np.ndarray, p_stats: np.ndarray, ser_weight: float = 1.0) -> np.ndarray:
    """Weighted geometric mean of the SER's and the statistics classifier's probabilities
    ``(N, C)``: ``p ∝ (p_ser^w · p_stats)^(1 / (1 + w))``, renormalised per row. ``w = 1`` is
    :func:`fuse` (the plain geometric mean); ``w = 0`` the statistics classifier alone. Its argmax
    is that of ``p_ser^w · p_stats``, what ``emort eval ser --ser-weight`` measures; a bundle's
    ``models.stats.ser_weight`` sets ``w``."""
    w = float(ser_weight)
    return _normalised((w * np.log(np.clip(p_ser, 1e-9, None)) + np.log(np.clip(p_stats, 1e-9, None))) / (1.0 + w))


# --- pitch --------------------------------------------------------------------------------

#: Bumped whenever :func:`clip_pitch_stats` changes; recorded with a classifier fitted on it.
#: New classifiers are fitted on this version; the runtime also computes the older ones
#: (:data:`PITCH_ANALYSES`), so bundles exported by earlier versions keep scoring as fitted.
PITCH_VERSION = 2
#: The F0 analysis of each pitch version: (sample rate Hz, DIO ``speed``), WORLD DIO + StoneMask
#: with --prosody's F0 range. 1 (emort 0.9): 16 kHz, speed 1, about 27 ms of CPU per 2.8 s clip on a
#: 2-core AMD EPYC; 2 (0.10): 8 kHz, speed 2, about 5 ms, the same F0 on 98.6% of frames'
#: voicing and within 0.02 semitones on 95% of voiced frames (``benchmarks/pitch_versions.py``,
#: docs/ser/pitch_v2/pitch_versions.md).
PITCH_ANALYSES = {1: (16_000, 1), 2: (8_000, 2)}
#: Length of :func:`pitch_stats`' vector.
NUM_PITCH = 13
#: Semitones are counted from this frequency (any fixed value: the classifier z-scores them).
PITCH_REF_HZ = 100.0
#: Feature sets the runtime computes for the statistics classifier: the log-mel statistics
#: (:func:`utterance_stats`), optionally followed by the F0 statistics (:func:`pitch_stats`).
RUNTIME_FEATURES = ("ustats", "ustats+pitch")


def num_features(features: str, n_mels: int) -> int:
    """Width of a runtime feature set (:data:`RUNTIME_FEATURES`) for ``n_mels`` bands."""
    if features not in RUNTIME_FEATURES:
        raise ValueError(f"unknown statistics features {features!r} (the runtime computes {', '.join(RUNTIME_FEATURES)})")
    return num_stats(n_mels) + (NUM_PITCH if features == "ustats+pitch" else 0)


def pitch_stats(f0: np.ndarray, log_mel: np.ndarray, frame_s: float, power: float = 1.0) -> np.ndarray:
    """F0 statistics of a clip: ``f0`` ``(frames,)`` in Hz (0 unvoiced) on the frame grid of the
    raw ``log_mel`` ``(n_mels, frames)`` (:func:`emort.runtime.prosody.f0_contour`), ``frame_s``
    seconds per frame -> ``(NUM_PITCH,)`` float64.

    Over the voiced frames among the active ones (:func:`emort.runtime.frontend.active_frames`),
    F0 in semitones re :data:`PITCH_REF_HZ`: mean, std, the 5/25/50/75/95th percentiles and the
    5-95 range; the mean |change| and the share of rising steps between consecutive voiced
    frames; the voiced share of active frames, voiced segments per second and the F0 slope over
    the clip (semitones per second). Pitch level, range and movement are the strongest prosodic
    cues of arousal (Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS)",
    2016, whose F0 functionals these follow; computed here from WORLD's F0, not openSMILE).
    Fewer than 3 voiced frames: all zeros.
    """
    m = np.asarray(log_mel, dtype=np.float64)
    n = min(len(f0), m.shape[1])
    f0 = np.asarray(f0, dtype=np.float64)[:n]
    active = active_frames(m[:, :n], ACTIVE_DB, power) if n else np.zeros(0, bool)
    voiced = f0 > 0
    use = voiced & active
    if use.sum() < 3:
        return np.zeros(NUM_PITCH)
    st_all = 12.0 * np.log2(np.where(voiced, f0, PITCH_REF_HZ) / PITCH_REF_HZ)
    st = st_all[use]
    q = np.percentile(st, [5, 25, 50, 75, 95])
    step = np.diff(st_all)[voiced[1:] & voiced[:-1]]
    t = np.nonzero(use)[0] * frame_s
    segments = int(np.sum(np.diff(voiced.astype(np.int8)) == 1) + voiced[0])
    return np.array([
        st.mean(), st.std(), *q, q[4] - q[0],
        np.abs(step).mean() if len(step) else 0.0, (step > 0).mean() if len(step) else 0.0,
        use.sum() / max(int(active.sum()), 1), segments / (n * frame_s), np.polyfit(t, st, 1)[0],
    ])


def clip_pitch_stats(signal: np.ndarray, log_mel: np.ndarray, settings, version: int = PITCH_VERSION) -> np.ndarray:
    """:func:`pitch_stats` of ``signal``, the float32 mono clip at the model rate
    (``settings.sample_rate``, DC removed: :func:`emort.runtime.audio.model_rate_signal`) whose
    raw log-mel is ``log_mel``. F0 by WORLD (DIO + StoneMask, through ``pyworld``) as pitch
    ``version`` defines it (:data:`PITCH_ANALYSES`); ValueError for an unknown version."""
    from emort.runtime.prosody import f0_contour

    if version not in PITCH_ANALYSES:
        raise ValueError(f"unknown pitch statistics version {version!r} (this emort computes {sorted(PITCH_ANALYSES)})")
    rate, speed = PITCH_ANALYSES[version]
    f0 = f0_contour(signal, settings.sample_rate, settings, analysis_rate=rate, dio_speed=speed)
    return pitch_stats(f0, log_mel, settings.hop_length / settings.sample_rate, settings.power)
