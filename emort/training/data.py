"""Feature cache, normalisation statistics and batching for training."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emort.runtime.atomic import atomic_write
from emort.runtime.audio import model_rate_signal, read_audio
from emort.runtime.settings import MelSettings
from emort.runtime.ustats import zscore
from emort.training.corpora import Item
from emort.training.features import log_mel_librosa

log = logging.getLogger(__name__)


def cache_dir(name: str = "features") -> Path:
    """``$EMORT_CACHE/<name>`` (default ``~/.cache/emort/<name>``), created: the one root of
    every on-disk feature cache (log-mels here, eGeMAPS, the evaluation judges' features)."""
    d = Path(os.environ.get("EMORT_CACHE", Path.home() / ".cache" / "emort")) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def file_cache_path(directory: str, path: str | os.PathLike, *key, tag: str | None = None) -> Path:
    """``$EMORT_CACHE/<directory>/<sha1>.npy``: where an array computed from the file ``path`` is
    cached. The hash covers ``tag`` (if any), the file's absolute path, size and modification
    time (ns), then ``key`` (what else the array depends on: feature version, sample rate,
    settings), so a changed file or setting misses the cache."""
    st = os.stat(path)
    blob = json.dumps(([tag] if tag is not None else []) + [os.path.abspath(path), st.st_size, st.st_mtime_ns, *key], sort_keys=True)
    return cache_dir(directory) / f"{hashlib.sha1(blob.encode()).hexdigest()}.npy"


def read_cached_array(f: Path, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """The array cached in ``f``, or None when it is missing, unreadable or not of ``shape``."""
    if not f.exists():
        return None
    try:
        v = np.load(f)
    except (OSError, ValueError):  # a damaged or foreign file: recompute
        return None
    return v if shape is None or v.shape == shape else None


def write_cached_array(f: Path, x: np.ndarray) -> None:
    """Save ``x`` to ``f`` atomically (``.npy``)."""
    atomic_write(f, lambda tmp: _save_npy(tmp, x))


#: Bumped when :func:`load_mel`'s signal path changes; in every cache key of a log-mel and of what
#: is computed from one (F0 statistics). 2 (0.13): the DC offset removed after resampling, as the
#: runtime's :func:`emort.runtime.audio.model_rate_signal` does; before it, training log-mels kept
#: it and the classifiers were fitted on slightly other statistics than `emort score` reads (an
#: offset of 0.0007, EmoDB 10a01Nb, moved the lowest band by 0.15 nats). 3 (0.13): a resampled clip
#: loses its offset before resampling too (the step at its ends no longer rings into the edge
#: frames; docs/ser/ge2e/PREREGISTRATION_dc.md).
FRONTEND_VERSION = 3


#: What each front end did with a clip's DC offset (for messages about runs of an older one).
FRONTENDS = {1: "DC offset kept; emort 0.12 and earlier", 2: "DC offset removed after resampling only; development of 0.13",
             3: "DC offset removed before and after resampling; emort 0.13"}


def describe_frontend(version: int | None) -> str:
    """``"front end N (what it did)"`` for messages; None: an unrecorded or invalid record."""
    if version is None:
        return "an unrecorded or invalid front end (frontend_version)"
    return f"front end {version} ({FRONTENDS.get(version, 'unknown to this emort')})"


def frontend_of(cfg: dict) -> int | None:
    """The :data:`FRONTEND_VERSION` a run's config records: runs written before 0.13 record none
    (front end 1); a value that is not an integer gives None."""
    if "frontend_version" not in cfg:
        return 1
    v = cfg["frontend_version"]
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def check_resume_frontend(prev_cfg: dict, out: str | Path) -> None:
    """One-line EmortError when a run in ``out`` was started on the log-mels of another front end:
    resuming it would mix the two."""
    from emort.runtime.errors import EmortError

    if frontend_of(prev_cfg) != FRONTEND_VERSION:
        raise EmortError(f"{out} was started on log-mels of {describe_frontend(frontend_of(prev_cfg))}; this emort computes "
                         f"front end {FRONTEND_VERSION}: start a new --out")


def _key(path: str, settings: MelSettings) -> str:
    st = os.stat(path)
    blob = json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns, settings.to_dict(), FRONTEND_VERSION], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def model_rate_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """The file as the runtime analyses it: mono, at ``sample_rate``, DC offset removed
    (:func:`emort.runtime.audio.model_rate_signal` of the decoded file), float32."""
    a = read_audio(path)
    return model_rate_signal(a.samples, a.sample_rate, sample_rate)


def load_mel(path: str, settings: MelSettings, use_cache: bool = True) -> np.ndarray:
    """Log-mel ``(n_mels, frames)`` float32 of one file, via the on-disk cache: the runtime's signal
    path (:func:`model_rate_audio`: mono, the DC offset removed before and after resampling to
    ``settings.sample_rate``), then :func:`log_mel_librosa`."""
    f = cache_dir() / f"{_key(path, settings)}.npy" if use_cache else None
    if f is not None:
        cached = read_cached_array(f)  # None when missing or damaged: computed again
        if cached is not None and cached.ndim == 2 and cached.shape[0] == settings.n_mels:
            return cached
    mel = log_mel_librosa(model_rate_audio(path, settings.sample_rate), settings)
    if f is not None:
        write_cached_array(f, mel)
    return mel


def _save_npy(path: str, x: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append .npy to the temp name
        np.save(fh, x)


def load_mels(items: Sequence[Item], settings: MelSettings, progress: bool = True) -> list[np.ndarray]:
    """Log-mels of all items (cached). Shows a rich progress bar when ``progress``."""
    out: list[np.ndarray] = []
    if progress:
        from rich.progress import track

        it = track(items, description="log-mel features", transient=True)
    else:
        it = items
    for item in it:
        out.append(load_mel(item.path, settings))
    return out


@dataclass
class NormStats:
    """Per-band z-score statistics, ``mean``/``std`` shape ``(n_mels,)``."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, mels: Sequence[np.ndarray]) -> NormStats:
        from emort.runtime.frontend import fit_norm

        return cls(*fit_norm(list(mels)))

    def apply(self, mel: np.ndarray) -> np.ndarray:
        """Z-scored float32 ``(n_mels, frames)`` (:func:`emort.runtime.ustats.zscore`)."""
        return zscore(mel, self.mean, self.std)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def residual_std(mels: Sequence[np.ndarray], min_std: float = 1e-3) -> np.ndarray:
    """Per-band std ``(n_mels,)`` of ``mels`` around each clip's own per-band mean (float32): the
    scale of :func:`utterance_stats`, fitted on training clips."""
    cat = np.concatenate([m.astype(np.float64) - m.astype(np.float64).mean(axis=1, keepdims=True) for m in mels], axis=1)
    return np.maximum(cat.std(axis=1), min_std).astype(np.float32)


def utterance_stats(mels: Sequence[np.ndarray], std: np.ndarray) -> list[NormStats]:
    """Each clip's normalisation from the clip alone: its own per-band mean over its frames (mean
    normalisation of the log-mel, as cepstral mean normalisation does for MFCCs: it removes what is
    constant over the clip, i.e. channel, level and much of the voice's timbre, with no other clip
    of the speaker) and a fixed per-band ``std`` (:func:`residual_std` of the training clips)."""
    return [NormStats(m.astype(np.float64).mean(axis=1).astype(np.float32), std) for m in mels]


def per_speaker_stats(mels: Sequence[np.ndarray], speakers: Sequence[str]) -> list[NormStats]:
    """Each clip's normalisation fitted on all clips of its speaker (labels unused).

    Speaker normalisation removes what is constant within a speaker (vocal tract,
    channel, level), the first thing a classifier on unseen speakers trips on.
    At test time it needs a handful of *unlabelled* clips of the test speaker.
    """
    by: dict[str, NormStats] = {}
    for spk in dict.fromkeys(speakers):
        by[spk] = NormStats.fit([m for m, s in zip(mels, speakers) if s == spk])
    return [by[s] for s in speakers]


def crop_or_pad(mel: np.ndarray, frames: int, rng: np.random.Generator | None, pad_value: float = 0.0) -> np.ndarray:
    """Random (rng) or centre (no rng) crop to ``frames``; pad with ``pad_value``. ``(n_mels, frames)``."""
    t = mel.shape[1]
    if t >= frames:
        s = int(rng.integers(0, t - frames + 1)) if rng is not None else (t - frames) // 2
        return mel[:, s : s + frames]
    out = np.full((mel.shape[0], frames), pad_value, dtype=mel.dtype)
    s = int(rng.integers(0, frames - t + 1)) if rng is not None else 0
    out[:, s : s + t] = mel
    return out


def class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 (classes absent get 0)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)
