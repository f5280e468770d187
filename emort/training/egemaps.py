"""openSMILE eGeMAPSv02 Functionals: the field's standard SER feature set, as utterance features.

Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research
and Affective Computing", IEEE Trans. Affective Computing 2016: 88 functionals of pitch,
loudness, voice quality (jitter, shimmer, HNR), formants and spectral balance. Used by the
statistics classifier (``emort train stats --features ustats+egemaps``) and by the eGeMAPS
judge of ``emort eval enhance`` (``emort.evaluation.judge_panel``).

Computed by the ``opensmile`` package (a C library with wheels; the ``[eval]`` extra) on
16 kHz mono audio. openSMILE's licence allows research and other non-commercial use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Length of the eGeMAPSv02 Functionals vector.
NUM_EGEMAPS = 88
#: The rate eGeMAPS is computed at (every corpus resampled to it, so that bandwidth is not a cue).
EGEMAPS_SAMPLE_RATE = 16000


@lru_cache(maxsize=1)
def _smile():
    try:
        import opensmile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"eGeMAPS features need opensmile: pip install -e '.[eval]' ({e})") from None
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)


def egemaps_features(wav16: np.ndarray) -> np.ndarray:
    """eGeMAPSv02 Functionals of a 16 kHz mono clip ``(num_samples,)``: float32 ``(88,)``.

    Runs openSMILE's bundled ``SMILEapi`` library in-process (no network, no subprocess).
    Non-finite values (none seen on speech) become 0.
    """
    df = _smile().process_signal(np.asarray(wav16, dtype=np.float32), EGEMAPS_SAMPLE_RATE)
    v = df.to_numpy(dtype=np.float64)[0]
    if v.shape != (NUM_EGEMAPS,):
        raise RuntimeError(f"openSMILE returned {v.shape[0]} eGeMAPS functionals, expected {NUM_EGEMAPS}")
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def egemaps_feature_names() -> list[str]:
    """Names of :func:`egemaps_features`' entries, in order (openSMILE's)."""
    return list(_smile().feature_names)


def egemaps_matrix(paths: Sequence[str]) -> np.ndarray:
    """eGeMAPS of audio files ``(N, 88)`` float32, cached per file (path, size, mtime) under
    ``$EMORT_CACHE/egemaps`` (default ``~/.cache/emort``). Raises AudioError subclasses for
    unreadable or unusable files."""
    from emort.runtime.audio import read_audio
    from emort.training.data import file_cache_path, read_cached_array, write_cached_array

    rows = []
    for p in paths:
        f = file_cache_path("egemaps", p, EGEMAPS_SAMPLE_RATE, NUM_EGEMAPS, tag="egemaps")
        v = read_cached_array(f, (NUM_EGEMAPS,))
        if v is None:
            v = egemaps_features(read_audio(p, EGEMAPS_SAMPLE_RATE).samples)
            write_cached_array(f, v)
        rows.append(v)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, NUM_EGEMAPS), np.float32)
