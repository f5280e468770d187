"""Utterance statistics of a log-mel, z-scored per speaker (numpy only; runtime-safe).

The per-speaker SER sees a clip's frames through convolutions and pools them;
an RBF SVM over plain utterance statistics of the same log-mel (per-band level,
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
#: (one clip z-scores to all zeros, two to +-1 everywhere), so smaller groups get the SER alone.
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
    logp = np.mean([np.log(np.clip(p, 1e-9, None)) for p in probs], axis=0)
    logp -= logp.max(axis=-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=-1, keepdims=True)
