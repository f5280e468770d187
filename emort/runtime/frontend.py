"""Log-mel front-end and its inverses in numpy (the runtime side).

The training side computes the same features with librosa
(``emort.training.features``); ``tests/runtime/test_frontend.py`` proves they
agree to 1e-4 on real clips. Settings come from :class:`MelSettings`, carried
in every bundle.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from emort.runtime.settings import MelSettings


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, log above), as librosa's default."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=8)
def mel_filterbank(settings: MelSettings) -> np.ndarray:
    """Slaney-normalised triangular filters, shape ``(n_mels, n_fft // 2 + 1)``, float64."""
    n_freq = settings.n_fft // 2 + 1
    fft_hz = np.linspace(0, settings.sample_rate / 2, n_freq)
    mel_pts = np.linspace(_hz_to_mel(settings.fmin_hz), _hz_to_mel(settings.fmax_hz), settings.n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (hz_pts[2:] - hz_pts[:-2])
    weights *= enorm[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=8)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    # Periodic Hann (scipy/librosa fftbins=True), centred in n_fft.
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        w = np.pad(w, (left, n_fft - win_length - left))
    w.setflags(write=False)
    return w


def num_frames(num_samples: int, settings: MelSettings) -> int:
    """Frames of a centred STFT: ``1 + num_samples // hop_length``."""
    return 1 + num_samples // settings.hop_length


def stft(wav: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Centred STFT with zero padding. ``(num_samples,)`` -> complex128 ``(n_fft//2+1, frames)``."""
    x = np.asarray(wav, dtype=np.float64)
    pad = settings.n_fft // 2
    x = np.pad(x, (pad, pad), mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(x, settings.n_fft)[:: settings.hop_length]
    spec = np.fft.rfft(frames * _window(settings.n_fft, settings.win_length), axis=-1)
    return spec.T  # (freq, frames)


def istft(spec: np.ndarray, settings: MelSettings, length: int | None = None) -> np.ndarray:
    """Inverse of :func:`stft` (weighted overlap-add). Returns float64 ``(num_samples,)``."""
    win = _window(settings.n_fft, settings.win_length)
    frames = np.fft.irfft(spec.T, n=settings.n_fft, axis=-1) * win  # (frames, n_fft)
    n_frames = frames.shape[0]
    hop = settings.hop_length
    total = settings.n_fft + hop * (n_frames - 1)
    y = np.zeros(total)
    wsum = np.zeros(total)
    wsq = win**2
    if settings.n_fft % hop == 0:
        # Overlap-add as n_fft/hop strided slab additions (no per-frame Python loop).
        for k in range(settings.n_fft // hop):
            seg = slice(k * hop, k * hop + n_frames * hop)
            y[seg] += frames[:, k * hop : (k + 1) * hop].reshape(-1)
            wsum[seg] += np.tile(wsq[k * hop : (k + 1) * hop], n_frames)
    else:
        for i in range(n_frames):
            s = i * hop
            y[s : s + settings.n_fft] += frames[i]
            wsum[s : s + settings.n_fft] += wsq
    nz = wsum > 1e-10
    y[nz] /= wsum[nz]
    pad = settings.n_fft // 2
    y = y[pad:]
    if length is not None:
        y = y[:length] if len(y) >= length else np.pad(y, (0, length - len(y)))
    else:
        y = y[: len(y) - pad]
    return y


def mel_from_magnitude(mag: np.ndarray, settings: MelSettings) -> np.ndarray:
    """``(n_freq, frames)`` magnitude -> log-mel float32 ``(n_mels, frames)``."""
    if settings.power != 1.0:
        mag = mag**settings.power
    mel = mel_filterbank(settings) @ mag
    return np.log(np.maximum(mel, settings.log_floor)).astype(np.float32)


def log_mel(wav: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Waveform at ``settings.sample_rate`` -> log-mel float32 ``(n_mels, frames)``."""
    return mel_from_magnitude(np.abs(stft(wav, settings)), settings)


#: Largest band gain the gain vocoder applies, natural log (3.0 = x20 amplitude, 26 dB).
MAX_LOG_GAIN = 3.0


def fit_norm(log_mels: list[np.ndarray], min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std ``(n_mels,)`` over all frames of ``log_mels`` (float32).

    The one definition of the z-score statistics: training fits the global ones
    with it, and speaker-normalised scoring fits each speaker's at run time.
    """
    cat = np.concatenate(log_mels, axis=1).astype(np.float64)
    return cat.mean(axis=1).astype(np.float32), np.maximum(cat.std(axis=1), min_std).astype(np.float32)


@lru_cache(maxsize=8)
def _band_to_bin(settings: MelSettings) -> np.ndarray:
    """``(n_freq, n_mels)`` weights that spread a per-band gain over STFT bins.

    Each bin takes the filter-weighted mean of the bands covering it; bins
    outside ``[fmin, fmax]`` take the nearest band's gain.
    """
    fb = mel_filterbank(settings)  # (n_mels, n_freq)
    w = fb.T.copy()
    s = w.sum(axis=1, keepdims=True)
    covered = s[:, 0] > 0
    w[covered] /= s[covered]
    idx = np.flatnonzero(covered)
    for b in np.flatnonzero(~covered):
        nearest = idx[np.argmin(np.abs(idx - b))]
        w[b] = w[nearest]
    w.setflags(write=False)
    return w


def apply_mel_gain(
    wav: np.ndarray, source_log_mel: np.ndarray, target_log_mel: np.ndarray, settings: MelSettings
) -> np.ndarray:
    """Vocoder "gain": scale the source STFT by the mel-band gain target/source.

    Exactly transparent when ``target == source`` (MISSION.md, measured
    pitfalls: a mel -> Griffin-Lim path loses judge accuracy with no edit at
    all); keeps the source's fine structure and phase, moves band energies.
    Returns float32 ``(num_samples,)``.
    """
    spec = stft(wav, settings)
    # natural-log gain per band, (n_mels, frames); clamped to +-MAX_LOG_GAIN so an overshooting
    # edit in a near-silent stretch cannot lift the noise floor by 40-50 dB.
    gain_db = np.clip((target_log_mel - source_log_mel).astype(np.float64), -MAX_LOG_GAIN, MAX_LOG_GAIN)
    bin_gain = np.exp(_band_to_bin(settings) @ gain_db)  # (n_freq, frames)
    return istft(spec * bin_gain, settings, length=len(wav)).astype(np.float32)


def mel_to_magnitude(log_mel_: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Approximate inverse of the mel projection (non-negative least squares via pinv + clip)."""
    fb = mel_filterbank(settings)
    mel = np.exp(log_mel_.astype(np.float64))
    return np.maximum(np.linalg.pinv(fb) @ mel, 0.0)


def griffin_lim(
    magnitude: np.ndarray,
    settings: MelSettings,
    n_iter: int = 32,
    init_phase: np.ndarray | None = None,
    length: int | None = None,
    momentum: float = 0.99,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Fast Griffin-Lim (Perraudin et al. 2013), optionally started from a given phase.

    ``magnitude``: ``(n_freq, frames)``; ``init_phase``: same shape, radians,
    e.g. the source clip's phase so timing and fine structure start aligned.
    """
    if init_phase is None:
        rng = rng or np.random.default_rng(0)
        angles = np.exp(2j * np.pi * rng.random(magnitude.shape))
    else:
        angles = np.exp(1j * init_phase)
    prev = np.zeros_like(angles)
    n = length if length is not None else settings.hop_length * (magnitude.shape[1] - 1)
    for _ in range(n_iter):
        y = istft(magnitude * angles, settings, length=n)
        rebuilt = stft(y, settings)
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        angles = angles / np.maximum(np.abs(angles), 1e-16)
    return istft(magnitude * angles, settings, length=n).astype(np.float32)
