"""Baselines every enhancement result is compared with (docs/eval/README.md, "Protocol").

- :func:`identity`: no change. The floor any enhancer must beat on the judge
  *and* the ceiling of fidelity.
- :func:`prosody_shift`: a DSP prosody baseline: pitch shift, tempo change,
  energy gain and spectral tilt per target emotion, from :data:`PROSODY_TABLE`.
  The parameters follow the direction of the classic acoustic correlates of
  emotion (Scherer 2003; Banse & Scherer 1996: anger/joy/fear raise F0, rate
  and intensity and brighten the spectrum; sadness lowers them and darkens it);
  the magnitudes are hand-set, not fitted, and are meant as a fair, simple
  reference, not a tuned competitor.

Tempo changes the duration (rate 1.08 -> a clip 1/1.08 as long), which breaks
frame-aligned fidelity measures (log-mel distance, MCD) and the diffusion
enhancer's timing contract. ``keep_duration=True`` skips the tempo change so
the output is exactly as long as the input; the default (``False``) applies it.

Needs librosa (the ``[train]`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emort.runtime.settings import canonical_emotion

#: Highest output peak; above it the whole clip is scaled down (no clipping, no limiter).
PEAK_LIMIT = 0.99


@dataclass(frozen=True)
class ProsodyParams:
    """One row of :data:`PROSODY_TABLE`.

    ``semitones``: pitch shift (formants move with it: a plain phase-vocoder shift);
    ``rate``: tempo factor (> 1 faster, duration / rate); ``gain_db``: level change;
    ``tilt_db_per_octave``: spectral tilt above 1 kHz (> 0 brighter: more
    high-frequency energy, < 0 darker), held flat below 1 kHz and above 8 kHz
    so the F0 / first-formant region, which carries most of the level, keeps
    its level (``gain_db`` sets that).
    """

    semitones: float = 0.0
    rate: float = 1.0
    gain_db: float = 0.0
    tilt_db_per_octave: float = 0.0


#: Per-target-emotion parameters (see the module docstring for their source).
PROSODY_TABLE: dict[str, ProsodyParams] = {
    "neutral": ProsodyParams(),
    "happy": ProsodyParams(semitones=3.0, rate=1.05, gain_db=2.0, tilt_db_per_octave=1.0),
    "sad": ProsodyParams(semitones=-2.0, rate=0.90, gain_db=-4.0, tilt_db_per_octave=-2.0),
    "angry": ProsodyParams(semitones=2.0, rate=1.08, gain_db=4.0, tilt_db_per_octave=2.0),
    "fear": ProsodyParams(semitones=3.0, rate=1.10, gain_db=0.0, tilt_db_per_octave=0.0),
    "disgust": ProsodyParams(semitones=-1.0, rate=0.95, gain_db=0.0, tilt_db_per_octave=0.0),
}

_TILT_LO_HZ = 1000.0
_TILT_HI_HZ = 8000.0


def identity(wav: np.ndarray, sr: int) -> np.ndarray:
    """No change: a float32 copy of ``wav`` ``(num_samples,)``."""
    return np.array(wav, dtype=np.float32, copy=True)


def spectral_tilt(wav: np.ndarray, sr: int, db_per_octave: float, n_fft: int = 1024) -> np.ndarray:
    """Apply ``db_per_octave * log2(f / 1 kHz)`` dB of gain with f clamped to 1..8 kHz
    (0 dB below 1 kHz; +-3 octaves at most) through an STFT; 0 dB/octave returns
    the input. ``wav`` ``(num_samples,)``; length is preserved."""
    import librosa

    x = np.asarray(wav, dtype=np.float32)
    if db_per_octave == 0.0:
        return x.copy()
    hop = n_fft // 4
    spec = librosa.stft(x, n_fft=n_fft, hop_length=hop)
    f = np.clip(librosa.fft_frequencies(sr=sr, n_fft=n_fft), _TILT_LO_HZ, min(_TILT_HI_HZ, sr / 2))
    gain = 10 ** (db_per_octave * np.log2(f / _TILT_LO_HZ) / 20)
    return librosa.istft(spec * gain[:, None], hop_length=hop, length=len(x)).astype(np.float32)


def prosody_shift(
    wav: np.ndarray, sr: int, emotion: str, keep_duration: bool = False
) -> np.ndarray:
    """Shape ``wav`` ``(num_samples,)`` toward ``emotion`` with the :data:`PROSODY_TABLE` row.

    Order: pitch shift (``librosa.effects.pitch_shift``), tempo
    (``librosa.effects.time_stretch``; skipped when ``keep_duration``), tilt,
    gain. Peak-safe: if the result peaks above 0.99 the whole clip is scaled
    down to 0.99, so a loud source receives less than the table's gain.
    Raises ``LabelError`` for an unknown emotion (aliases such as "anger" work).
    Returns float32; ``len(out) ~= len(wav) / rate`` unless ``keep_duration``.
    """
    import librosa

    params = PROSODY_TABLE[canonical_emotion(emotion)]
    y = np.asarray(wav, dtype=np.float32)
    if params.semitones:
        y = librosa.effects.pitch_shift(y, sr=sr, n_steps=params.semitones, res_type="soxr_hq")
    if params.rate != 1.0 and not keep_duration:
        y = librosa.effects.time_stretch(y, rate=params.rate)
    y = spectral_tilt(y, sr, params.tilt_db_per_octave)
    y = y * np.float32(10 ** (params.gain_db / 20))
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > PEAK_LIMIT:
        y = y * np.float32(PEAK_LIMIT / peak)
    return y.astype(np.float32)
