"""Read any audio soundfile can decode to mono float32 at the model rate; write wav atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from emort.runtime.errors import (
    CorruptAudioError,
    EmptyAudioError,
    MissingAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongAudioError,
)

#: Peak amplitude below which a clip counts as silent (-90 dBFS).
SILENCE_PEAK = 10 ** (-90 / 20)
#: Longest clip accepted by default; longer speech should be split first.
MAX_DURATION_S = 600.0
#: Shortest clip: fewer samples than one STFT window carries no emotion.
MIN_DURATION_S = 0.05

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus")


@dataclass(frozen=True)
class Audio:
    """Decoded audio. ``samples``: float32, shape ``(num_samples,)``, mono."""

    samples: np.ndarray
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def to_mono(x: np.ndarray) -> np.ndarray:
    """``(num_samples,)`` or ``(num_samples, channels)`` -> ``(num_samples,)`` float32.

    Integer PCM (e.g. int16 from ``scipy.io.wavfile``) is scaled to [-1, 1).
    """
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] < x.shape[1] and x.shape[0] <= 8:
        raise EmptyAudioError(f"expected (samples, channels) audio, got shape {x.shape}: transpose channels-first arrays")
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    elif x.ndim != 1:
        raise EmptyAudioError(f"expected 1-D or 2-D audio, got shape {x.shape}")
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality); no-op when rates match."""
    if sr_in == sr_out:
        return np.ascontiguousarray(x, dtype=np.float32)
    return soxr.resample(x.astype(np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def validate_samples(x: np.ndarray, sample_rate: int, what: str = "audio") -> None:
    """Raise a typed AudioError for empty, non-finite, silent or over-long input."""
    if x.size == 0 or x.size < MIN_DURATION_S * sample_rate:
        raise EmptyAudioError(f"{what}: empty or shorter than {MIN_DURATION_S * 1000:.0f} ms")
    if not np.all(np.isfinite(x)):
        raise NonFiniteAudioError(f"{what}: contains NaN or infinite samples")
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise SilentAudioError(f"{what}: silent (peak below -90 dBFS)")
    if x.size > MAX_DURATION_S * sample_rate:
        raise TooLongAudioError(
            f"{what}: {x.size / sample_rate:.0f} s is longer than {MAX_DURATION_S:.0f} s; split it first"
        )


def prepare(samples: np.ndarray, sample_rate: int, target_rate: int, what: str = "audio") -> np.ndarray:
    """Mono, validated, resampled float32 ``(num_samples,)`` from an in-memory array."""
    if sample_rate <= 0:
        raise EmptyAudioError(f"{what}: invalid sample rate {sample_rate}")
    x = to_mono(samples)
    validate_samples(x, sample_rate, what)
    return resample(x, sample_rate, target_rate)


def read_audio(path: str | os.PathLike, target_rate: int = 22050) -> Audio:
    """Decode ``path`` to mono float32 at ``target_rate``.

    Raises MissingAudioError, CorruptAudioError (not audio / undecodable),
    EmptyAudioError, NonFiniteAudioError, SilentAudioError, TooLongAudioError.
    """
    p = Path(path)
    if not p.exists():
        raise MissingAudioError(f"{p}: no such file")
    if p.is_dir():
        raise MissingAudioError(f"{p}: is a directory, not an audio file")
    try:
        info = sf.info(str(p))
        if info.frames > MAX_DURATION_S * info.samplerate:
            raise TooLongAudioError(
                f"{p}: {info.duration:.0f} s is longer than {MAX_DURATION_S:.0f} s; split it first"
            )
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except TooLongAudioError:
        raise
    except Exception as e:  # libsndfile raises several types for undecodable input
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CorruptAudioError(f"{p}: not readable as audio ({msg})") from None
    x = prepare(data, sr, target_rate, what=str(p))
    return Audio(samples=x, sample_rate=target_rate, source_sample_rate=sr, source_channels=data.shape[1])


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def write_wav_atomic(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM wav via a temp file in the same folder + rename.

    An interrupted run never leaves a half-written output that a resumed run
    would mistake for a finished one.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=".tmp.wav", dir=str(p.parent))
    os.close(fd)
    try:
        sf.write(tmp, x, sample_rate, subtype="PCM_16", format="WAV")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
