"""Image-to-image mel editing toward a target emotion (paper section 4.3, MISSION.md step 4).

Backend-agnostic: ``model_fn`` is any callable running the denoiser network on
numpy arrays (an onnxruntime/TensorRT session, or torch during training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emort.runtime.samplers import (
    NoiseSchedule,
    add_noise,
    run_sampler,
    start_timestep,
    timesteps,
    x0_from_prediction,
)

#: model_fn(x ``(B, n_mels, T)``, t ``(B,)`` float32, emotion ``(B, E)``, emotion_mask ``(B, 1)``,
#: style ``(B, S)``) -> prediction ``(B, n_mels, T)``.
ModelFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


#: Largest batch x frames per denoiser call in the batched "direction" edit (memory bound).
MAX_BATCH_FRAMES = 16 * 2600

#: Samplers re-generate the mel from the noised source; "direction" keeps the source and
#: adds the emotion direction (conditional - unconditional x0 estimate) averaged over noise levels.
EDIT_METHODS = ("ddim", "dpmpp", "ddpm", "direction")


@dataclass(frozen=True)
class EditOptions:
    """Per-call enhancement options (the CLI flags)."""

    strength: float = 0.3
    guidance: float = 5.0
    steps: int = 8
    sampler: str = "dpmpp"
    intensity: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        from emort.runtime.errors import EmortError

        if not 0.0 <= self.strength <= 1.0:
            raise EmortError(f"strength must be in [0, 1], got {self.strength}")
        if not 0.0 <= self.intensity <= 1.0:
            raise EmortError(f"intensity must be in [0, 1], got {self.intensity}")
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise EmortError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise EmortError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not all(np.isfinite([self.strength, self.guidance, self.intensity])):
            raise EmortError("strength, guidance and intensity must be finite numbers")
        if self.guidance < 0:
            raise EmortError(f"guidance must be >= 0, got {self.guidance}")
        if self.sampler not in EDIT_METHODS:
            raise EmortError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(EDIT_METHODS)}")


def pad_to_multiple(mel: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pad ``(..., frames)`` on the right to a multiple of ``multiple``."""
    t = mel.shape[-1]
    extra = (-t) % multiple
    if extra == 0:
        return mel
    pad = [(0, 0)] * (mel.ndim - 1) + [(0, extra)]
    return np.pad(mel, pad, mode="edge")


def target_embedding(source_embedding: np.ndarray, centroid: np.ndarray, intensity: float) -> np.ndarray:
    """Emotion intensity: interpolate from the source's own SER embedding (0) to the target centroid (1)."""
    return ((1.0 - intensity) * source_embedding + intensity * centroid).astype(np.float32)


def guided_denoiser(
    model_fn: ModelFn,
    emotion: np.ndarray,
    style: np.ndarray,
    schedule: NoiseSchedule,
    prediction: str,
    guidance: float,
) -> Callable[[np.ndarray, int], np.ndarray]:
    """x0-denoiser with classifier-free guidance as one forward pass of batch 2 (cond, uncond).

    ``emotion``: ``(E,)``; ``style``: ``(S,)``; the returned callable maps ``(1, n_mels, T)``.
    """
    ac = schedule.alphas_cumprod
    emo2 = np.stack([emotion, emotion]).astype(np.float32)
    mask2 = np.array([[1.0], [0.0]], dtype=np.float32)
    style2 = np.stack([style, style]).astype(np.float32)
    emo1, mask1, style1 = emo2[:1], mask2[:1], style2[:1]

    def denoise(x: np.ndarray, t: int) -> np.ndarray:
        if guidance == 1.0:  # plain conditional: half the work
            pred = model_fn(x, np.full((1,), t, np.float32), emo1, mask1, style1)
        else:
            out = model_fn(np.concatenate([x, x]), np.full((2,), t, np.float32), emo2, mask2, style2)
            cond, uncond = out[:1], out[1:]
            pred = uncond + guidance * (cond - uncond)
        return x0_from_prediction(pred, x, float(ac[t]), prediction)

    return denoise


