"""emort.runtime.editing: image-to-image mel editing with toy numpy model functions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emort.runtime.editing import (
    DiffusionSpec,
    EditOptions,
    edit_mel,
    guided_denoiser,
    pad_to_multiple,
    target_embedding,
)
from emort.runtime.errors import EmortError
from emort.runtime.samplers import NoiseSchedule

SCHED = NoiseSchedule("cosine")
AC = SCHED.alphas_cumprod
N_MELS, T, E, S = 8, 21, 4, 3  # T deliberately not a multiple of the stride
STRIDE = 4


@pytest.fixture()
def source() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N_MELS, T)).astype(np.float32)


@pytest.fixture()
def emotion() -> np.ndarray:
    return np.array([0.5, -1.0, 0.25, 2.0], np.float32)


STYLE = np.zeros(S, np.float32)


def v_model_towards(target: np.ndarray, calls: list | None = None):
    """A model that predicts v exactly for data point ``target`` ``(n_mels, frames)``."""

    def model_fn(x, t, emo, mask, style):
        assert x.ndim == 3 and x.shape[0] == t.shape[0] == emo.shape[0] == mask.shape[0] == style.shape[0]
        assert t.dtype == np.float32
        if calls is not None:
            calls.append(x.shape)
        ab = AC[int(t[0])]
        a, s = np.sqrt(ab), np.sqrt(1 - ab)
        x0 = np.zeros_like(x)
        x0[..., : target.shape[-1]] = target
        eps = (x - a * x0) / s
        return (a * eps - s * x0).astype(np.float32)

    return model_fn


def gaussian_x0_model(centre: np.ndarray, sd: float = 0.5):
    """Predicts x0 as the posterior mean of N(centre, sd^2): its output depends on the noise."""

    def model_fn(x, t, emo, mask, style):
        ab = AC[int(t[0])]
        a = np.sqrt(ab)
        c = np.zeros_like(x)
        c[..., : centre.shape[-1]] = centre
        return (c + a * sd**2 / (ab * sd**2 + 1 - ab) * (x - a * c)).astype(np.float32)

    return model_fn


# --- edit_mel --------------------------------------------------------------------------------


def test_strength_zero_returns_source_exactly(source, emotion):
    def exploding(*_):
        raise AssertionError("the model must not run at strength 0")

    out = edit_mel(exploding, source, emotion, STYLE, EditOptions(strength=0.0), DiffusionSpec(SCHED, "v", STRIDE))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, source)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "ddpm"])
@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_v_model_lands_on_its_target(source, emotion, sampler, strength):
    target = np.linspace(-1, 1, N_MELS * T, dtype=np.float32).reshape(N_MELS, T)
    calls: list = []
    opts = EditOptions(strength=strength, steps=6, method=sampler, guidance=3.0, seed=1)
    out = edit_mel(v_model_towards(target, calls), source, emotion, STYLE, opts, DiffusionSpec(SCHED, "v", STRIDE))
    assert out.shape == source.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, target, atol=1e-4)
    # padded to the stride for the network, batch 2 (cond + uncond) when guidance != 1
    assert calls and all(c == (2, N_MELS, 24) for c in calls)
    assert len(calls) == 6


def test_same_seed_same_output_different_seed_differs(source, emotion):
    model = gaussian_x0_model(np.full((N_MELS, T), 1.0, np.float32))
    for sampler in ("ddim", "dpmpp", "ddpm"):
        a, b, c = (
            edit_mel(model, source, emotion, STYLE, EditOptions(strength=0.6, steps=5, method=sampler, guidance=1.0, seed=seed), DiffusionSpec(SCHED, "x0", STRIDE))
            for seed in (7, 7, 8)
        )
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - c).max() > 1e-3


def test_low_strength_stays_near_source(source, emotion):
    model = gaussian_x0_model(np.full((N_MELS, T), 3.0, np.float32))
    near = edit_mel(model, source, emotion, STYLE, EditOptions(strength=0.05, steps=4, guidance=1.0, method="dpmpp"), DiffusionSpec(SCHED, "x0", STRIDE))
    far = edit_mel(model, source, emotion, STYLE, EditOptions(strength=1.0, steps=4, guidance=1.0, method="dpmpp"), DiffusionSpec(SCHED, "x0", STRIDE))
    assert np.abs(near - source).mean() < 0.2
    assert np.abs(far - 3.0).mean() < np.abs(near - 3.0).mean()


# --- guidance --------------------------------------------------------------------------------


def test_guided_denoiser_combines_cond_and_uncond(emotion):
    cond_val, uncond_val = 2.0, -1.0
    calls: list = []

    def model_fn(x, t, emo, mask, style):
        calls.append(x.shape[0])
        np.testing.assert_array_equal(emo, np.broadcast_to(emotion, emo.shape))
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = cond_val if mask[i, 0] == 1.0 else uncond_val
        return out

    x = np.zeros((1, N_MELS, 8), np.float32)
    for g in (0.0, 1.0, 4.0):
        calls.clear()
        den = guided_denoiser(model_fn, emotion, STYLE, SCHED, "x0", g)
        y = den(x, 500)
        np.testing.assert_allclose(y, uncond_val + g * (cond_val - uncond_val))
        assert y.shape == x.shape
        assert calls == ([1] if g == 1.0 else [2])  # guidance 1: conditional pass only


def test_guided_denoiser_converts_predictions(emotion):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((1, N_MELS, 8))
    noise = rng.standard_normal((1, N_MELS, 8))
    t = 300
    ab = AC[t]
    x = (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32)
    eps_model = lambda x_, t_, e, m, s: np.repeat(noise, x_.shape[0], axis=0).astype(np.float32)  # noqa: E731
    den = guided_denoiser(eps_model, emotion, STYLE, SCHED, "eps", 3.0)
    np.testing.assert_allclose(den(x, t), x0, atol=1e-4)


# --- helpers ---------------------------------------------------------------------------------


def test_pad_to_multiple():
    m = np.arange(2 * 5, dtype=np.float32).reshape(2, 5)
    p = pad_to_multiple(m, 4)
    assert p.shape == (2, 8)
    np.testing.assert_array_equal(p[:, :5], m)
    np.testing.assert_array_equal(p[:, 5:], np.repeat(m[:, -1:], 3, axis=1))  # edge padding
    assert pad_to_multiple(m, 5) is m
    assert pad_to_multiple(m, 1) is m
    b = np.ones((3, 2, 9))
    assert pad_to_multiple(b, 8).shape == (3, 2, 16)


def test_target_embedding_interpolates():
    src = np.array([1.0, 0.0, -2.0])
    cen = np.array([3.0, 4.0, 2.0])
    np.testing.assert_allclose(target_embedding(src, cen, 0.0), src)
    np.testing.assert_allclose(target_embedding(src, cen, 1.0), cen)
    np.testing.assert_allclose(target_embedding(src, cen, 0.25), [1.5, 1.0, -1.0])
    assert target_embedding(src, cen, 0.5).dtype == np.float32


def test_edit_options_validate():
    EditOptions().validate()
    EditOptions(strength=0.0, intensity=1.0, steps=1, guidance=0.0, method="ddpm").validate()
    for bad in (
        dict(strength=-0.1),
        dict(strength=1.01),
        dict(intensity=-0.5),
        dict(intensity=1.5),
        dict(steps=0),
        dict(guidance=-1.0),
        dict(method="euler"),
    ):
        with pytest.raises(EmortError):
            EditOptions(**bad).validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        EditOptions().strength = 0.5  # type: ignore[misc]
