"""Process tuning for speed, done by the CLI (it owns its process): numpy's BLAS on one thread,
freed memory kept for reuse, and each scoring worker's share of the cores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def _in_a_process(code: str) -> str:
    """Run ``code`` in a fresh interpreter (these settings last for the rest of a process)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_cli_tunes_its_process(monkeypatch):
    from emort.cli import app as cli_app
    from emort.runtime import session

    calls = []
    monkeypatch.setattr(session, "limit_blas_threads", lambda *a: calls.append(("blas", a)) or True)
    monkeypatch.setattr(session, "retain_freed_memory", lambda *a: calls.append(("memory", a)) or True)
    monkeypatch.setattr(sys, "argv", ["emort", "--version"])
    with pytest.raises(SystemExit):
        cli_app.main()
    assert calls == [("blas", (1,)), ("memory", ())]


def test_limit_blas_threads_sets_numpys_blas_for_the_process():
    out = _in_a_process(
        "import numpy, threadpoolctl\n"
        "from emort.runtime.session import limit_blas_threads\n"
        "ok = limit_blas_threads(1)\n"
        "print(ok, sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")
    assert out in ("True [1]", "False []")  # False only where numpy has no BLAS threadpoolctl can see


def test_retain_freed_memory_applies_on_glibc():
    import platform

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert _in_a_process("from emort.runtime.session import retain_freed_memory; print(retain_freed_memory())") == "True"


def test_the_cli_gives_each_scoring_worker_its_share_of_the_cores(monkeypatch, tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from emort.cli.app import app
    from emort.runtime import batch, session
    from emort.runtime import scorer as scorer_mod

    sf.write(tmp_path / "a.wav", (0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32), 16000)
    seen = []
    real = scorer_mod.Scorer.load.__func__

    def spy(cls, *a, **k):
        seen.append(k.get("threads"))
        return real(cls, *a, **k)

    monkeypatch.setattr(scorer_mod.Scorer, "load", classmethod(spy))
    monkeypatch.delenv("EMORT_THREADS", raising=False)
    monkeypatch.setattr(session, "default_threads", lambda: 8)
    monkeypatch.setattr(batch, "READ_THREADS", 4)
    assert CliRunner().invoke(app, ["score", str(tmp_path)]).exit_code == 0
    monkeypatch.setenv("EMORT_THREADS", "3")
    assert CliRunner().invoke(app, ["score", str(tmp_path)]).exit_code == 0
    assert seen == [2, None]  # 8 cores / 4 workers; EMORT_THREADS: the session's own default
