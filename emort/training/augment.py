"""Speaker-style augmentations on log-mel batches, for SER training.

A speaker-independent classifier must not key on what differs between speakers:
vocal-tract length (formant positions), speaking rate and recording level. These
perturb exactly those, on the log-mel itself, so they cost next to nothing:

* frequency warp (VTLP, Jaitly & Hinton 2013): every mel band is re-read at the
  frequency ``alpha * f`` of the original, ``alpha ~ U(1 - w, 1 + w)``;
* time stretch (tempo, pitch kept): the frame axis is resampled by ``beta``;
* gain: a level change of ``g`` dB is a constant shift of the log-mel.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from emort.runtime.settings import MelSettings


def _warp_index(settings: MelSettings, alpha: float) -> np.ndarray:
    """Fractional mel-band index at which band ``k`` of the warped mel reads the original."""
    hz = librosa.mel_frequencies(settings.n_mels, fmin=settings.fmin_hz, fmax=settings.fmax_hz, htk=False)
    mel_axis = librosa.hz_to_mel(hz, htk=False)
    target = librosa.hz_to_mel(np.clip(hz * alpha, hz[0], hz[-1]), htk=False)
    return np.interp(target, mel_axis, np.arange(settings.n_mels)).astype(np.float32)


def freq_warp(x: torch.Tensor, settings: MelSettings, alpha: float) -> torch.Tensor:
    """Warp ``(..., n_mels, frames)`` along the mel axis by ``alpha`` (linear interpolation)."""
    idx = torch.from_numpy(_warp_index(settings, alpha))
    lo = idx.floor().long().clamp(0, settings.n_mels - 1)
    hi = (lo + 1).clamp(max=settings.n_mels - 1)
    frac = (idx - lo.float())[:, None]
    return x[..., lo, :] * (1 - frac) + x[..., hi, :] * frac


def time_stretch(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Resample ``(C, n_mels, frames)`` to ``round(frames * beta)`` frames (beta > 1 is slower speech)."""
    n = max(1, int(round(x.shape[-1] * beta)))
    return F.interpolate(x, size=n, mode="linear", align_corners=False)


def augment_batch(
    raw: list[np.ndarray],
    frames: int,
    rng: np.random.Generator,
    settings: MelSettings,
    warp: float = 0.1,
    stretch: float = 0.1,
    gain_db: float = 6.0,
) -> list[np.ndarray]:
    """Perturb raw (un-normalised) log-mels ``(n_mels, T)``; returns new arrays.

    Each clip is cut to about ``frames / beta`` frames before stretching so the
    result is close to ``frames`` long and the work stays small; the caller
    crops or pads to exactly ``frames``.
    """
    out = []
    shift_per_db = settings.power * math.log(10) / 20  # log-mel units per dB
    for m in raw:
        beta = float(rng.uniform(1 - stretch, 1 + stretch)) if stretch > 0 else 1.0
        need = int(math.ceil(frames / beta)) + 1
        if m.shape[1] > need:
            s = int(rng.integers(0, m.shape[1] - need + 1))
            m = m[:, s : s + need]
        x = torch.from_numpy(np.ascontiguousarray(m))[None]
        if warp > 0:
            x = freq_warp(x, settings, float(rng.uniform(1 - warp, 1 + warp)))
        if beta != 1.0:
            x = time_stretch(x, beta)
        if gain_db > 0:
            x = x + float(rng.uniform(-gain_db, gain_db)) * shift_per_db
        # Silence stays at the log floor whatever the gain: a level change does not lift the noise floor.
        x = x.clamp_min(math.log(settings.log_floor))
        out.append(x[0].numpy())
    return out
