"""The calibrated edit: amount in dB, its region (speech, in band), rendering at the input rate."""

from dataclasses import replace

import numpy as np
import pytest

from emort.runtime.audio import limit_peaks, to_float, to_mono
from emort.runtime.editing import EditOptions, calibrate, smooth_edit
from emort.runtime.errors import EmortError, LabelError
from emort.runtime.frontend import (
    NATS_TO_DB,
    active_frames,
    apply_band_gain,
    band_centres_hz,
    edit_region,
    in_band,
    log_mel,
)
from emort.runtime.settings import DEFAULT_MEL as S
from emort.runtime.settings import format_emotion_mix, parse_emotion_mix


def _speechlike(sr: int, seconds: float = 1.5, pause: float = 0.4, seed: int = 0) -> np.ndarray:
    """Noise bursts shaped like speech (energy to ~sr/2) with a quiet pause in front."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = rng.standard_normal(n) * 0.1
    x[: int(pause * sr)] *= 1e-3  # -60 dB: a pause with a noise floor
    return x.astype(np.float32)


# --- calibrate ---------------------------------------------------------------------------------


def test_calibrate_reaches_the_amount_and_respects_the_cap():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((80, 50))
    region = np.ones_like(d)
    for amount in (0.5, 2.0, 5.0):
        k = calibrate(d, region, amount, max_band_db=12.0)
        got = np.mean(np.minimum(np.abs(k * d), 12.0))
        assert got == pytest.approx(amount, rel=1e-6)
    # a cap below the request: the edit saturates at the cap, never beyond
    k = calibrate(d, region, 5.0, max_band_db=3.0, max_scale=1e3)
    assert np.minimum(np.abs(k * d), 3.0).max() <= 3.0 + 1e-9
    assert calibrate(d, region, 0.0, 12.0) == 0.0
    assert calibrate(np.zeros_like(d), region, 2.0, 12.0) == 0.0


def test_calibrate_measures_only_the_region():
    d = np.ones((4, 10))
    d[:, :5] = 10.0  # a huge edit in what is a pause
    region = np.zeros_like(d)
    region[:, 5:] = 1.0
    k = calibrate(d, region, 2.0, 40.0)
    assert k == pytest.approx(2.0)  # set by the speech frames alone


def test_smooth_edit_whole_clip_is_the_region_weighted_mean():
    d = np.tile(np.arange(6.0), (3, 1))
    w = np.zeros_like(d)
    w[:, 2:4] = 1.0
    out = smooth_edit(d, w, np.inf)
    np.testing.assert_allclose(out, 2.5)
    np.testing.assert_array_equal(smooth_edit(d, w, 0), d)
    part = smooth_edit(d, np.ones_like(d), 3)
    assert part.shape == d.shape and np.abs(np.diff(part, axis=1)).max() <= 1.0 + 1e-9


# --- region ------------------------------------------------------------------------------------


def test_pause_and_out_of_band_are_outside_the_region():
    sr = 8000  # telephone: nothing above 4 kHz
    x = _speechlike(sr)
    from emort.runtime.audio import resample

    mel = log_mel(resample(x, sr, S.sample_rate), S)
    act = active_frames(mel)
    assert not act[:10].any() and act[-10:].all()  # the -60 dB pause is not speech
    band = in_band(mel, S, sr)
    centres = band_centres_hz(S)
    assert band[centres < 3500].all() and not band[centres > 3900].any()
    region = edit_region(mel, S, sr)
    assert region[:, :10].max() == 0.0 and region[~band].max() == 0.0
    assert region[band][:, -10:].min() == 1.0


def test_band_limited_audio_at_a_high_rate_is_detected_by_level():
    from scipy.signal import butter, sosfiltfilt

    sr = 48000
    x = _speechlike(sr, pause=0.0)
    x = sosfiltfilt(butter(10, 3400, fs=sr, output="sos"), x).astype(np.float32)  # telephone band at 48 kHz
    from emort.runtime.audio import resample

    mel = log_mel(resample(x, sr, S.sample_rate), S)
    band = in_band(mel, S, sr)
    assert not band[band_centres_hz(S) > 6000].any()


# --- rendering at the input rate -----------------------------------------------------------------


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_zero_gain_is_transparent_and_rate_and_length_are_kept(sr):
    x = _speechlike(sr, seconds=0.9)
    frames = 1 + int(len(x) * S.sample_rate / sr) // S.hop_length
    y = apply_band_gain(x, sr, np.zeros((S.n_mels, frames), np.float32), S)
    np.testing.assert_array_equal(y, x)
    tiny = apply_band_gain(x, sr, np.full((S.n_mels, frames), 1e-12, np.float32), S)
    assert tiny.shape == x.shape and np.abs(tiny - x).max() < 1e-5  # STFT round trip


@pytest.mark.parametrize("sr", [16000, 48000])
def test_uniform_gain_scales_by_that_many_db(sr):
    x = _speechlike(sr, seconds=1.0, pause=0.0)
    frames = 1 + int(len(x) * S.sample_rate / sr) // S.hop_length
    g = np.full((S.n_mels, frames), 6.0 / NATS_TO_DB, np.float32)  # +6 dB everywhere
    y = apply_band_gain(x, sr, g, S)
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    ratio_db = 20 * np.log10(np.std(y[mid]) / np.std(x[mid]))
    assert ratio_db == pytest.approx(6.0, abs=0.1)


def test_band_gain_acts_on_its_frequencies_only():
    sr = 48000
    t = np.arange(sr) / sr
    x = (0.2 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    frames = 1 + int(len(x) * S.sample_rate / sr) // S.hop_length
    centres = band_centres_hz(S)
    g = np.zeros((S.n_mels, frames), np.float32)
    g[centres > 1500] = 6.0 / NATS_TO_DB  # raise the upper bands only
    y = apply_band_gain(x, sr, g, S)
    spec = lambda v: np.abs(np.fft.rfft(v[sr // 4 : 3 * sr // 4]))  # noqa: E731
    f = np.fft.rfftfreq(sr // 2, 1 / sr)
    lo, hi = np.argmin(np.abs(f - 300)), np.argmin(np.abs(f - 3000))
    assert 20 * np.log10(spec(y)[lo] / spec(x)[lo]) == pytest.approx(0.0, abs=0.2)
    assert 20 * np.log10(spec(y)[hi] / spec(x)[hi]) == pytest.approx(6.0, abs=0.3)


def _band_limited_at(sr_out: int, seed: int = 0) -> np.ndarray:
    """Speech-like noise recorded at 16 kHz (nothing above 8 kHz), stored at ``sr_out`` with a -70 dBFS noise floor."""
    from emort.runtime.audio import resample

    y = resample(_speechlike(16000, seed=seed), 16000, sr_out)
    return (y + 10 ** (-70 / 20) * np.random.default_rng(seed + 1).standard_normal(len(y))).astype(np.float32)


def _above_fmax_db(x: np.ndarray, y: np.ndarray, sr: int) -> float:
    """Power change of ``y`` against ``x`` above 10 kHz, dB (the band holds only a -70 dBFS floor
    there, so the STFT window's leakage of the gained speech below 8 kHz shows as a few tenths)."""
    fx, fy = (np.abs(np.fft.rfft(v.astype(np.float64))) ** 2 for v in (x, y))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(10 * np.log10(fy[f > 10000].sum() / fx[f > 10000].sum()))


def test_band_limited_audio_at_a_high_rate_gets_no_gain_above_fmax():
    """A 16 kHz recording stored at 48 kHz has only noise above 8 kHz: the top band's gain is not
    carried there (it lifted the noise with the speech); full-band audio keeps it."""
    from emort.runtime.frontend import high_band_in_band

    sr = 48000
    lim, full = _band_limited_at(sr), _speechlike(sr)
    assert not high_band_in_band(lim, sr, S) and high_band_in_band(full, sr, S)
    assert high_band_in_band(_speechlike(16000), 16000, S)  # nothing above fmax to judge
    frames = 1 + len(lim) * S.sample_rate // sr // S.hop_length
    g = np.full((S.n_mels, frames), 6.0 / NATS_TO_DB, np.float32)
    assert abs(_above_fmax_db(lim, apply_band_gain(lim, sr, g, S, hold_top=False), sr)) < 0.5
    assert _above_fmax_db(lim, apply_band_gain(lim, sr, g, S), sr) > 5.0  # held: the noise rose with the gain
    assert _above_fmax_db(full, apply_band_gain(full, sr, g, S, hold_top=True), sr) > 5.0


def test_the_enhancer_leaves_the_noise_above_a_band_limited_input_alone():
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load(device="cpu")
    lim = _band_limited_at(48000, seed=3)
    out = enh.enhance(lim, 48000, emotion="angry", amount_db=4.0, steps=1)
    assert out.change_db > 3.9 and abs(_above_fmax_db(lim, out.wav, 48000)) < 0.5


def test_channels_get_the_same_gain():
    sr = 16000
    x = np.stack([_speechlike(sr, seed=1), 0.5 * _speechlike(sr, seed=2)], axis=1)
    frames = 1 + len(x) * S.sample_rate // sr // S.hop_length
    g = np.full((S.n_mels, frames), 3.0 / NATS_TO_DB, np.float32)
    y = apply_band_gain(x, sr, g, S)
    assert y.shape == x.shape
    mono = apply_band_gain(x[:, 1], sr, g, S)
    np.testing.assert_allclose(y[:, 1], mono, atol=1e-6)


# --- limiter ------------------------------------------------------------------------------------


def test_limiter_keeps_level_away_from_the_peak_and_never_clips():
    sr = 16000
    x = np.full(10 * sr, 0.3, np.float32) * np.sin(np.linspace(0, 2000 * np.pi, 10 * sr)).astype(np.float32)
    x[5 * sr] = 1.8  # one overshoot in a 10 s file
    y = limit_peaks(x, sr)
    assert np.abs(y).max() <= 0.999
    far = slice(0, 4 * sr)
    np.testing.assert_array_equal(y[far], x[far])  # the rest keeps its level (a global scale would cost -5 dB)
    np.testing.assert_array_equal(limit_peaks(x * 0.5, sr), x * 0.5)


# --- PCM dtypes and mixes ------------------------------------------------------------------------


def test_unsigned_and_signed_pcm_are_scaled_around_zero():
    u8 = np.array([128, 255, 0, 128], np.uint8)  # 8-bit WAV: offset binary, 128 = silence
    np.testing.assert_allclose(to_float(u8), [0.0, 127 / 128, -1.0, 0.0], atol=1e-7)
    i16 = np.array([0, 16384, -32768], np.int16)
    np.testing.assert_allclose(to_float(i16), [0.0, 0.5, -1.0])
    i32 = np.array([0, 2**30], np.int32)
    np.testing.assert_allclose(to_float(i32), [0.0, 0.5])
    from emort.runtime.errors import AudioFormatError

    with pytest.raises(AudioFormatError):
        to_mono(np.zeros((2, 1000), np.float32))  # channels first: refused with a clear message
    with pytest.raises(AudioFormatError):
        to_float(np.array(["a", "b"]))


def test_emotion_mix_parsing():
    assert parse_emotion_mix("anger") == {"angry": 1.0}
    mix = parse_emotion_mix("angry:0.7, sadness:0.3")
    assert mix == pytest.approx({"angry": 0.7, "sad": 0.3})
    assert format_emotion_mix(mix) == "sad:0.30,angry:0.70"
    assert parse_emotion_mix("angry:2,sad:1")["angry"] == pytest.approx(2 / 3)
    for bad in ("bored", "angry:x", "angry:-1", "angry,angry", "angry:0", "", None, 3, ["angry"], {"angry": "x"},
                {"angry": ""}, {"angry,sad": 1}, {"angry": True}, {}, "angry:", "angry:0.7,sad:0", {"angry": 0.7, "sad": 0.0},
                "angry:1e308,sad:1e308"):
        with pytest.raises(LabelError):
            parse_emotion_mix(bad)
    assert parse_emotion_mix({"angry": 0.7, "sad": 0.3}) == pytest.approx({"angry": 0.7, "sad": 0.3})  # the mix as a dict
    assert list(parse_emotion_mix("angry:1,sad:1")) == ["sad", "angry"]  # label order: one mix, one name
    with pytest.raises(LabelError, match="sad has weight 0; leave it out"):
        parse_emotion_mix("angry:0.7,sad:0")
    with pytest.raises(LabelError, match="missing after ':'"):
        parse_emotion_mix("angry:")
    with pytest.raises(LabelError, match="too large to add up"):
        parse_emotion_mix("angry:1e308,sad:1e308")


def test_enhance_refuses_a_sample_rate_that_is_not_a_whole_positive_number_at_once():
    """A NaN rate reached the resampler, which never returned; '16000' and inf raised plain
    Python errors or blamed the clip's length; 16000.5 was taken as 16000."""
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load(device="cpu")
    wav = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    for bad in (float("nan"), float("inf"), "16000", 16000.5, True, 0, -1, None):
        with pytest.raises(EmortError, match="sample rate"):
            enh.enhance(wav, bad, emotion="angry")
        with pytest.raises(EmortError, match="sample rate"):
            enh.enhance(wav, bad, emotion="angry", prosody=True)
    assert enh.enhance(wav, 16000.0, emotion="angry", amount_db=0.0).sample_rate == 16000


def test_options_validate_amount_and_cap():
    EditOptions(amount_db=3.0).validate()
    assert EditOptions(amount_db=0.0).is_identity and EditOptions(strength=0.0).is_identity
    assert not EditOptions(amount_db=1.0).is_identity
    for bad in (dict(amount_db=-1.0), dict(amount_db=25.0), dict(max_band_db=0.0), dict(amount_db=None, guidance=None),
                dict(smooth_s=-1.0)):
        with pytest.raises(EmortError):
            EditOptions(**bad).validate()
    old = EditOptions.from_dict({"strength": 0.5, "guidance": 25.0, "steps": 8, "sampler": "direction"})  # a 0.4 manifest
    assert old.method == "direction" and old.guidance == 25.0 and not old.calibrated


def test_calibrate_is_the_exact_root_of_the_capped_mean_change():
    """Newton on the piecewise-linear mean change gives the multiplier that bisection converges
    to (60 halvings), on random edits, regions, amounts and caps, including cases where
    max_scale falls short."""
    rng = np.random.default_rng(3)

    def bisect(d, region, amount, cap, max_scale=100.0):
        a, w = np.abs(d), region
        f = lambda k: float((np.minimum(a * k, cap) * w).sum() / w.sum())  # noqa: E731
        if f(max_scale) <= amount:
            return max_scale
        lo, hi = 0.0, max_scale
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) < amount else (lo, mid)
        return 0.5 * (lo + hi)

    for _ in range(200):
        t = int(rng.integers(5, 300))
        d = rng.standard_normal((40, t)) * rng.uniform(0.001, 5)
        region = (rng.random((40, t)) < rng.uniform(0.05, 1)) * rng.random((40, t))
        amount, cap = rng.uniform(0.05, 8), rng.uniform(0.3, 12)
        k = calibrate(d, region, amount, cap)
        assert k == pytest.approx(bisect(d, region, amount, cap), rel=1e-9)


