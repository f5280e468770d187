"""openSMILE eGeMAPSv02 Functionals of corpus files, cached: the training side of
:mod:`emort.runtime.egemaps` (one definition, shared with the runtime's eGeMAPS voice classifier).

Used by the statistics classifier (``emort train stats --features ...+egemaps``) and by the eGeMAPS
judge of ``emort eval enhance`` (``emort.evaluation.judge_panel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emort.runtime.egemaps import (
    EGEMAPS_SAMPLE_RATE,
    EGEMAPS_VERSION,
    NUM_EGEMAPS,
    egemaps_feature_names,
    egemaps_features,
)

__all__ = ["EGEMAPS_SAMPLE_RATE", "NUM_EGEMAPS", "egemaps_feature_names", "egemaps_features", "egemaps_matrix"]


def egemaps_matrix(paths: Sequence[str]) -> np.ndarray:
    """eGeMAPS of audio files ``(N, 88)`` float32, cached per file (path, size, mtime) under
    ``$EMORT_CACHE/egemaps`` (default ``~/.cache/emort``). Raises AudioError subclasses for
    unreadable or unusable files."""
    from emort.runtime.audio import read_audio
    from emort.training.data import file_cache_path, read_cached_array, write_cached_array

    rows = []
    for p in paths:
        f = file_cache_path("egemaps", p, EGEMAPS_SAMPLE_RATE, NUM_EGEMAPS, tag=f"egemaps{EGEMAPS_VERSION}")
        v = read_cached_array(f, (NUM_EGEMAPS,))
        if v is None:
            v = egemaps_features(read_audio(p, EGEMAPS_SAMPLE_RATE).samples, what=str(p))
            write_cached_array(f, v)
        rows.append(v)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, NUM_EGEMAPS), np.float32)
