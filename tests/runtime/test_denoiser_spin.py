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
