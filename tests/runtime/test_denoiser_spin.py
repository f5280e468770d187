"""``Enhancer.load(spin=...)``: the denoiser's onnxruntime threads spin only when asked (off by
default: through the CLI it saved no wall time and cost more CPU: docs/bench/denoiser_spin.md), and never the SER's
or style encoder's; the output does not depend on it."""

import numpy as np

from emort import Enhancer


def _spinning(model) -> bool:
    """What the onnxruntime session was configured with (not the flag it was given)."""
    try:
        entry = model.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: onnxruntime's default, which spins
        return True
    return entry != "0"


def test_only_the_denoiser_spins_and_only_when_asked():
    plain = Enhancer.load(device="cpu")
    assert not (_spinning(plain.denoiser) or _spinning(plain.style) or _spinning(plain.scorer.ser))
    spun = Enhancer.load(device="cpu", spin=True)
    assert _spinning(spun.denoiser) and not _spinning(spun.style) and not _spinning(spun.scorer.ser)
    t = np.arange(16000) / 16000
    wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    a = plain.enhance(wav, 16000, "sad").wav
    b = spun.enhance(wav, 16000, "sad").wav
    np.testing.assert_array_equal(a, b)
