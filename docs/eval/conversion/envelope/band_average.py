"""The candidate of docs/eval/conversion/envelope/PREREGISTRATION.md (not adopted): the envelope
step's band average at least :data:`MIN_HZ` wide. ``install()`` puts it in place of the runtime's
3-band average (emort.runtime.prosody's band average in ``restore_envelope``, its only 2-D average
along the bands). The run of the report set it through a runtime constant, ``ENVELOPE_MIN_HZ``,
removed from the runtime after the decision; this is the same computation."""
import numpy as np

from emort.runtime import prosody
from emort.runtime.frontend import _hz_to_mel, _mel_to_hz
from emort.runtime.settings import DEFAULT_MEL

MIN_HZ = 300.0
_runtime_average = prosody._moving_average


def band_average(a: np.ndarray, settings=DEFAULT_MEL) -> np.ndarray:
    """Log-mel ``a`` (bands x frames) averaged over an odd number of bands centred on each: at
    least ``ENVELOPE_BANDS`` and at least MIN_HZ wide (at the edges over what exists)."""
    n = a.shape[0]
    m = np.linspace(_hz_to_mel(settings.fmin_hz), _hz_to_mel(settings.fmax_hz), settings.n_mels + 2)
    spacing = np.diff(_mel_to_hz(m)[1:-1], append=settings.fmax_hz)  # Hz to the next band's centre
    half = np.maximum(prosody.ENVELOPE_BANDS // 2, np.ceil(MIN_HZ / spacing / 2)).astype(int)[:n]
    c = np.cumsum(np.pad(a, [(1, 0), (0, 0)]), axis=0)
    lo, hi = np.clip(np.arange(n) - half, 0, n), np.clip(np.arange(n) + half + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def install() -> None:
    def average(a, size, axis):
        return band_average(a) if a.ndim == 2 and axis == 0 else _runtime_average(a, size, axis)

    prosody._moving_average = average
