"""Fitted scikit-learn models on disk: one joblib (pickle) file each, written atomically.

Used by the statistics classifier and the evaluation models (judges, speaker embedder).
Pickle executes code on load: load only files you wrote yourself.
"""

from __future__ import annotations

import os

from emort.runtime.atomic import atomic_write


def dump_atomic(payload: dict, path: str | os.PathLike) -> None:
    """``payload`` as one joblib file at ``path`` (temp file + rename; parent folders created)."""
    import joblib

    atomic_write(path, lambda tmp: joblib.dump(payload, tmp))


def load_checked(path: str | os.PathLike, kind: str, version_key: str, version: int, what: str) -> dict:
    """Read a :func:`dump_atomic` file.

    Raises ValueError unless it holds a dict whose ``"kind"`` is ``kind`` and whose
    ``version_key`` entry equals ``version`` (``what`` names the model in the message).
    """
    import joblib

    d = joblib.load(path)
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise ValueError(f"{path}: not a saved {what}")
    if d[version_key] != version:
        raise ValueError(f"{path}: {what} built on feature version {d[version_key]}, this code has {version}")
    return d
