"""Shared fixtures.

Kept light on purpose: nothing heavy (torch, librosa, onnxruntime) is imported
at module level, so collecting the runtime tests stays fast and works on a
core install.

Real corpora are read in place from ``../shared/data`` (relative to the repo
root) or from ``$EMORT_SHARED_DATA``; tests that need them skip with a reason
when they are absent. Audio is never copied into the repository.

Sections:
  * paths: repo root, shared data, corpus file lists
  * (room for model fixtures, e.g. tiny bundles, below)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: How many clips the per-corpus fixtures hand out (keep tests fast).
N_CLIPS = 3


# --- devices -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _train_on_cpu_unless_gpu_test():
    """Trainers default to ``--device auto`` (a CUDA GPU when torch sees one). The suite's training
    tests compare runs bit for bit and time-limit CPU ranks, so outside the ``gpu``-marked tests
    torch is told it sees no GPU: the suite tests the same thing on a GPU host as in CI. The ``gpu``
    tests (tests/training/test_train_cuda.py) restore the real answer for their module."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # a core install: nothing trains
        yield
        return
    import torch

    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    torch.cuda._emort_real_is_available = real
    yield
    torch.cuda.is_available = real


# --- paths ---------------------------------------------------------------------------------


def shared_data_dir() -> Path:
    """``$EMORT_SHARED_DATA`` if set, else ``<repo>/../shared/data`` (may not exist)."""
    env = os.environ.get("EMORT_SHARED_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data_path() -> Path:
    """Where the shared corpora would be (:func:`shared_data_dir`), for tests that fall back to
    synthetic signals when it is absent (no skip)."""
    return shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder holding ``emodb/`` and ``ravdess/``; skips the test when absent."""
    p = shared_data_dir()
    if not p.is_dir():
        pytest.skip(f"shared corpora not found at {p} (set EMORT_SHARED_DATA to the folder with emodb/ and ravdess/)")
    return p


@pytest.fixture(scope="session")
def emodb_root(shared_data: Path) -> Path:
    p = shared_data / "emodb"
    if not p.is_dir():
        pytest.skip(f"EmoDB not found at {p}")
    return p


@pytest.fixture(scope="session")
def ravdess_root(shared_data: Path) -> Path:
    p = shared_data / "ravdess"
    if not p.is_dir():
        pytest.skip(f"RAVDESS not found at {p}")
    return p


@pytest.fixture(scope="session")
def emodb_files(emodb_root: Path) -> list[Path]:
    """A few EmoDB clips (16 kHz mono), sorted, spread over the corpus."""
    files = sorted((emodb_root / "wav").glob("*.flac"))
    if not files:
        pytest.skip(f"no EmoDB .flac files under {emodb_root / 'wav'}")
    step = max(1, len(files) // N_CLIPS)
    return files[::step][:N_CLIPS]


@pytest.fixture(scope="session")
def ravdess_stereo_file(ravdess_root: Path) -> Path | None:
    """The first stereo RAVDESS clip (scanning Actor_01..Actor_24 in order), or None."""
    import soundfile as sf

    for n in range(1, 25):
        for p in sorted((ravdess_root / f"Actor_{n:02d}").glob("*.flac")):
            if sf.info(str(p)).channels == 2:
                return p
    return None


@pytest.fixture(scope="session")
def ravdess_files(ravdess_root: Path, ravdess_stereo_file: Path | None) -> list[Path]:
    """A few RAVDESS clips (48 kHz), sorted; includes one stereo clip when the corpus has one."""
    files = sorted(ravdess_root.glob("Actor_*/*.flac"))
    if not files:
        pytest.skip(f"no RAVDESS .flac files under {ravdess_root}")
    step = max(1, len(files) // N_CLIPS)
    picked = files[::step][:N_CLIPS]
    if ravdess_stereo_file is not None and ravdess_stereo_file not in picked:
        picked = picked[:-1] + [ravdess_stereo_file]
    return sorted(picked)


# --- models --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """Tiny real SER + diffusion runs trained for a few steps on real EmoDB clips and
    exported to an ONNX bundle (built once per session; see ``tests/tiny.py``)."""
    pytest.importorskip("torch", reason="building the tiny bundle needs the [train] extra")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny")
    os.environ.setdefault("EMORT_CACHE", str(tmp_path_factory.mktemp("cache")))
    return build_tiny(shared_data, root)
