"""emort.runtime.samplers, diffusers-style: each sampler runs a full loop with a fixed seed on
a toy distribution whose exact denoiser is known, and its samples' statistics are checked.

Toy data: ``x0 ~ N(mu, s^2)`` independently per dimension. With ``x_t = a x0 + sqrt(1 - ab) eps``
(``a = sqrt(ab)``), ``x_t ~ N(a mu, ab s^2 + 1 - ab)`` and the posterior mean is
``E[x0 | x_t] = mu + a s^2 / (ab s^2 + 1 - ab) * (x_t - a mu)``: the ideal x0-denoiser.
A correct sampler driven by it must return samples with mean mu and std s.
"""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.samplers import (
    SAMPLERS,
    NoiseSchedule,
    add_noise,
    run_sampler,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    start_timestep,
    timesteps,
    x0_from_prediction,
)

N = 20000
MU = np.array([0.5, -1.0, 2.0, 0.0], np.float32).reshape(1, 4, 1)
# Normalised mels have roughly unit variance; DDIM's own discretisation error at 50 steps
# grows with the data std (about -0.02 at s = 0.8 under the cosine schedule), so stay below 0.8.
SD = np.array([0.7, 0.5, 0.6, 0.4], np.float32).reshape(1, 4, 1)
SCHED = NoiseSchedule("cosine")
AC = SCHED.alphas_cumprod
T_MAX = SCHED.num_train_steps - 1


def gaussian_denoiser(mu: np.ndarray = MU, sd: np.ndarray = SD, ac: np.ndarray = AC):
    def denoise(x: np.ndarray, t: int) -> np.ndarray:
        ab = np.float32(ac[t])
        a = np.sqrt(ab)
        return mu + a * sd**2 / (ab * sd**2 + 1 - ab) * (x - a * mu)

    return denoise


def gaussian_start(rng: np.random.Generator, t: int = T_MAX, n: int = N, ac: np.ndarray = AC) -> np.ndarray:
    """Exact sample of the marginal ``x_t``."""
    ab = np.float32(ac[t])
    z = rng.standard_normal((n, MU.shape[1], 1), dtype=np.float32)
    return (np.sqrt(ab) * MU + np.sqrt(ab * SD**2 + 1 - ab) * z).astype(np.float32)


def _run(name: str, steps: int, seed: int = 0, schedule: NoiseSchedule = SCHED) -> np.ndarray:
    ac = schedule.alphas_cumprod
    rng = np.random.default_rng(seed)
    x = gaussian_start(rng, ac=ac)
    ts = timesteps(steps, schedule.num_train_steps - 1)
    assert len(ts) == steps
    return run_sampler(name, gaussian_denoiser(ac=ac), x, ts, schedule, rng)


def _stats_ok(y: np.ndarray, mean_tol: float = 0.02, std_tol: float = 0.03) -> None:
    assert y.dtype == np.float32 and y.shape == (N, MU.shape[1], 1)
    assert np.all(np.isfinite(y))
    mean_err = np.abs(y.mean(axis=0) - MU[0]).max()
    std_err = np.abs(y.std(axis=0) - SD[0]).max()
    assert mean_err < mean_tol, f"mean off by {mean_err:.4f}"
    assert std_err < std_tol, f"std off by {std_err:.4f}"


@pytest.fixture(scope="module")
def ddpm_samples() -> np.ndarray:
    return _run("ddpm", 1000)


# --- full loops ---------------------------------------------------------------------------------


def test_ddim_50_recovers_gaussian():
    _stats_ok(_run("ddim", 50))


def test_dpmpp_20_recovers_gaussian():
    _stats_ok(_run("dpmpp", 20))


def test_dpmpp_20_recovers_gaussian_linear_schedule():
    # The last of 20 steps jumps from t ~= 50 straight to the x0 estimate. Under the linear
    # schedule alpha_bar(50) ~= 0.97, and the posterior mean there shrinks s = 0.4 to ~0.366,
    # so the std tolerance is wider here than under the (default) cosine schedule.
    _stats_ok(_run("dpmpp", 20, schedule=NoiseSchedule("linear")), std_tol=0.045)


def test_ddpm_1000_recovers_gaussian(ddpm_samples):
    _stats_ok(ddpm_samples)


def test_ddim_many_steps_matches_ddpm(ddpm_samples):
    y = _run("ddim", 1000, seed=1)
    _stats_ok(y, mean_tol=0.02, std_tol=0.01)  # fine steps: discretisation error nearly gone
    assert np.abs(y.mean(axis=0) - ddpm_samples.mean(axis=0)).max() < 0.02
    assert np.abs(y.std(axis=0) - ddpm_samples.std(axis=0)).max() < 0.02


