"""Benchmark audio: real EmoDB clips read in place when the corpus is found, else synthetic speech.

Nothing is copied or written: clips are decoded into memory at the bundle's rate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The clip length the performance targets are judged at (seconds).
TARGET_CLIP_S = 3.0


#: Each corpus's audio files under the shared data folder, and its validation speaker's (the
#: project split: emodb/10, ravdess/19, nemo/MP0).
CORPUS_GLOBS = {"emodb": "emodb/wav/*.flac", "ravdess": "ravdess/Actor_*/*.flac", "nemo": "nemo/samples/*.flac"}
VALIDATION_GLOBS = {"emodb": "emodb/wav/10*.flac", "ravdess": "ravdess/Actor_19/*.flac", "nemo": "nemo/samples/MP0_*.flac"}


def corpus_files(data: Path, corpus: str, validation: bool = False) -> list[Path]:
    """Sorted audio files of ``corpus`` under ``data`` (all, or its validation speaker's)."""
    return sorted(Path(data).glob((VALIDATION_GLOBS if validation else CORPUS_GLOBS)[corpus]))


def shared_data_dir() -> Path:
    """``$EMORT_SHARED_DATA``, else ``../shared/data`` from the working directory (may not exist)."""
    env = os.environ.get("EMORT_SHARED_DATA")
    return Path(env).expanduser() if env else Path.cwd().parent / "shared" / "data"


def synth_speech(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic voice through moving formants, in
    syllable-rate bursts with pauses and some fricative noise. float32 ``(samples,)``, peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants = np.stack([550 + 200 * np.sin(2 * np.pi * r * t + p) for r, p in zip((1.7, 2.3, 1.1), rng.uniform(0, 6, 3), strict=True)])
    formants[1] += 1000
    formants[2] += 1900
    voice = np.zeros(n)
    for k in range(1, int(4000 // 150) + 1):
        fk = k * f0
        amp = sum(np.exp(-0.5 * ((fk - fm) / 120.0) ** 2) for fm in formants) + 0.02
        voice += amp * np.sin(k * phase) / k**0.5
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.7).astype(float)
    noise = rng.standard_normal(n) * 0.05 * (1 - syll)
    y = (voice * syll + noise) * pauses
    y = np.convolve(y, np.ones(64) / 64, mode="same") * 0.3 + y * 0.7  # soften edges
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


@dataclass
class Clips:
    """Benchmark audio at the bundle rate: one clip per length, 3 s clips for scoring, a folder for enhancing."""

    source: str
    by_length: dict[float, np.ndarray]
    score: list[np.ndarray]
    folder: list[np.ndarray]


def load_clips(sample_rate: int, lengths: Sequence[float], n_score: int, n_folder: int, data_dir: Path | None = None) -> Clips:
    """Real EmoDB clips (concatenated to reach long lengths) when the corpus is found, else synthetic speech."""
    data_dir = shared_data_dir() if data_dir is None else Path(data_dir)
    files = sorted((data_dir / "emodb" / "wav").glob("*.flac"))
    need_s = max(max(lengths), TARGET_CLIP_S * n_score) + 1.0
    if files:
        from emort.runtime.audio import read_audio

        step = max(1, len(files) // 64)
        folder: list[np.ndarray] = []
        pool: list[np.ndarray] = []
        total = 0
        for p in files[::step]:
            x = read_audio(p, sample_rate).samples
            if len(folder) < n_folder:
                folder.append(x)
            pool.append(x)
            total += len(x)
            if total >= need_s * sample_rate and len(folder) >= n_folder:
                break
        cat = np.concatenate(pool)
        source = f"EmoDB ({len(pool)} real clips concatenated, {data_dir / 'emodb'})"
    else:
        cat = synth_speech(need_s, sample_rate)
        folder = [synth_speech(1.5 + (i % 4) * 0.75, sample_rate, seed=i + 1) for i in range(n_folder)]
        source = f"synthetic speech-like signal (no EmoDB under {data_dir})"
    cat = np.tile(cat, int(np.ceil(need_s * sample_rate / len(cat))))

    def cut(seconds: float, offset: int = 0) -> np.ndarray:
        n = int(round(seconds * sample_rate))
        return np.ascontiguousarray(cat[offset : offset + n])

    n3 = int(TARGET_CLIP_S * sample_rate)
    return Clips(source=source, by_length={float(s): cut(s) for s in lengths},
                 score=[cut(TARGET_CLIP_S, i * n3) for i in range(n_score)], folder=folder)
