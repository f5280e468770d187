"""Fixtures for the training tests: a real tiny manifest and a feature cache per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The test host is shared with background training: one thread avoids OpenMP spin contention."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """Per-session feature cache (``EMORT_CACHE``); shared with the ``tiny`` fixture."""
    os.environ.setdefault("EMORT_CACHE", str(tmp_path_factory.mktemp("cache")))
    return Path(os.environ["EMORT_CACHE"])


@pytest.fixture(scope="session")
def tiny_csv(shared_data: Path, tmp_path_factory, feature_cache: Path) -> Path:
    """``tiny.csv``: ~18 real EmoDB clips, speakers 09/11 (train) and 10 (validation)."""
    pytest.importorskip("torch", reason="training tests need the [train] extra")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tiny import write_manifest

    return write_manifest(shared_data, tmp_path_factory.mktemp("manifest") / "tiny.csv")
