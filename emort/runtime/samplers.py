"""Noise schedules and samplers as plain numpy functions (k-diffusion style).

One definition, used by training-time sampling and by the runtime. A sampler
takes a *denoiser* callable ``denoise(x, t) -> x0_hat`` (``x``: ``(batch,
n_mels, frames)``, ``t``: integer timestep) that already includes any
classifier-free guidance, the current sample, the timesteps to visit and the
schedule. Models may predict epsilon, v or x0: :func:`x0_from_prediction`
converts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emort.runtime.settings import DictConvertible

Denoiser = Callable[[np.ndarray, int], np.ndarray]
Callback = Callable[[int, int, np.ndarray], None]


@dataclass(frozen=True)
class NoiseSchedule(DictConvertible):
    """Discrete DDPM schedule. ``alphas_cumprod[t]`` for ``t = 0 .. num_train_steps - 1``."""

    kind: str = "cosine"  # "cosine" (Nichol & Dhariwal 2021) or "linear" (Ho et al. 2020)
    num_train_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @property
    def betas(self) -> np.ndarray:
        n = self.num_train_steps
        if self.kind == "linear":
            return np.linspace(self.beta_start, self.beta_end, n, dtype=np.float64)
        if self.kind == "cosine":
            s = 0.008
            x = np.linspace(0, n, n + 1, dtype=np.float64)
            ac = np.cos(((x / n) + s) / (1 + s) * np.pi / 2) ** 2
            ac = ac / ac[0]
            return np.clip(1 - ac[1:] / ac[:-1], 0, 0.999)
        raise ValueError(f"unknown schedule {self.kind!r}")

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)


def x0_from_prediction(pred: np.ndarray, x: np.ndarray, alpha_bar: float, prediction: str) -> np.ndarray:
    """Model output (``eps``, ``v`` or ``x0``) at noise level ``alpha_bar`` -> x0 estimate."""
    a, s = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
    if prediction == "v":
        return a * x - s * pred
    if prediction == "eps":
        return (x - s * pred) / a
    if prediction == "x0":
        return pred
    raise ValueError(f"unknown prediction type {prediction!r}")


def add_noise(x0: np.ndarray, t: int, schedule: NoiseSchedule, rng: np.random.Generator) -> np.ndarray:
    """Sample ``q(x_t | x_0)``."""
    ab = schedule.alphas_cumprod[t]
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    return (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32)


def timesteps(num_steps: int, t_start: int) -> np.ndarray:
    """``num_steps`` integer timesteps from ``t_start`` down towards 0 (evenly spaced, unique)."""
    num_steps = max(1, min(num_steps, t_start + 1))
    if num_steps == t_start + 1:  # every timestep (rounding the spacing < 1 below would drop t=0)
        return np.arange(t_start, -1, -1, dtype=np.int64)
    ts = np.round(np.linspace(t_start, 0, num_steps, endpoint=False)).astype(np.int64)
    return np.unique(ts)[::-1]


def start_timestep(strength: float, schedule: NoiseSchedule) -> int:
    """Image-to-image: the timestep reached by noising to ``strength`` in (0, 1]."""
    return int(round(np.clip(strength, 0.0, 1.0) * (schedule.num_train_steps - 1)))


def _abar(schedule_ac: np.ndarray, t: int) -> float:
    return 1.0 if t < 0 else float(schedule_ac[t])


def sample_ddim(
    denoise: Denoiser,
    x: np.ndarray,
    ts: np.ndarray,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    rng: np.random.Generator | None = None,
    callback: Callback | None = None,
) -> np.ndarray:
    """DDIM (Song et al. 2021). ``eta=0`` deterministic; ``eta=1`` is ancestral DDPM sampling."""
    ac = schedule.alphas_cumprod
    for i, t in enumerate(ts):
        t_prev = int(ts[i + 1]) if i + 1 < len(ts) else -1
        ab, ab_prev = _abar(ac, int(t)), _abar(ac, t_prev)
        x0 = denoise(x, int(t))
        eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) if t_prev >= 0 else 0.0
        x = np.sqrt(ab_prev) * x0 + np.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            if rng is None:
                raise ValueError("eta > 0 needs an rng")
            x = x + sigma * rng.standard_normal(x.shape)
        x = x.astype(np.float32)
        if callback is not None:
            callback(i, int(t), x0)
    return x


def sample_ddpm(
    denoise: Denoiser, x: np.ndarray, ts: np.ndarray, schedule: NoiseSchedule, rng: np.random.Generator, callback: Callback | None = None
) -> np.ndarray:
    """Ancestral DDPM (Ho et al. 2020): DDIM with ``eta=1``; over every timestep it is exactly DDPM."""
    return sample_ddim(denoise, x, ts, schedule, eta=1.0, rng=rng, callback=callback)


def sample_dpmpp_2m(
    denoise: Denoiser, x: np.ndarray, ts: np.ndarray, schedule: NoiseSchedule, callback: Callback | None = None
) -> np.ndarray:
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction, first order on the final step."""
    ac = schedule.alphas_cumprod
    x0_prev = None
    h_prev = None
    for i, t in enumerate(ts):
        t_next = int(ts[i + 1]) if i + 1 < len(ts) else -1
        ab_t = _abar(ac, int(t))
        x0 = denoise(x, int(t))
        if t_next < 0:  # last step lands on the data: x = x0 estimate
            x = x0.astype(np.float32)
        else:
            ab_s = _abar(ac, t_next)
            a_t, s_t = np.sqrt(ab_t), np.sqrt(1 - ab_t)
            a_s, s_s = np.sqrt(ab_s), np.sqrt(1 - ab_s)
            lam_t, lam_s = np.log(a_t / s_t), np.log(a_s / s_s)
            h = lam_s - lam_t
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = ((s_s / s_t) * x - a_s * np.expm1(-h) * d).astype(np.float32)
            h_prev = h
        x0_prev = x0
        if callback is not None:
            callback(i, int(t), x0)
    return x


SAMPLERS = ("ddim", "dpmpp", "ddpm")


def run_sampler(
    name: str,
    denoise: Denoiser,
    x: np.ndarray,
    ts: np.ndarray,
    schedule: NoiseSchedule,
    rng: np.random.Generator,
    callback: Callback | None = None,
) -> np.ndarray:
    if name == "ddim":
        return sample_ddim(denoise, x, ts, schedule, callback=callback)
    if name in ("dpmpp", "dpmpp_2m", "dpm++"):
        return sample_dpmpp_2m(denoise, x, ts, schedule, callback=callback)
    if name == "ddpm":
        return sample_ddpm(denoise, x, ts, schedule, rng, callback=callback)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
