"""``Enhancer.load(spin=...)``: the denoiser's onnxruntime threads spin only when asked (off by
default: through the CLI it bought about 1-4% of wall time for 20-30% more CPU), and never the SER's
or style encoder's; the output does not depend on it."""

import numpy as np

from emort import Enhancer


def test_only_the_denoiser_spins_and_only_when_asked():
    plain = Enhancer.load(device="cpu")
    assert not (plain.denoiser.spin or plain.style.spin or plain.scorer.ser.spin)
    spun = Enhancer.load(device="cpu", spin=True)
    assert spun.denoiser.spin and not spun.style.spin and not spun.scorer.ser.spin
    t = np.arange(16000) / 16000
    wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    a = plain.enhance(wav, 16000, "sad").wav
    b = spun.enhance(wav, 16000, "sad").wav
    np.testing.assert_array_equal(a, b)