def test_too_few_steps_is_visibly_worse():
    """The statistics check has teeth: 3 DDIM steps miss the std by far more than 0.03."""
    y = _run("ddim", 3)
    assert np.abs(y.std(axis=0) - SD[0]).max() > 0.05


def _relative_std_error(name: str, steps: int) -> float:
    """Zero-mean data makes the deterministic samplers linear maps: push the exact std through."""
    sd = np.array([0.5, 1.0, 2.0]).reshape(1, 3, 1)
    den = gaussian_denoiser(mu=np.zeros_like(sd), sd=sd)
    x_std = np.sqrt(AC[T_MAX] * sd**2 + 1 - AC[T_MAX])
    y = run_sampler(name, den, x_std, timesteps(steps, T_MAX), SCHED, np.random.default_rng(0))
    return float((np.abs(y - sd) / sd).max())


def test_ddim_converges_first_order():
    e10, e50, e250 = (_relative_std_error("ddim", n) for n in (10, 50, 250))
    assert e10 > e50 > e250
    assert 3.0 < e50 / e250 < 8.0  # ~5x fewer error for 5x the steps: first order
    assert e250 < 0.01


def test_dpmpp_converges_second_order():
    """DPM-Solver++(2M) must beat first order: 5x the steps cuts the error by well over 5x."""
    e10, e50, e250 = (_relative_std_error("dpmpp", n) for n in (10, 50, 250))
    assert e10 > e50 > e250
    assert e50 / e250 > 12.0
    assert e250 < 1e-3
    assert e50 < _relative_std_error("ddim", 50) / 3  # and it is far better than DDIM per step


def test_two_mode_mixture():
    """x0 ~ 0.5 N(-2, 0.3^2) + 0.5 N(2, 0.3^2): both modes kept, in the right places."""
    m, s = 2.0, 0.3

    def denoise(x, t):
        ab = AC[t]
        a, v = np.sqrt(ab), ab * s**2 + 1 - ab
        logit = ((x + a * m) ** 2 - (x - a * m) ** 2) / (2 * v)  # log p(+|x) - log p(-|x)
        r = 1 / (1 + np.exp(-np.clip(logit, -50, 50)))
        mean_pos = m + a * s**2 / v * (x - a * m)
        mean_neg = -m + a * s**2 / v * (x + a * m)
        return (r * mean_pos + (1 - r) * mean_neg).astype(np.float32)

    for name, steps in (("ddim", 50), ("dpmpp", 20)):
        rng = np.random.default_rng(0)
        comp = np.where(rng.random((N, 1, 1)) < 0.5, m, -m)
        ab = AC[T_MAX]
        x = (np.sqrt(ab) * comp + np.sqrt(ab * s**2 + 1 - ab) * rng.standard_normal((N, 1, 1))).astype(np.float32)
        y = run_sampler(name, denoise, x, timesteps(steps, T_MAX), SCHED, rng).ravel()
        pos, neg = y[y > 0], y[y < 0]
        assert len(pos) / N == pytest.approx(0.5, abs=0.02)
        assert pos.mean() == pytest.approx(m, abs=0.05) and neg.mean() == pytest.approx(-m, abs=0.05)
        assert pos.std() == pytest.approx(s, abs=0.05) and neg.std() == pytest.approx(s, abs=0.05)
        assert np.mean(np.abs(y) < 1.0) < 0.01  # nothing stranded between the modes


# --- determinism and plumbing ------------------------------------------------------------------


