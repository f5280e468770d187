"""openSMILE eGeMAPSv02 Functionals of a clip: the field's standard SER feature set.

Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and
Affective Computing", IEEE Trans. Affective Computing 2016: 88 functionals of pitch, loudness,
voice quality (jitter, shimmer, HNR), formants and spectral balance. One definition for the
runtime (the eGeMAPS voice classifier of ``emort score --egemaps``), training (``emort train stats
--features ...+egemaps``) and the eGeMAPS judge of ``emort eval enhance``.

Computed by the ``opensmile`` package (a C library with wheels: the ``[egemaps]`` extra), imported
only when a caller needs it, on the clip mixed to mono and resampled to 16 kHz with soxr (every
corpus at one rate, so that bandwidth is not a cue). openSMILE's licence allows research and other
non-commercial use only; it makes per-speaker scoring several times as long
(docs/ser/egemaps_voice/report.md).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from emort.runtime.audio import resample
from emort.runtime.errors import EmortError, EmptyAudioError

#: Length of the eGeMAPSv02 Functionals vector.
NUM_EGEMAPS = 88
#: The rate eGeMAPS is computed at.
EGEMAPS_SAMPLE_RATE = 16000
#: What a bundle's eGeMAPS classifier records; a change to the analysis bumps it. 2 (0.18): the
#: 16 kHz signal is clipped to int16's range first (openSMILE scales float input by 32768 into
#: int16 without clipping, so a full-scale sample wrapped to the opposite sign).
EGEMAPS_VERSION = 2
#: Largest float sample openSMILE's int16 conversion takes without wrapping.
_INT16_MAX = 32767 / 32768
#: Shortest clip (16 kHz samples, 60 ms) openSMILE computes the functionals of; shorter ones it
#: fills with NaN (with a warning, which is process-wide and so cannot tell threads apart).
MIN_EGEMAPS_SAMPLES = 960
#: The features of the classifier that reads eGeMAPS at run time (``stats_egemaps``): the joint
#: voice classifier's (:data:`emort.runtime.voice.JOINT_FEATURES`) followed by eGeMAPS.
EGEMAPS_FEATURES = "ustats+pitch+ge2e+egemaps"
INSTALL = "pip install 'emort[egemaps]'"


@lru_cache(maxsize=1)
def _smile():
    try:
        import opensmile
    except ImportError as e:
        raise EmortError(f"eGeMAPS features need the opensmile package ({INSTALL}): {e}") from None
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)


def check_egemaps() -> None:
    """EmortError (one line, with the install command) unless openSMILE can be loaded."""
    _smile()


def egemaps_features(mono: np.ndarray, sample_rate: int = EGEMAPS_SAMPLE_RATE, what: str = "audio") -> np.ndarray:
    """eGeMAPSv02 Functionals of a mono clip ``(num_samples,)`` at ``sample_rate`` Hz: float32 ``(88,)``.

    Resampled to 16 kHz (soxr, :func:`emort.runtime.audio.resample`), clipped to the int16 range
    that openSMILE converts float input to (a louder sample would wrap), and run through openSMILE's
    bundled ``SMILEapi`` library in-process (no network, no subprocess). Non-finite values (none
    seen on speech) become 0. Raises EmortError when openSMILE is not installed, and
    EmptyAudioError naming ``what`` for a clip too short for its functionals (under 60 ms at
    16 kHz, :data:`MIN_EGEMAPS_SAMPLES`), which openSMILE would fill with NaN. Thread-safe: the
    batch scorer calls it from its reader threads.

    Known limit: the clip is analysed with its DC offset, as the shipped ``stats_egemaps`` and the
    eGeMAPS judge were fitted (every other analysis of emort removes it). An offset moves some
    functionals: +0.05 added to a speaker's 12 clips moved the ``--egemaps`` probabilities by up
    to 0.05 and flipped one prediction; even the corpora's offsets of 1e-6 to 2e-3 move a few
    near-zero functionals by over 1% when removed. Removing it is a change of the analysis
    (version 3) that needs the classifier refitted, so it waits for the next refit.
    """
    wav16 = np.clip(resample(np.asarray(mono, dtype=np.float32), sample_rate, EGEMAPS_SAMPLE_RATE), -1.0, _INT16_MAX)
    v = None if len(wav16) < MIN_EGEMAPS_SAMPLES else _smile().process_signal(wav16, EGEMAPS_SAMPLE_RATE).to_numpy(dtype=np.float64)[0]
    if v is None or np.isnan(v).all():  # too short, or openSMILE found no frame to summarise
        raise EmptyAudioError(f"{what}: {len(wav16) / EGEMAPS_SAMPLE_RATE * 1000:.0f} ms is too short for eGeMAPS "
                              f"(openSMILE needs {MIN_EGEMAPS_SAMPLES / EGEMAPS_SAMPLE_RATE * 1000:.0f} ms)")
    if v.shape != (NUM_EGEMAPS,):
        raise EmortError(f"openSMILE returned {v.shape[0]} eGeMAPS functionals, expected {NUM_EGEMAPS}")
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def egemaps_feature_names() -> list[str]:
    """Names of :func:`egemaps_features`' entries, in order (openSMILE's)."""
    return list(_smile().feature_names)
