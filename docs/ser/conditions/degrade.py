"""The fixed degradations of docs/ser/conditions and docs/ser/clip_conditions: each applied to a
mono clip at its own rate, seeded per clip (audiomentations draws from the global RNGs), the result
kept to the clip's length and under full scale."""
import hashlib
import random
from pathlib import Path

import numpy as np

from emort.evaluation.scorer_compare import at_gain

KINDS = ("original", "phone", "mp3", "reverb", "noise-20", "noise-10", "quiet")


def clip_seed(path: str) -> int:
    return int.from_bytes(hashlib.sha256(Path(path).name.encode()).digest()[:4], "little")


def degrade(kind: str, x: np.ndarray, sr: int, seed: int) -> np.ndarray:
    import audiomentations as A
    import soxr

    np.random.seed(seed)
    random.seed(seed)  # audiomentations draws from the global RNGs
    if kind == "original":
        y = x
    elif kind == "phone":
        y = soxr.resample(soxr.resample(x, sr, 8000), 8000, sr)[: len(x)]
    elif kind == "mp3":
        y = A.Mp3Compression(min_bitrate=32, max_bitrate=32, backend="fast-mp3-augment", p=1.0)(samples=x, sample_rate=sr)
    elif kind == "reverb":
        y = A.RoomSimulator(leave_length_unchanged=True, p=1.0)(samples=x, sample_rate=sr)
    elif kind.startswith("noise"):
        snr = float(kind.split("-")[1])
        y = A.AddGaussianSNR(min_snr_db=snr, max_snr_db=snr, p=1.0)(samples=x, sample_rate=sr)
    elif kind == "quiet":
        y = at_gain(x, -20)
    else:
        raise ValueError(kind)
    y = np.asarray(y, np.float32)
    y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
    peak = float(np.abs(y).max())
    return y / peak * 0.99 if peak > 0.99 else y


def condition_summary(ua: dict, corpora: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each reading's cells ``ua[name][kind]["<corpus>/pooled"]`` -> its ``worst_recorded``,
    ``mean_recorded`` (the corpora as recorded) and ``worst_degraded``, ``mean_degraded`` (every other
    kind); printed, one line a reading (the layout of docs/ser/clip_conditions and clip_stats_conditions)."""
    summ = {}
    for n, by_kind in ua.items():
        rec = [by_kind["original"][f"{k}/pooled"] for k in corpora]
        deg = [by_kind[kind][f"{k}/pooled"] for kind in KINDS if kind != "original" for k in corpora]
        summ[n] = {"worst_recorded": min(rec), "mean_recorded": float(np.mean(rec)),
                   "worst_degraded": min(deg), "mean_degraded": float(np.mean(deg))}
        print(n, {k: round(v, 4) for k, v in summ[n].items()})
    return summ