def edit_mel(
    model_fn: ModelFn,
    source: np.ndarray,
    emotion: np.ndarray,
    style: np.ndarray,
    options: EditOptions,
    schedule: NoiseSchedule,
    prediction: str,
    stride: int,
    max_batch: int | None = None,
) -> np.ndarray:
    """Noise the normalised source mel ``(n_mels, T)`` to ``strength``, denoise toward ``emotion``.

    Returns ``(n_mels, T)`` float32. ``strength == 0`` returns the source unchanged; the
    same seed gives the same output.
    """
    if options.strength <= 0.0:
        return source.astype(np.float32)
    if options.sampler == "direction":
        return edit_direction(model_fn, source, emotion, style, options, schedule, prediction, stride, max_batch)
    rng = np.random.default_rng(options.seed)
    t0 = start_timestep(options.strength, schedule)
    x0 = pad_to_multiple(source[None].astype(np.float32), stride)
    x = add_noise(x0, t0, schedule, rng)
    den = guided_denoiser(model_fn, emotion, style, schedule, prediction, options.guidance)
    ts = timesteps(options.steps, t0)
    y = run_sampler(options.sampler, den, x, ts, schedule, rng)
    return y[0, :, : source.shape[1]].astype(np.float32)


def edit_direction(
    model_fn: ModelFn,
    source: np.ndarray,
    emotion: np.ndarray,
    style: np.ndarray,
    options: EditOptions,
    schedule: NoiseSchedule,
    prediction: str,
    stride: int,
    max_batch: int | None = None,
) -> np.ndarray:
    """Edit only along the emotion direction: ``source + guidance * mean_t(x0_cond - x0_uncond)``.

    The source is noised to ``steps`` levels up to ``strength`` (seeded); at each, one batch-2
    forward gives the conditional and unconditional x0 estimates. Their difference is what the
    model attributes to the target emotion; everything else (content, fine structure) stays
    the source's, so fidelity is high and ``guidance`` scales the edit linearly.
    """
    rng = np.random.default_rng(options.seed)
    t0 = start_timestep(options.strength, schedule)
    x0 = pad_to_multiple(source[None].astype(np.float32), stride)  # (1, n_mels, T)
    ac = schedule.alphas_cumprod
    ts = timesteps(options.steps, t0)
    # The noise levels are independent (no trajectory), so they run batched: fewer, larger GEMMs.
    abs_ = np.array([float(ac[t]) for t in ts], np.float32)
    # At most MAX_BATCH_FRAMES frames per call (memory), and never more rows than the
    # backend accepts (TensorRT engines are built for the bundle's batch range).
    per_call = max(1, MAX_BATCH_FRAMES // (2 * x0.shape[-1]))
    if max_batch:
        per_call = max(1, min(per_call, max_batch // 2))
    delta = np.zeros(x0.shape[1:], np.float64)
    for i in range(0, len(ts), per_call):
        sl = slice(i, i + per_call)
        k = len(ts[sl])
        a = np.sqrt(abs_[sl])[:, None, None]
        s = np.sqrt(1 - abs_[sl])[:, None, None]
        # float64 draws, per chunk: the same stream as one level at a time, bounded memory
        noise = rng.standard_normal((k,) + x0.shape[1:]).astype(np.float32)
        xt = (a * x0 + s * noise).astype(np.float32)  # (k, n_mels, T)
        out = model_fn(
            np.concatenate([xt, xt]),
            np.concatenate([ts[sl], ts[sl]]).astype(np.float32),
            np.repeat(emotion[None].astype(np.float32), 2 * k, axis=0),
            np.concatenate([np.ones((k, 1), np.float32), np.zeros((k, 1), np.float32)]),
            np.repeat(style[None].astype(np.float32), 2 * k, axis=0),
        )
        for j in range(k):
            ab = float(abs_[sl][j])
            delta += x0_from_prediction(out[j], xt[j], ab, prediction) - x0_from_prediction(out[k + j], xt[j], ab, prediction)
    delta /= len(ts)
    return (source + options.guidance * delta[:, : source.shape[1]]).astype(np.float32)
