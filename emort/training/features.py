"""Training-side log-mel with librosa; must match ``emort.runtime.frontend.log_mel``."""

from __future__ import annotations

import numpy as np

from emort.runtime.settings import MelSettings


def log_mel_librosa(wav: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Waveform at ``settings.sample_rate`` -> log-mel float32 ``(n_mels, frames)``.

    Computed in float64 so the result matches the numpy runtime front-end to
    well under 1e-4 even in quiet frames.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(wav, dtype=np.float64),
        sr=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.win_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=settings.power,
        n_mels=settings.n_mels,
        fmin=settings.fmin_hz,
        fmax=settings.fmax_hz,
        htk=False,
        norm="slaney",
    )
    return np.log(np.maximum(mel, settings.log_floor)).astype(np.float32)
