"""``emort`` CLI: version/help and ``data scan`` on the real corpora, in-process and as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emort import __version__
from emort.cli.app import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _assert_one_line_error(result) -> None:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = result.stderr.strip()
    assert err.startswith("error:")
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output


def test_version():
    r = _invoke("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"emort {__version__}"


def test_help_lists_commands():
    r = _invoke("--help")
    assert r.exit_code == 0
    for cmd in ("data", "train", "export", "eval"):
        assert cmd in r.stdout
    r = _invoke("data", "scan", "--help")
    assert r.exit_code == 0
    assert "--json" in r.stdout


def test_data_scan_real_corpora(emodb_root, ravdess_root, tmp_path):
    out = tmp_path / "counts.json"
    r = _invoke("data", "scan", str(emodb_root), f"ravdess={ravdess_root}", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "408" in r.stdout and "1320" in r.stdout
    counts = json.loads(out.read_text())
    assert set(counts) == {"emodb", "ravdess"}
    assert counts["emodb"]["files"] == 408
    assert counts["ravdess"]["files"] == 1320
    assert counts["emodb"]["emotions"] == {"angry": 100, "boredom": 58, "disgust": 30, "fear": 54, "happy": 54, "neutral": 63, "sad": 49}
    assert counts["ravdess"]["emotions"]["neutral"] == 88
    assert counts["ravdess"]["emotions"]["calm"] == 176
    assert len(counts["emodb"]["speakers"]) == 8
    assert len(counts["ravdess"]["speakers"]) == 22
    assert sum(counts["ravdess"]["speakers"].values()) == 1320


def test_data_scan_bad_path(tmp_path):
    _assert_one_line_error(_invoke("data", "scan", str(tmp_path / "does-not-exist")))


def test_error_shows_path_verbatim(tmp_path):
    # long paths are not wrapped, and brackets in names are not taken for rich markup
    missing = tmp_path / ("x" * 120) / "take[bold]2"
    r = _invoke("data", "scan", str(missing))
    _assert_one_line_error(r)
    assert str(missing) in r.stderr


def test_data_scan_bad_kind_path(tmp_path):
    _assert_one_line_error(_invoke("data", "scan", f"emodb={tmp_path / 'nope'}"))


def test_data_scan_unrecognised_layout(tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "clip.wav"), np.zeros(800, np.float32), 8000)
    r = _invoke("data", "scan", str(tmp_path))
    _assert_one_line_error(r)
    assert "not recognised" in r.stderr


def test_data_scan_needs_a_path():
    r = _invoke("data", "scan")
    assert r.exit_code != 0


# --- real processes -----------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_python_dash_m_version(tmp_path):
    p = _run([sys.executable, "-m", "emort.cli.app", "--version"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"emort {__version__}"


def test_python_dash_m_error_exit_code(tmp_path):
    p = _run([sys.executable, "-m", "emort.cli.app", "data", "scan", str(tmp_path / "missing")], tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1


def test_console_script_version(tmp_path):
    script = Path(sys.executable).parent / "emort"
    if not script.exists():
        pytest.skip(f"no `emort` console script next to {sys.executable} (package not pip-installed here)")
    p = _run([str(script), "--version"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"emort {__version__}"


def test_data_scan_adds_up_two_folders_of_one_corpus_and_never_writes_over_audio(emodb_root, tmp_path):
    import shutil

    files = sorted(Path(emodb_root).rglob("*.flac"))[:4]
    for k, f in enumerate(files):
        d = tmp_path / ("a" if k < 2 else "b") / "wav"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    out = tmp_path / "c.json"
    r = _invoke("data", "scan", f"emodb={tmp_path / 'a'}", f"emodb={tmp_path / 'b'}", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert sum(c["files"] for c in json.loads(out.read_text()).values()) == 4
    victim = tmp_path / "a" / "wav" / files[0].name
    r = _invoke("data", "scan", f"emodb={tmp_path / 'a'}", "--json", str(victim))
    _assert_one_line_error(r)
    assert victim.read_bytes() == files[0].read_bytes()
