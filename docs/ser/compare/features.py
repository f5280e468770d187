"""openSMILE ComParE_2016 functionals (6,373) of corpus files, as docs/ser/compare/PREREGISTRATION.md
defines them: mono, soxr to 16 kHz, DC offset removed, clipped to int16's range, non-finite -> 0.
Cached in runs/compare/compare.npz (path -> row); two worker processes.

    python docs/ser/compare/features.py    # every clip of the three corpora (~4 minutes on 2 cores)
"""
from __future__ import annotations

import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

CACHE = Path("runs/compare/compare.npz")
RATE = 16000
NUM = 6373
_SMILE = None


def compare_row(path: str) -> np.ndarray:
    """ComParE_2016 functionals of one file, float32 ``(6373,)``."""
    global _SMILE
    import opensmile

    from emort.runtime.audio import read_audio

    if _SMILE is None:
        _SMILE = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.Functionals)
    x = read_audio(path, RATE).samples.astype(np.float64)
    x = np.clip(x - x.mean(), -1.0, 32767 / 32768).astype(np.float32)
    v = _SMILE.process_signal(x, RATE).to_numpy(dtype=np.float64)[0]
    assert v.shape == (NUM,), v.shape
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def compare_matrix(paths: list[str]) -> np.ndarray:
    """Rows of :func:`compare_row` for ``paths`` ``(N, 6373)``, from the cache where present."""
    have: dict[str, np.ndarray] = {}
    if CACHE.exists():
        z = np.load(CACHE)
        have = dict(zip(z["paths"].tolist(), z["x"]))
    todo = sorted({str(p) for p in paths} - set(have))
    if todo:
        with Pool(2) as pool:
            rows = pool.map(compare_row, todo, chunksize=16)
        have.update(zip(todo, rows))
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(have)
        tmp = CACHE.with_suffix(".tmp.npz")
        np.savez(tmp, paths=np.array(keys), x=np.stack([have[k] for k in keys]))
        tmp.replace(CACHE)
        print(f"ComParE of {len(todo)} files computed", flush=True)
    return np.stack([have[str(p)] for p in paths])


if __name__ == "__main__":
    from emort.evaluation.scorer_compare import SHARED_DATA, cell_pool
    from emort.runtime.settings import EMOTIONS

    c = cell_pool(SHARED_DATA, tuple(EMOTIONS), "val")
    x = compare_matrix([i.path for i in c.items])
    print(x.shape, "non-finite replaced:", int((x == 0).sum()), file=sys.stderr)
