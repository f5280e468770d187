"""Saving fitted evaluation models (judges, speaker embedder)."""

from __future__ import annotations

import os
from pathlib import Path


def dump_atomic(payload: dict, path: str | os.PathLike) -> None:
    """One joblib (pickle) file written to a temp name and renamed. Load only files you trust."""
    import joblib

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    joblib.dump(payload, tmp)
    os.replace(tmp, p)


def load_checked(path: str | os.PathLike, kind: str, version_key: str, version: int, what: str) -> dict:
    """Read a :func:`dump_atomic` file; ValueError unless it is ``kind`` at ``version``."""
    import joblib

    d = joblib.load(path)
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise ValueError(f"{path}: not a saved {what}")
    if d[version_key] != version:
        raise ValueError(f"{path}: {what} built on feature version {d[version_key]}, this code has {version}")
    return d
