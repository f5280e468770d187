"""``Enhancer.load(spin=...)``: by default every session's onnxruntime threads spin for a bounded
time between operators (docs/bench/spin.md); ``spin=False`` turns spinning off, ``spin=True`` lets
the denoiser's threads spin as onnxruntime does by default (never the SER's or style encoder's:
theirs stay bounded); the output does not depend on it."""

import numpy as np

from emort import Enhancer
from emort.runtime.session import SPIN_US


def _wait(model) -> str:
    """How the onnxruntime session was configured (not the flag it was given): "off", "unbounded",
    or the spin limit in microseconds."""
    opts = model.session.get_session_options()
    try:
        if opts.get_session_config_entry("session.intra_op.allow_spinning") == "0":
            return "off"
    except RuntimeError:  # not set: onnxruntime's default, which spins
        pass
    try:
        return opts.get_session_config_entry("session.intra_op.spin_duration_us")
    except RuntimeError:
        return "unbounded"


def test_sessions_spin_briefly_by_default_and_as_asked():
    plain = Enhancer.load(device="cpu")
    assert [_wait(m) for m in (plain.denoiser, plain.style, plain.scorer.ser)] == [str(SPIN_US)] * 3
    off = Enhancer.load(device="cpu", spin=False)
    assert [_wait(m) for m in (off.denoiser, off.style, off.scorer.ser)] == ["off"] * 3
    spun = Enhancer.load(device="cpu", spin=True)
    assert [_wait(m) for m in (spun.denoiser, spun.style, spun.scorer.ser)] == ["unbounded", str(SPIN_US), str(SPIN_US)]
    assert _wait(Enhancer.load(device="cpu", spin=50).denoiser) == "50"
    t = np.arange(16000) / 16000
    wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    a = plain.enhance(wav, 16000, "sad").wav
    for other in (off, spun):
        np.testing.assert_array_equal(a, other.enhance(wav, 16000, "sad").wav)


def test_the_scorer_takes_spin_for_all_its_sessions():
    from emort import Scorer

    per = Scorer.load(device="cpu", per_speaker=True)
    sessions = [per.ser, per.stats, *([per.voice.model, per.stats_voice] if per.voice is not None else [])]
    assert len(sessions) >= 2 and {_wait(m) for m in sessions} == {str(SPIN_US)}
    off = Scorer.load(device="cpu", per_speaker=True, spin=False)
    assert {_wait(m) for m in [off.ser, off.stats, *([off.voice.model, off.stats_voice] if off.voice is not None else [])]} == {"off"}
    assert _wait(Scorer.load(device="cpu", spin=True).ser) == "unbounded"


def test_bounded_spinning_needs_onnxruntime_1_26_and_a_limit_is_validated():
    """An onnxruntime before 1.26 ignores the bound and would spin unbounded: emort's sessions do not
    spin there; a negative or fractional limit is refused rather than read as some other setting."""
    import pytest

    from emort.runtime.session import BOUNDED_SPIN_ORT, ort_version, spin_setting

    assert BOUNDED_SPIN_ORT == (1, 26)
    assert spin_setting(SPIN_US, "1.26.0") == SPIN_US and spin_setting(SPIN_US, "1.32.0") == SPIN_US
    assert spin_setting(SPIN_US, "1.25.1") is False and spin_setting(SPIN_US, "unknown") is False
    assert spin_setting(True, "1.17.0") is True and spin_setting(False, "1.32.0") is False and spin_setting(0, "1.32.0") is False
    assert spin_setting(np.bool_(True), "1.32.0") is True and spin_setting(np.int64(50), "1.32.0") == 50
    assert ort_version("1.27rc1") == (1, 27) and ort_version("1.9.0") == (1, 9)
    for bad in (-1, 0.5, "200"):
        with pytest.raises(ValueError, match="spin"):
            spin_setting(bad, "1.32.0")


def test_an_old_onnxruntime_gets_sessions_that_do_not_spin(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.25.1")
    e = Enhancer.load(device="cpu")
    assert [_wait(m) for m in (e.denoiser, e.style, e.scorer.ser)] == ["off"] * 3 and e.denoiser.spin is False
