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


# --- the calibrated edit's region and its rendering at the input's own rate -----------------

#: Natural-log units of a magnitude mel -> dB (20 log10 e): emort's log-mel is log |X|.
NATS_TO_DB = 20.0 / np.log(10.0)
#: Frames within this many dB of the loudest frame count as speech (the project's one rule).
ACTIVE_DB = 35.0
#: A band counts as in-band when its speech level is within this many dB of the loudest band's
#: and its centre lies below the input's Nyquist frequency (8 kHz telephone, 16 kHz studio).
IN_BAND_DB = 50.0


def active_frames(log_mel_: np.ndarray, active_db: float = ACTIVE_DB, power: float = 1.0) -> np.ndarray:
    """Speech frames of a ``(n_mels, frames)`` natural-log mel: bool ``(frames,)``.

    A frame is active when its mean log level lies within ``active_db`` of the loudest
    frame's (``power``: the mel's exponent, 1 magnitude / 2 power). Fewer than 3 active
    frames (a click, a constant tone) count as all active.
    """
    m = np.asarray(log_mel_, dtype=np.float64)
    level = m.mean(axis=0)
    active = level > level.max() - active_db * power / NATS_TO_DB
    if active.sum() < 3:
        active[:] = True
    return active


def band_centres_hz(settings: MelSettings) -> np.ndarray:
    """Centre frequency of each mel band, Hz, ``(n_mels,)``."""
    pts = _mel_to_hz(np.linspace(_hz_to_mel(settings.fmin_hz), _hz_to_mel(settings.fmax_hz), settings.n_mels + 2))
    return pts[1:-1]


def in_band(log_mel_: np.ndarray, settings: MelSettings, source_rate: int, active: np.ndarray | None = None,
            in_band_db: float = IN_BAND_DB) -> np.ndarray:
    """Bands that carry the input's own signal: bool ``(n_mels,)``.

    A band is out of band when its centre lies above ``0.95 x`` the input's Nyquist frequency
    (a 16 kHz file has nothing above 8 kHz; an 8 kHz telephone file nothing above 4 kHz) or
    when its level over speech frames is more than ``in_band_db`` below the loudest band's
    (band-limited audio stored at a higher rate). Gain is never added there.
    """
    m = np.asarray(log_mel_, dtype=np.float64)
    act = active_frames(m) if active is None else active
    level_db = m[:, act].mean(axis=1) * NATS_TO_DB
    ok = level_db > level_db.max() - in_band_db
    ok &= band_centres_hz(settings) < 0.95 * source_rate / 2
    return ok


def edit_region(log_mel_: np.ndarray, settings: MelSettings, source_rate: int, smooth_frames: int = 5) -> np.ndarray:
    """Weights ``(n_mels, frames)`` in [0, 1] of where the edit may act: active x in-band.

    The frame mask is smoothed over ``smooth_frames`` (about 58 ms at hop 256 / 22,050 Hz) so
    the gain fades in and out at pauses instead of switching (no clicks); pauses and
    out-of-band bands keep the source exactly (a gain there only lifts noise).
    """
    act = active_frames(log_mel_)
    w = act.astype(np.float64)
    if smooth_frames > 1:
        w = np.convolve(w, np.ones(smooth_frames) / smooth_frames, mode="same")
        w = np.maximum(w, act)  # speech frames keep full weight; only the edges ramp
    band = in_band(log_mel_, settings, source_rate, act).astype(np.float64)
    return band[:, None] * w[None, :]


def _stft_at(sample_rate: int, settings: MelSettings):
    """A ShortTimeFFT at ``sample_rate`` covering about the model's window (periodic Hann, 75% overlap)."""
    from scipy.signal import ShortTimeFFT
    from scipy.signal.windows import hann

    n_fft = int(2 ** round(np.log2(settings.n_fft * sample_rate / settings.sample_rate)))
    n_fft = max(n_fft, 64)
    return ShortTimeFFT(hann(n_fft, sym=False), hop=n_fft // 4, fs=sample_rate)


def _gain_on_bins(gain_nats: np.ndarray, settings: MelSettings, freqs_hz: np.ndarray) -> np.ndarray:
    """Per-band gain ``(n_mels, frames)`` -> per-bin ``(len(freqs_hz), frames)``: linear on the
    mel scale between band centres, the edge bands' gain held outside them."""
    centres = _hz_to_mel(band_centres_hz(settings))
    f = _hz_to_mel(freqs_hz)
    idx = np.clip(np.searchsorted(centres, f) - 1, 0, len(centres) - 2)
    frac = np.clip((f - centres[idx]) / (centres[idx + 1] - centres[idx]), 0.0, 1.0)
    return gain_nats[idx] * (1 - frac)[:, None] + gain_nats[idx + 1] * frac[:, None]


def apply_band_gain(samples: np.ndarray, sample_rate: int, gain_nats: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Apply a mel-band gain computed on the model's grid to audio at its OWN rate.

    ``samples``: ``(num_samples,)`` or ``(num_samples, channels)`` at ``sample_rate``;
    ``gain_nats``: ``(n_mels, frames)`` natural-log magnitude gain on the model's frames
    (hop ``settings.hop_length`` at ``settings.sample_rate``). The gain is interpolated in
    time onto an STFT at the input rate (``scipy.signal.ShortTimeFFT``, Hann, window about
    the model's 46 ms) and in frequency between band centres; content above the model's
    ``fmax`` takes the top band's gain. Phase and fine structure stay the source's, so a zero
    gain returns the input (to float rounding). Returns float32 of the input's shape.
    """
    x = np.asarray(samples, dtype=np.float64)
    if not np.any(gain_nats):
        return x.astype(np.float32)
    sft = _stft_at(sample_rate, settings)
    n = x.shape[0]
    chans = x[:, None] if x.ndim == 1 else x
    frame_pos = sft.t(n) * settings.sample_rate / settings.hop_length  # model frame index of each slice centre
    g = _gain_on_bins(np.asarray(gain_nats, np.float64), settings, sft.f)  # (n_bins, model frames)
    k = np.clip(frame_pos, 0, g.shape[1] - 1)
    i0 = np.floor(k).astype(int)
    i1 = np.minimum(i0 + 1, g.shape[1] - 1)
    fr = k - i0
    gain = np.exp(g[:, i0] * (1 - fr) + g[:, i1] * fr)  # (n_bins, slices)
    out = np.empty_like(chans)
    for c in range(chans.shape[1]):
        spec = sft.stft(chans[:, c])
        out[:, c] = sft.istft(spec * gain, k1=n)
    return (out[:, 0] if x.ndim == 1 else out).astype(np.float32)
