"""emort.runtime.audio: decoding real corpora, resampling, downmix, typed errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emort.runtime import audio
from emort.runtime.audio import prepare, read_audio, write_wav_atomic
from emort.runtime.errors import (
    AudioError,
    AudioFormatError,
    CorruptAudioError,
    EmortError,
    EmptyAudioError,
    MissingAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongAudioError,
)

SR = 22050


def _expected_len(frames: int, sr_in: int, sr_out: int = SR) -> float:
    return frames * sr_out / sr_in


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


# --- real corpora ---------------------------------------------------------------------------


def _check_real(path: Path) -> None:
    info = sf.info(str(path))
    a = read_audio(path, SR)
    assert a.samples.dtype == np.float32
    assert a.samples.ndim == 1
    assert a.sample_rate == SR
    assert a.source_sample_rate == info.samplerate
    assert a.source_channels == info.channels
    # duration preserved within one output sample
    assert abs(len(a.samples) - _expected_len(info.frames, info.samplerate)) <= 1.0
    assert a.duration_s == pytest.approx(info.duration, abs=1.0 / SR + 1e-9)
    assert np.all(np.isfinite(a.samples))
    peak = float(np.max(np.abs(a.samples)))
    assert 1e-3 < peak <= 1.05  # real speech, not silence, not blown up


def test_read_real_emodb(emodb_files):
    for p in emodb_files:
        assert sf.info(str(p)).samplerate == 16000
        _check_real(p)


def test_read_real_ravdess(ravdess_files):
    for p in ravdess_files:
        assert sf.info(str(p)).samplerate == 48000
        _check_real(p)


def test_default_rate_is_the_files_own(emodb_files):
    p = emodb_files[0]
    ref, sr = sf.read(str(p), dtype="float32")
    a = read_audio(p)
    assert a.sample_rate == sr == a.source_sample_rate
    np.testing.assert_array_equal(a.samples, ref)


def test_native_rate_is_passthrough(emodb_files):
    # At the file's own rate nothing is resampled: samples equal soundfile's exactly.
    p = emodb_files[0]
    ref, sr = sf.read(str(p), dtype="float32")
    a = read_audio(p, target_rate=sr)
    np.testing.assert_array_equal(a.samples, ref)


def test_real_stereo_downmix(ravdess_stereo_file):
    if ravdess_stereo_file is None:
        pytest.skip("no stereo clip in this copy of RAVDESS")
    data, sr = sf.read(str(ravdess_stereo_file), dtype="float32", always_2d=True)
    assert data.shape[1] == 2
    a = read_audio(ravdess_stereo_file, target_rate=sr)
    assert a.source_channels == 2
    np.testing.assert_allclose(a.samples, data.mean(axis=1), atol=1e-7)
    # and at the model rate it is still mono with the right length
    b = read_audio(ravdess_stereo_file, SR)
    assert b.samples.ndim == 1
    assert abs(len(b.samples) - _expected_len(len(data), sr)) <= 1.0


# --- odd rates and channel counts (synthetic) -----------------------------------------------


@pytest.mark.parametrize("sr", [8000, 44100])
def test_odd_rate_three_channels(tmp_path, sr):
    n = int(0.7 * sr)
    t = np.arange(n) / sr
    f1, f2 = 440.0, 1000.0
    x = np.stack([0.6 * np.sin(2 * np.pi * f1 * t), 0.3 * np.sin(2 * np.pi * f2 * t), np.zeros(n)], axis=1)
    p = tmp_path / f"three_{sr}.wav"
    sf.write(str(p), x.astype(np.float32), sr, subtype="FLOAT")

    native = read_audio(p, target_rate=sr)
    assert native.source_channels == 3
    np.testing.assert_allclose(native.samples, x.mean(axis=1), atol=1e-6)

    a = read_audio(p, SR)
    assert a.sample_rate == SR and a.source_sample_rate == sr
    assert a.samples.dtype == np.float32
    assert abs(len(a.samples) - _expected_len(n, sr)) <= 1.0
    # the 440 Hz component (0.6 / 3 = 0.2 amplitude) dominates and keeps its pitch
    mid = a.samples[len(a.samples) // 10 : -len(a.samples) // 10]
    assert _peak_hz(mid, SR) == pytest.approx(f1, abs=3.0)
    expected_rms = np.sqrt((0.2**2 + 0.1**2) / 2)
    assert float(np.sqrt(np.mean(mid.astype(np.float64) ** 2))) == pytest.approx(expected_rms, rel=0.02)


# --- typed errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(MissingAudioError):
        read_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    d = tmp_path / "folder.wav"
    d.mkdir()
    with pytest.raises(MissingAudioError, match="directory"):
        read_audio(d)


def test_empty_wav(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros((0,), np.float32), 16000)
    assert sf.info(str(p)).frames == 0
    with pytest.raises(EmptyAudioError):
        read_audio(p)


def test_too_short_wav(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(str(p), 0.5 * np.ones(100, np.float32), 16000)  # 6 ms
    with pytest.raises(EmptyAudioError):
        read_audio(p)


def test_text_file_named_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    with pytest.raises(CorruptAudioError):
        read_audio(p)


def test_truncated_flac(tmp_path, emodb_files):
    p = tmp_path / "cut.flac"
    p.write_bytes(emodb_files[0].read_bytes()[:200])
    with pytest.raises(CorruptAudioError) as ei:
        read_audio(p)
    assert "\n" not in str(ei.value)  # one-line message for the CLI


def test_silent(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(str(p), np.zeros(16000, np.float32), 16000)
    with pytest.raises(SilentAudioError):
        read_audio(p)


def test_a_constant_offset_is_silent_not_scored(tmp_path):
    """A clip that is only a DC offset becomes digital silence once the front-end removes the
    offset: refused as silent (it was scored with confidence and joined its speaker's statistics)."""
    p = tmp_path / "dc.wav"
    sf.write(str(p), np.full(16000, 0.3, np.float32), 16000)
    with pytest.raises(SilentAudioError, match="DC offset"):
        read_audio(p)
    sf.write(str(p), (0.3 + 0.01 * np.sin(np.linspace(0, 2000, 16000))).astype(np.float32), 16000)
    assert read_audio(p).samples.shape == (16000,)  # an offset under a real signal is read


def test_nan_float_wav(tmp_path):
    x = 0.1 * np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    x[5000] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError):
        read_audio(p)