def test_calibrate_edge_cases():
    """A tiny amount, a cap below the amount (unreachable: max_scale), a region of zeros where the
    edit is, and a non-finite edit (nothing applied) each give a defined multiplier."""
    d = np.ones((4, 10))
    region = np.ones((4, 10))
    assert calibrate(d, region, 1e-300, 12.0) == pytest.approx(1e-300, rel=1e-9)
    assert calibrate(d, region, 5.0, 3.0) == 100.0  # every cell capped at 3 dB < 5 dB: the largest multiplier
    edge = np.zeros((4, 10))
    edge[:, :5] = 1
    assert calibrate(d * (1 - edge), edge, 1.0, 12.0) == 0.0  # the edit only outside the region
    bad = d.copy()
    bad[0, 0] = np.nan
    assert calibrate(bad, region, 1.0, 12.0) == 0.0


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 10])
def test_moving_mean_is_scipys_uniform_filter_in_numpy(size):
    """The runtime installs no scipy: smooth_edit's moving average is numpy's, equal to scipy's."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from emort.runtime.editing import moving_mean

    a = np.random.default_rng(size).standard_normal((5, 23))
    np.testing.assert_allclose(moving_mean(a, size), ndimage.uniform_filter1d(a, size, axis=-1, mode="nearest"), atol=1e-12)


def test_smooth_edit_needs_no_scipy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy would now fail
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    d = np.random.default_rng(0).standard_normal((4, 30))
    out = smooth_edit(d, np.ones_like(d), 5)
    assert out.shape == d.shape and np.isfinite(out).all()


def test_keep_channels_keeps_them_with_the_gain_vocoder_and_griffinlim_refuses_it():
    """The gain vocoder keeps a stereo input's channels; Griffin-Lim rebuilds one mono signal,
    so keep_channels with it is refused rather than silently returning mono."""
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load(device="cpu")
    sr = 16000
    x = np.stack([_speechlike(sr, seed=1), 0.5 * _speechlike(sr, seed=2)], axis=1)
    out = enh.enhance(x, sr, emotion="sad", keep_channels=True, steps=1)
    assert out.wav.shape == x.shape
    with pytest.raises(EmortError, match="griffinlim vocoder renders mono only"):
        enh.enhance(x, sr, emotion="sad", keep_channels=True, vocoder="griffinlim", steps=1)
    plan = enh.plan(x, sr, "sad", enh.options(steps=1))
    with pytest.raises(EmortError, match="mono only"):
        enh.render(plan, enh.options(steps=1), vocoder="griffinlim", keep_channels=True)


def test_smoothed_edits_run_without_scipy(monkeypatch):
    """smooth_s and smooth_bands (Python API options) on a runtime-only install, where scipy is absent."""
    import sys

    from emort.runtime.enhancer import Enhancer

    ndimage = pytest.importorskip("scipy.ndimage")
    enh = Enhancer.load(device="cpu")
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    out = enh.enhance(wav, sr, emotion="angry", smooth_s=0.2, smooth_bands=3)
    assert np.isfinite(out.wav).all() and out.change_db > 0
    monkeypatch.undo()
    from emort.runtime.editing import moving_mean

    raw = np.random.default_rng(1).standard_normal((80, 40))
    np.testing.assert_allclose(moving_mean(raw.T, 3).T, ndimage.uniform_filter1d(raw, 3, axis=0, mode="nearest"), atol=1e-12)


@pytest.mark.parametrize("sr", [16000, 48000])
def test_band_gain_groups_do_not_change_the_output(sr, monkeypatch):
    """apply_band_gain works through its STFT a group of slices at a time (bounded memory; smaller
    groups are faster): the group size changes nothing but float rounding."""
    import emort.runtime.frontend as F

    assert F.band_gain_group(1024) == 64 and F.band_gain_group(2048) == 32 and F.band_gain_group(64) == 128
    rng = np.random.default_rng(sr)
    x = (0.1 * rng.standard_normal(int(1.3 * sr))).astype(np.float32)
    g = (0.3 * rng.standard_normal((S.n_mels, F.num_frames(int(1.3 * S.sample_rate), S)))).astype(np.float32)
    y = apply_band_gain(x, sr, g, S)
    monkeypatch.setattr(F, "band_gain_group", lambda window: 7)  # many groups, boundaries everywhere
    np.testing.assert_allclose(apply_band_gain(x, sr, g, S), y, atol=1e-6)


def test_edit_parts_split_the_edit_into_a_fixed_offset_and_what_changes():
    """``dynamic`` has no region-weighted offset left in any band; ``level`` is one value per frame,
    the frame's region-weighted mean; ``full`` is the edit; a band or frame outside the region gets 0."""
    from emort.runtime.editing import EDIT_PARTS, edit_part

    rng = np.random.default_rng(3)
    d = rng.standard_normal((6, 20)) + np.arange(6)[:, None]  # a fixed offset per band, and more
    w = rng.uniform(0.0, 1.0, d.shape)
    w[5] = 0.0  # a band outside the region
    w[:, 0] = 0.0  # a frame outside the region
    assert EDIT_PARTS == ("full", "dynamic", "level")
    np.testing.assert_array_equal(edit_part(d, w, "full"), d)
    dyn = edit_part(d, w, "dynamic")
    np.testing.assert_allclose((dyn * w).sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(dyn[:5] - d[:5], (dyn[:5] - d[:5])[:, :1].repeat(20, axis=1))  # one offset per band
    assert (dyn[5] == 0).all()  # no weight: no edit (smoothing over bands would spread its offset)
    lev = edit_part(d, w, "level")
    np.testing.assert_allclose(lev[:, 1:], np.broadcast_to((d * w).sum(0)[1:] / w.sum(0)[1:], (6, 19)))
    assert (lev[:, 0] == 0).all() and lev.flags.writeable
    with pytest.raises(ValueError, match="unknown edit part"):
        edit_part(d, w, "tilt")


def test_part_is_validated_and_changes_only_what_it_says():
    from emort.runtime.enhancer import Enhancer

    with pytest.raises(EmortError, match="part must be one of"):
        EditOptions(part="tilt").validate()
    with pytest.raises(EmortError, match="leaves no edit"):
        EditOptions(part="dynamic", smooth_s=float("inf")).validate()
    EditOptions(part="level", smooth_s=float("inf")).validate()  # one level per clip: a plain gain change, allowed
    enh = Enhancer.load(device="cpu")
    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    opts = enh.options(amount_db=2.0)
    plan = enh.plan(wav, sr, "angry", opts)
    gains = {}
    for part in ("full", "dynamic", "level"):
        _, gain, change, _ = enh.render(plan, replace(opts, part=part))
        assert change == pytest.approx(2.0, abs=0.01)  # the amount is reached whatever the part
        gains[part] = np.asarray(gain, np.float64)
    on = plan.region > 0
    lev = gains["level"] / np.where(on, plan.region, 1.0)  # the region weights each cell of the gain
    cols = [lev[on[:, i], i] for i in range(lev.shape[1]) if on[:, i].any()]
    assert all(np.ptp(c) < 1e-5 for c in cols)  # one level per frame
    assert not np.allclose(gains["dynamic"], gains["full"]) and not np.allclose(gains["level"], gains["full"])
    assert EditOptions(part="dynamic").settings_dict()["part"] == "dynamic"
