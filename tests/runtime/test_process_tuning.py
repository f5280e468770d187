"""Process tuning for speed: numpy's BLAS on one thread while emort's batch work and enhancements run (restored after), and the CLI keeping freed memory for reuse."""

from __future__ import annotations

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from emort.runtime.session import single_threaded_blas  # noqa: E402


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    if not _blas_threads():
        pytest.skip("numpy's BLAS is not visible to threadpoolctl here")
    with threadpoolctl.threadpool_limits(2, "blas"):
        yield


def test_single_threaded_blas_limits_and_restores(two_blas_threads):
    before = _blas_threads()
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_enhance_runs_with_one_blas_thread(two_blas_threads, monkeypatch):
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load()
    seen = []
    inner = enh._enhance

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(enh, "_enhance", spy)
    wav = (0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    out = enh.enhance(wav, 16000, "angry", steps=1)
    assert out.wav.shape == wav.shape and seen and set(seen[0]) == {1}
    assert set(_blas_threads()) == {2}


def test_score_files_runs_with_one_blas_thread(two_blas_threads, tmp_path, monkeypatch):
    import soundfile as sf

    from emort.runtime import batch
    from emort.runtime.scorer import Scorer

    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(16000) / 16000)).astype(np.float32), 16000)
    scorer = Scorer.load()
    seen = []
    inner = scorer.score_mels

    def spy(mels):
        seen.append(_blas_threads())
        return inner(mels)

    monkeypatch.setattr(scorer, "score_mels", spy)
    recs = list(batch.score_files(scorer, [tmp_path]))
    assert [r.status for r in recs] == ["scored"] * 3
    assert len(seen) == 3 and all(set(s) == {1} for s in seen)
    assert set(_blas_threads()) == {2}


def test_the_cli_keeps_freed_memory_for_reuse(monkeypatch):
    """`emort` (main) asks glibc to keep freed memory (the front-end's per-clip temporaries were
    page-faulted back in for every clip); on glibc the call takes effect."""
    import sys

    from emort.cli import app as cli_app
    from emort.runtime import session

    calls = []
    monkeypatch.setattr(session, "retain_freed_memory", lambda *a, **k: calls.append(a) or True)
    monkeypatch.setattr(sys, "argv", ["emort", "--version"])
    with pytest.raises(SystemExit):
        cli_app.main()
    assert calls == [()]


def test_retain_freed_memory_applies_on_glibc():
    import platform
    import sys

    from emort.runtime.session import retain_freed_memory

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert retain_freed_memory() is True