def test_errors_are_emort_errors():
    for cls in (MissingAudioError, CorruptAudioError, EmptyAudioError, SilentAudioError, NonFiniteAudioError, TooLongAudioError,
                AudioFormatError):
        assert issubclass(cls, AudioError) and issubclass(cls, EmortError)


# --- writing --------------------------------------------------------------------------------


def test_write_wav_atomic(tmp_path):
    out = tmp_path / "sub" / "dir" / "out.wav"
    x = 0.5 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR).astype(np.float32)
    x[10] = 3.0  # clipped to full scale
    x[11] = -3.0
    write_wav_atomic(out, x, SR)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]  # no temp files left
    info = sf.info(str(out))
    assert info.format == "WAV" and info.subtype == "PCM_16"
    assert info.samplerate == SR and info.channels == 1 and info.frames == len(x)
    y, sr = sf.read(str(out), dtype="float32")
    assert y[10] == pytest.approx(1.0, abs=1e-4)
    assert y[11] == pytest.approx(-1.0, abs=1e-4)
    keep = np.ones(len(x), bool)
    keep[10:12] = False
    np.testing.assert_allclose(y[keep], x[keep], atol=1.0 / 32768 + 1e-6)

    # overwrite in place: new content, still no temp files
    write_wav_atomic(out, 0.25 * x, SR)
    y2, _ = sf.read(str(out), dtype="float32")
    np.testing.assert_allclose(y2[keep], 0.25 * x[keep], atol=1.0 / 32768 + 1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]


def test_write_wav_atomic_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out.wav"
    write_wav_atomic(out, 0.1 * np.ones(1000, np.float32), 16000)
    before = out.read_bytes()
    with pytest.raises((ValueError, RuntimeError)):  # soundfile.LibsndfileError is a RuntimeError
        write_wav_atomic(out, 0.1 * np.ones(1000, np.float32), 0)  # invalid rate: libsndfile refuses
    assert out.read_bytes() == before  # the finished file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


# --- prepare() on in-memory arrays ---------------------------------------------------------