def test_ddpm_same_seed_same_output_different_seed_differs():
    den = gaussian_denoiser()
    ts = timesteps(20, 500)
    x = gaussian_start(np.random.default_rng(9), t=500, n=64)
    a = sample_ddpm(den, x, ts, SCHED, np.random.default_rng(1))
    b = sample_ddpm(den, x, ts, SCHED, np.random.default_rng(1))
    c = sample_ddpm(den, x, ts, SCHED, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_deterministic_samplers_ignore_rng():
    den = gaussian_denoiser()
    ts = timesteps(10, 700)
    x = gaussian_start(np.random.default_rng(3), t=700, n=64)
    for name in ("ddim", "dpmpp"):
        a = run_sampler(name, den, x, ts, SCHED, np.random.default_rng(0))
        b = run_sampler(name, den, x, ts, SCHED, np.random.default_rng(123))
        np.testing.assert_array_equal(a, b)


def test_sampler_does_not_modify_input():
    den = gaussian_denoiser()
    x = gaussian_start(np.random.default_rng(3), t=300, n=16)
    x_copy = x.copy()
    for name in SAMPLERS:
        run_sampler(name, den, x, timesteps(5, 300), SCHED, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x_copy)


def test_callback_sees_every_step():
    den = gaussian_denoiser()
    ts = timesteps(7, 600)
    x = gaussian_start(np.random.default_rng(0), t=600, n=8)
    runs = {
        "ddim": lambda cb: sample_ddim(den, x, ts, SCHED, callback=cb),
        "dpmpp": lambda cb: sample_dpmpp_2m(den, x, ts, SCHED, callback=cb),
        "ddpm": lambda cb: sample_ddpm(den, x, ts, SCHED, np.random.default_rng(0), callback=cb),
    }
    for name, fn in runs.items():
        seen: list = []
        fn(lambda i, t, x0, seen=seen: seen.append((i, t, x0.shape)))
        assert seen == [(i, int(t), x.shape) for i, t in enumerate(ts)], name


def test_ddim_eta_needs_rng_and_unknown_sampler():
    den = gaussian_denoiser()
    x = gaussian_start(np.random.default_rng(0), t=400, n=4)
    with pytest.raises(ValueError):
        sample_ddim(den, x, timesteps(5, 400), SCHED, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler("euler", den, x, timesteps(5, 400), SCHED, np.random.default_rng(0))


def test_single_step_returns_denoiser_output():
    den = gaussian_denoiser()
    x = gaussian_start(np.random.default_rng(0), t=250, n=32)
    for name in SAMPLERS:
        y = run_sampler(name, den, x, timesteps(1, 250), SCHED, np.random.default_rng(0))
        np.testing.assert_allclose(y, den(x, 250), atol=1e-5)


# --- timesteps, schedules, conversions -----------------------------------------------------------


@pytest.mark.parametrize("t_start", [0, 1, 2, 7, 10, 99, 300, 999])
@pytest.mark.parametrize("num_steps", [1, 2, 3, 8, 20, 50, 1000, 5000])
def test_timesteps_properties(t_start, num_steps):
    ts = timesteps(num_steps, t_start)
    assert ts.dtype.kind == "i"
    assert ts[0] == t_start
    assert len(ts) == min(num_steps, t_start + 1)
    assert len(np.unique(ts)) == len(ts)
    assert np.all(np.diff(ts) < 0)  # strictly descending
    assert ts[-1] >= 0
    if num_steps >= t_start + 1:
        np.testing.assert_array_equal(ts, np.arange(t_start, -1, -1))  # every timestep


def test_timesteps_evenly_spaced():
    ts = timesteps(10, 999)
    gaps = -np.diff(ts)
    assert gaps.max() - gaps.min() <= 1
    assert ts[-1] == pytest.approx(100, abs=1)


def test_start_timestep():
    assert start_timestep(1.0, SCHED) == T_MAX
    assert start_timestep(0.0, SCHED) == 0
    assert start_timestep(1.7, SCHED) == T_MAX  # clipped
    assert start_timestep(0.3, SCHED) == round(0.3 * T_MAX)
    vals = [start_timestep(s, SCHED) for s in np.linspace(0, 1, 21)]
    assert vals == sorted(vals)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_shape(kind):
    s = NoiseSchedule(kind)
    ac = s.alphas_cumprod
    assert ac.shape == (1000,)
    assert np.all(np.diff(ac) < 0)
    assert 0 < ac[-1] < 1e-3 and ac[0] > 0.999
    assert NoiseSchedule.from_dict(s.to_dict()) == s


def test_linear_schedule_known_value():
    # Ho et al. 2020: beta 1e-4 .. 0.02 over 1000 steps ends at alpha_bar ~= 4.04e-5
    assert NoiseSchedule("linear").alphas_cumprod[-1] == pytest.approx(4.036e-5, rel=1e-3)
    with pytest.raises(ValueError):
        _ = NoiseSchedule("quadratic").betas


@pytest.mark.parametrize("ab", [0.999, 0.5, 0.02])
def test_x0_from_prediction_consistency(ab):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 5, 7))
    noise = rng.standard_normal((2, 5, 7))
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    x = a * x0 + s * noise
    v = a * noise - s * x0
    np.testing.assert_allclose(x0_from_prediction(noise, x, ab, "eps"), x0, atol=1e-9)
    np.testing.assert_allclose(x0_from_prediction(v, x, ab, "v"), x0, atol=1e-9)
    np.testing.assert_allclose(x0_from_prediction(x0, x, ab, "x0"), x0, atol=0)
    with pytest.raises(ValueError):
        x0_from_prediction(x0, x, ab, "score")


def test_add_noise_statistics():
    x0 = np.full((20000,), 2.0, np.float32)
    t = 400
    xt = add_noise(x0, t, SCHED, np.random.default_rng(0))
    ab = AC[t]
    assert xt.dtype == np.float32
    assert xt.mean() == pytest.approx(2.0 * np.sqrt(ab), abs=0.02)
    assert xt.std() == pytest.approx(np.sqrt(1 - ab), abs=0.02)
