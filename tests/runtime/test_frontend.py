"""emort.runtime.frontend (numpy) against emort.training.features / librosa, plus its inverses."""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime import frontend
from emort.runtime.audio import read_audio
from emort.runtime.settings import DEFAULT_MEL, MelSettings

librosa = pytest.importorskip("librosa", reason="librosa is in the [train] extra; the parity tests need it")

S = DEFAULT_MEL


@pytest.fixture(scope="module")
def real_clips(emodb_files, ravdess_files) -> list[np.ndarray]:
    """Real clips from both corpora at the model rate (stereo RAVDESS clip included)."""
    return [read_audio(p, S.sample_rate).samples for p in [*emodb_files, *ravdess_files]]


@pytest.fixture(scope="module")
def clip(real_clips) -> np.ndarray:
    """One real clip, cut to 1.5 s to keep the iterative tests quick."""
    return real_clips[0][: int(1.5 * S.sample_rate)]


def _rng_signal(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --- parity with librosa --------------------------------------------------------------------


def test_log_mel_matches_librosa_on_real_clips(real_clips):
    from emort.training.features import log_mel_librosa

    assert len(real_clips) >= 4
    for wav in real_clips:
        ours = frontend.log_mel(wav, S)
        ref = log_mel_librosa(wav, S)
        assert ours.dtype == np.float32
        assert ours.shape == ref.shape == (S.n_mels, frontend.num_frames(len(wav), S))
        assert float(np.max(np.abs(ours - ref))) <= 1e-4


def test_frame_count_matches_librosa():
    for n in (1024, 1025, 5000, 22050, 22050 + 255, 22050 + 256):
        wav = _rng_signal(n, seed=n)
        ref = librosa.stft(wav.astype(np.float64), n_fft=S.n_fft, hop_length=S.hop_length, center=True, pad_mode="constant")
        assert frontend.num_frames(n, S) == ref.shape[1]
        assert frontend.stft(wav, S).shape == ref.shape


def test_stft_matches_librosa_stft():
    wav = _rng_signal(7000, seed=3).astype(np.float64)
    ref = librosa.stft(wav, n_fft=S.n_fft, hop_length=S.hop_length, win_length=S.win_length, window="hann", center=True, pad_mode="constant")
    np.testing.assert_allclose(frontend.stft(wav, S), ref, atol=1e-9)


def test_log_mel_matches_librosa_other_settings():
    """Non-default settings (16 kHz, short window inside a longer FFT, power mel, fmin>0)."""
    from emort.training.features import log_mel_librosa

    s = MelSettings(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, fmin_hz=50.0, fmax_hz=7600.0, power=2.0)
    wav = _rng_signal(9000, seed=7)
    ours = frontend.log_mel(wav, s)
    ref = log_mel_librosa(wav, s)
    assert ours.shape == ref.shape
    assert float(np.max(np.abs(ours - ref))) <= 1e-4


@pytest.mark.parametrize(
    "s",
    [
        DEFAULT_MEL,
        MelSettings(fmax_hz=11025.0),
        MelSettings(sample_rate=16000, n_fft=512, win_length=512, hop_length=160, n_mels=40, fmin_hz=50.0, fmax_hz=7600.0),
    ],
)
def test_mel_filterbank_equals_librosa(s):
    ref = librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin_hz, fmax=s.fmax_hz, htk=False, norm="slaney")
    fb = frontend.mel_filterbank(s)
    assert fb.shape == (s.n_mels, s.n_fft // 2 + 1)
    np.testing.assert_allclose(fb, ref, atol=1e-6, rtol=0)


# --- inverses ---------------------------------------------------------------------------------


def test_istft_inverts_stft(clip):
    for wav in (clip, _rng_signal(5000 + 37, seed=1)):
        y = frontend.istft(frontend.stft(wav, S), S, length=len(wav))
        assert y.shape == wav.shape
        assert float(np.max(np.abs(y - wav.astype(np.float64)))) < 1e-6


def test_istft_length_handling():
    wav = _rng_signal(4000, seed=2)
    spec = frontend.stft(wav, S)
    longer = frontend.istft(spec, S, length=4500)
    assert longer.shape == (4500,)
    np.testing.assert_allclose(longer[:4000], wav, atol=1e-6)
    assert float(np.max(np.abs(longer[4000:]))) < 1e-6  # beyond the signal: (near) silence


def test_apply_mel_gain_identity_is_transparent(clip):
    m = frontend.log_mel(clip, S)
    y = frontend.apply_mel_gain(clip, m, m, S)
    assert y.dtype == np.float32 and y.shape == clip.shape
    assert float(np.max(np.abs(y - clip))) < 1e-5


def test_apply_mel_gain_doubles_with_log2_everywhere(clip):
    m = frontend.log_mel(clip, S)
    y = frontend.apply_mel_gain(clip, m, m + np.log(2.0), S)
    rms = lambda v: float(np.sqrt(np.mean(np.asarray(v, np.float64) ** 2)))  # noqa: E731
    assert rms(y) / rms(clip) == pytest.approx(2.0, rel=0.02)
    np.testing.assert_allclose(y, 2 * clip, atol=1e-4)


def test_apply_mel_gain_is_band_selective():
    """Attenuating only the bands above 4 kHz leaves a 300 Hz tone alone and cuts a 6 kHz tone."""
    sr = S.sample_rate
    t = np.arange(sr) / sr
    low = 0.2 * np.sin(2 * np.pi * 300 * t)
    high = 0.2 * np.sin(2 * np.pi * 6000 * t)
    wav = (low + high).astype(np.float32)
    m = frontend.log_mel(wav, S)
    centres = frontend._mel_to_hz(np.linspace(frontend._hz_to_mel(S.fmin_hz), frontend._hz_to_mel(S.fmax_hz), S.n_mels + 2))[1:-1]
    gain = np.where(centres > 4000, np.log(0.1), 0.0)[:, None]
    y = frontend.apply_mel_gain(wav, m, m + gain, S).astype(np.float64)
    mid = slice(sr // 10, -sr // 10)
    spec = np.abs(np.fft.rfft(y[mid]))
    spec_in = np.abs(np.fft.rfft(wav[mid].astype(np.float64)))
    freqs = np.fft.rfftfreq(len(y[mid]), 1 / sr)
    k_low, k_high = np.argmin(np.abs(freqs - 300)), np.argmin(np.abs(freqs - 6000))
    assert spec[k_low] / spec_in[k_low] == pytest.approx(1.0, abs=0.02)
    assert spec[k_high] / spec_in[k_high] == pytest.approx(0.1, abs=0.02)


def _spectral_convergence(y: np.ndarray, mag: np.ndarray) -> float:
    rebuilt = np.abs(frontend.stft(y, S))
    return float(np.linalg.norm(rebuilt - mag) / np.linalg.norm(mag))


def test_griffin_lim_true_phase_beats_random_phase(clip):
    spec = frontend.stft(clip, S)
    mag, phase = np.abs(spec), np.angle(spec)
    y_true = frontend.griffin_lim(mag, S, n_iter=8, init_phase=phase, length=len(clip))
    y_rand = frontend.griffin_lim(mag, S, n_iter=8, length=len(clip), rng=np.random.default_rng(0))
    assert y_true.dtype == np.float32 and y_true.shape == clip.shape == y_rand.shape
    sc_true, sc_rand = _spectral_convergence(y_true, mag), _spectral_convergence(y_rand, mag)
    assert sc_true < 0.05  # started from the truth, it stays there
    assert sc_true < 0.5 * sc_rand
    # and iterating helps from random phase
    y0 = frontend.griffin_lim(mag, S, n_iter=0, length=len(clip), rng=np.random.default_rng(0))
    assert sc_rand < _spectral_convergence(y0, mag)


def test_mel_to_magnitude_roundtrip_is_close_in_mel():
    wav = _rng_signal(8000, seed=5)
    m = frontend.log_mel(wav, S)
    mag = frontend.mel_to_magnitude(m, S)
    assert mag.shape == (S.n_fft // 2 + 1, m.shape[1]) and np.all(mag >= 0)
    m2 = frontend.mel_from_magnitude(mag, S)
    # the pseudo-inverse is approximate, but band energies come back close for broadband noise
    assert float(np.median(np.abs(m2 - m))) < 0.1


# --- the band-limited product ------------------------------------------------------------------


@pytest.mark.parametrize("s", [DEFAULT_MEL, MelSettings(fmax_hz=11025.0), MelSettings(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, fmax_hz=4000.0, power=2.0)])
def test_log_mel_weighs_only_the_bins_the_filters_cover(s):
    """The front-end skips the bins above fmax (their filter weights are exact zeros): the same
    values as the full filterbank product, and mel_bins is the last weighted bin + 1."""
    fb = frontend.mel_filterbank(s)
    k = frontend.mel_bins(s)
    assert fb[:, k - 1].any() and not fb[:, k:].any()
    assert k < s.n_fft // 2 + 1 or s.fmax_hz >= s.sample_rate / 2
    wav = _rng_signal(3 * s.sample_rate // 2, seed=3)
    mag = np.abs(frontend.stft(wav, s)) ** s.power
    full = np.log(np.maximum(fb @ mag, s.log_floor)).astype(np.float32)
    np.testing.assert_allclose(frontend.log_mel(wav, s), full, rtol=0, atol=1e-5)
    blocks = np.concatenate(list(frontend.log_mel_blocks([wav[:1000], wav[1000:]], s)), axis=1)
    np.testing.assert_allclose(blocks, full, rtol=0, atol=1e-5)


def test_training_log_mels_are_what_the_runtime_reads(emodb_files, ravdess_files, tmp_path, monkeypatch):
    """The training side's cached log-mel (emort.training.data.load_mel) is the runtime's signal
    path: a file with a DC offset (mixed to mono, resampled, offset removed) gives the log-mel that
    `emort score` computes of it, so the classifiers are fitted on the statistics the runtime reads.
    Before FRONTEND_VERSION 2 the training side kept the offset."""
    import soundfile as sf

    from emort.runtime.audio import model_rate_signal, prepare
    from emort.training.data import load_mel

    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    for src, stereo in ((emodb_files[0], False), (ravdess_files[0], True)):  # 16 kHz mono; 48 kHz made stereo
        w, sr = sf.read(src, dtype="float32")
        w = np.stack([w + np.float32(0.02), np.float32(0.5) * w - np.float32(0.03)], axis=1) if stereo else w + np.float32(0.02)
        f = tmp_path / f"{src.stem}.wav"
        sf.write(f, w, sr, subtype="FLOAT")
        w, sr = sf.read(f, dtype="float32")
        runtime = frontend.log_mel(model_rate_signal(prepare(w, sr, sr), sr, S.sample_rate), S)
        for _ in range(2):  # computed, then from the cache
            assert float(np.max(np.abs(load_mel(str(f), S) - runtime))) <= 1e-4

    assert w.ndim == 2 and w.shape[1] == 2  # the stereo mixdown was compared too


def test_a_damaged_or_rewritten_cache_entry_is_computed_again(emodb_files, tmp_path, monkeypatch):
    """The log-mel cache keys a file by its size and modification time in nanoseconds: a file
    rewritten within the same second is read again, and a damaged entry is recomputed."""
    import os

    import soundfile as sf

    from emort.training.data import _key, cache_dir, load_mel

    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    w, sr = sf.read(emodb_files[0], dtype="float32")
    f = tmp_path / "clip.wav"
    sf.write(f, w, sr, subtype="FLOAT")
    first = load_mel(str(f), S)
    st = os.stat(f)
    sf.write(f, w[::-1].copy(), sr, subtype="FLOAT")  # same size; the same second, in nanoseconds 1 later
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert not np.allclose(load_mel(str(f), S), first)
    entry = cache_dir() / f"{_key(str(f), S)}.npy"
    entry.write_bytes(b"not an array")
    assert load_mel(str(f), S).shape == first.shape


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_an_offset_does_not_ring_into_the_edges_of_a_resampled_clip(ravdess_files, rate):
    """A resampled clip loses its DC offset before the resampler sees it (front end 3): with the
    offset removed only afterwards, its step at the clip's ends rang into the edge frames (+0.05
    moved per-speaker scores by up to 0.44)."""
    from emort.runtime.audio import model_rate_signal, resample

    w = resample(read_audio(ravdess_files[0]).samples, 48000, rate)
    clean = model_rate_signal(w, rate, S.sample_rate)
    shifted = model_rate_signal(w + np.float32(0.05), rate, S.sample_rate)
    assert float(np.max(np.abs(shifted - clean))) < 1e-5
    assert float(np.max(np.abs(frontend.log_mel(shifted, S) - frontend.log_mel(clean, S)))) < 1e-3


def test_a_long_clip_is_resampled_in_blocks_to_the_same_values():
    """Beyond BLOCK_SAMPLES the offset is removed block by block on the way into the resampler (no
    offset-free copy of the whole input): the same samples as resampling the offset-free clip."""
    from emort.runtime.audio import BLOCK_SAMPLES, dc_offset, model_rate_signal, resample

    x = (0.1 * np.random.default_rng(1).standard_normal(BLOCK_SAMPLES + 54_321) + 0.03).astype(np.float32)
    ref = resample(x - dc_offset(x), 48000, S.sample_rate)
    ref -= dc_offset(ref)
    got = model_rate_signal(x, 48000, S.sample_rate)
    assert np.array_equal(got, ref)
    assert np.array_equal(x[:3], (0.1 * np.random.default_rng(1).standard_normal(3) + 0.03).astype(np.float32))  # input untouched