def test_prepare_mono_same_rate_is_identity():
    x = (0.3 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    y = prepare(x, 16000, 16000)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


def test_prepare_stereo_and_resample():
    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal((16000, 2))).astype(np.float64)
    y = prepare(x, 16000, 16000)
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)
    z = prepare(x, 16000, SR)
    assert z.dtype == np.float32 and abs(len(z) - SR) <= 1


def test_prepare_rejects_bad_input():
    ok = 0.1 * np.ones(16000, np.float32)
    with pytest.raises(AudioFormatError):
        prepare(ok, 0, SR)
    with pytest.raises(AudioFormatError):
        prepare(np.zeros((10, 10, 10), np.float32), 16000, SR)
    with pytest.raises(EmptyAudioError):
        prepare(np.zeros(0, np.float32), 16000, SR)
    with pytest.raises(SilentAudioError):
        prepare(np.zeros(16000, np.float32), 16000, SR)
    bad = ok.copy()
    bad[3] = np.inf
    with pytest.raises(NonFiniteAudioError):
        prepare(bad, 16000, SR)
    # just over the maximum duration at the lowest rate read (the cheapest to allocate)
    low = audio.MIN_SAMPLE_RATE
    n = int(audio.MAX_DURATION_S * low) + 1
    with pytest.raises(TooLongAudioError):
        prepare(0.1 * np.ones(n, np.float32), low, low)
    # just under it is accepted
    assert prepare(0.1 * np.sin(np.arange(n - 1, dtype=np.float32)), low, low).shape == (n - 1,)
    # below the lowest rate: refused, naming the rate (0.32 read 100 Hz files as speech)
    with pytest.raises(AudioFormatError, match="100 Hz is below 8000 Hz"):
        prepare(0.1 * np.sin(np.arange(1000, dtype=np.float32)), 100, SR)
    with pytest.raises(AudioFormatError, match="7999 Hz"):
        prepare(ok, 7999, SR)
    with pytest.raises(SilentAudioError, match="DC offset"):  # a constant is silence once its offset is removed
        prepare(ok, 16000, SR)


def test_an_empty_file_is_called_empty_not_channels_first(tmp_path):
    """A WAV with a header and no samples reads as shape (0, 1): the error says so, instead of
    advising to transpose a channels-first array."""
    f = tmp_path / "empty.wav"
    sf.write(f, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="no samples") as e:
        read_audio(f)
    assert "transpose" not in str(e.value)
    sf.write(f, np.full((1, 2), 0.1, np.float32), 16000)  # one stereo frame: too short, not channels-first
    with pytest.raises(EmptyAudioError, match=r"shorter than 50 ms \(1 sample frame") as e:
        read_audio(f)
    assert "transpose" not in str(e.value)


def test_an_undecodable_file_is_named_once(tmp_path):
    """libsndfile's message names the file again (as bytes): the error names it once."""
    from emort.runtime.errors import CorruptAudioError

    f = tmp_path / "text.wav"
    f.write_text("hello")
    with pytest.raises(CorruptAudioError) as e:
        read_audio(f)
    assert str(e.value).count("text.wav") == 1 and "Format not recognised" in str(e.value)


def test_channels_that_cancel_in_the_mono_mix_say_so():
    from emort.runtime.audio import prepare
    from emort.runtime.errors import SilentAudioError

    x = (0.3 * np.sin(np.arange(8000) / 5.0)).astype(np.float32)
    with pytest.raises(SilentAudioError, match="they cancel") as e:
        prepare(np.stack([x, -x], 1), 16000, 16000, what="inverted.wav")
    assert "inverted.wav" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SilentAudioError, match=r"silent \(peak below"):  # truly silent: the plain message
        prepare(np.zeros((8000, 2), np.float32), 16000, 16000)


def test_check_sample_rate_takes_whole_positive_numbers_only():
    from emort.runtime.audio import check_sample_rate
    from emort.runtime.errors import AudioFormatError

    assert check_sample_rate(16000.0) == 16000 and check_sample_rate(np.int64(8000)) == 8000
    for bad in (float("nan"), float("inf"), "16000", 16000.5, True, np.bool_(True), 0, -8000, None, 10**400):
        with pytest.raises(AudioFormatError, match="sample rate"):
            check_sample_rate(bad, "clip.wav")
    with pytest.raises(AudioFormatError, match="invalid sample rate"):
        prepare(np.zeros(100, np.float32), float("inf"), 16000)
