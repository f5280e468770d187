"""The CLI's shape: every command's --help works without heavy imports, shows flags as flags,
and the shared error wrapper turns any failure into one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from emort.cli.app import app
from emort.cli.common import user_errors
from emort.runtime.errors import EmortError

runner = CliRunner()

MINE = [["data", "scan"], ["train", "ser"], ["train", "stats"], ["train", "diffusion"], ["export", "onnx"], ["export", "tensorrt"],
        ["eval", "ser"], ["eval", "enhance"], ["bench"]]


def test_top_level_lists_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0, r.output
    for name in ("enhance", "score", "bench", "data", "train", "export", "eval"):
        assert f"  {name} " in r.output, name


@pytest.mark.parametrize("cmd", MINE, ids=" ".join)
def test_help_shows_flags_and_real_defaults(cmd):
    r = runner.invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "<bool>" not in r.output and "Default from the bundle" not in r.output


def test_boolean_options_read_as_flag_pairs():
    out = runner.invoke(app, ["train", "stats", "--help"]).output
    assert "--fit-val / --no-fit-val" in out and "[default: fit-val]" in out
    out = runner.invoke(app, ["export", "tensorrt", "--help"]).output
    assert "--fp16 / --no-fp16" in out
    out = runner.invoke(app, ["train", "ser", "--help"]).output
    assert "[default: 60; x>=1]" in out  # --epochs: default and range
    assert "--paper" not in out and "--norm" not in out  # now recipes


def test_bench_hands_its_arguments_to_the_benchmark():
    """`emort bench ARGS` is `python benchmarks/bench.py ARGS`: that parser answers --help and rejects bad values."""
    r = runner.invoke(app, ["bench", "--help"])
    assert r.exit_code == 0 and "usage: emort bench" in r.output and "--no-sweep" in r.output
    r = runner.invoke(app, ["bench", "--threads", "0"])
    assert r.exit_code == 2 and "--threads" in r.stderr


def test_help_imports_no_torch():
    code = ("import sys; from emort.cli.app import app; from typer.testing import CliRunner; "
            "[CliRunner().invoke(app, c + ['--help']) for c in (['train', 'ser'], ['eval', 'enhance'], ['bench'])]; "
            "heavy = [m for m in ('torch', 'librosa', 'onnxruntime') if m in sys.modules]; "
            "assert not heavy, heavy")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_train_ser_rejects_out_of_range_flags():
    r = runner.invoke(app, ["train", "ser", "--data", "csv=x.csv", "--epochs", "0"])
    assert r.exit_code == 2 and "--epochs" in r.output


def _one_cmd_app(fn) -> typer.Typer:
    a = typer.Typer()
    a.command()(user_errors(fn))
    a.command("other")(lambda: None)  # two commands, so the first is invoked by name
    return a


def test_user_errors_turns_failures_into_one_line():
    def emort_error():
        raise EmortError("clip.wav: cannot read")

    def unexpected():
        raise KeyError("x")

    r = runner.invoke(_one_cmd_app(emort_error), ["emort-error"])
    assert r.exit_code == 2 and r.stderr.strip() == "error: clip.wav: cannot read"
    r = runner.invoke(_one_cmd_app(unexpected), ["unexpected"])
    assert r.exit_code == 1 and r.stderr.strip() == "error: KeyError: 'x'"
    assert "Traceback" not in r.output


def test_ctrl_c_reraised_by_a_library_is_an_interrupt_not_an_error():
    def loading():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # noqa: B904 (what onnxruntime's import does with Ctrl-C)

    r = runner.invoke(_one_cmd_app(loading), ["loading"])
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted while loading (no report written)"


def test_user_errors_lets_exits_through():
    def done():
        raise typer.Exit(3)

    assert runner.invoke(_one_cmd_app(done), ["done"]).exit_code == 3


def test_score_start_up_imports_nothing_heavy(tmp_path):
    """A whole `emort score` run imports neither torch, librosa nor pydantic (typer 0.29 coerces
    options through pydantic: +0.09 s of start-up per command, hence the pin below 0.29)."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    code = (f"import sys; sys.argv = ['emort', 'score', {str(wav)!r}]\n"
            "from emort.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('HEAVY', sorted(m for m in ('torch', 'librosa', 'pydantic', 'sklearn') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout[-500:]


def test_ctrl_c_while_the_cli_starts_is_one_line_and_exit_130():
    """An interrupt during the CLI's imports ends the process with one line and 130, no
    traceback; once main() runs, Ctrl-C reaches the commands again (they report their batch)."""
    # (a terminal's Python: Ctrl-C raises KeyboardInterrupt; CI may start us with SIGINT ignored)
    # (a terminal's Python: Ctrl-C raises KeyboardInterrupt; CI may start us with SIGINT ignored.)
    # The interrupt arrives while the entry point imports the CLI (a finder sends it on that import).
    code = ("import os, signal, sys, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "class Interrupt:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'emort.cli.app':\n            os.kill(os.getpid(), signal.SIGINT)\n            time.sleep(0.5)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Interrupt())\nsys.argv = ['/usr/local/bin/emort', 'score', 'x.wav']\n"
            "from emort.cli.entry import main\nmain()\nprint('not reached')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr.strip() == "interrupted before any work" and "not reached" not in r.stdout
    code = ("import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nsys.argv = ['emort', '--version']\n"
            "from emort.cli.entry import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().endswith("True"), r.stdout + r.stderr
    import signal

    import emort.cli.entry  # noqa: F401 - imported by this test process too: its Ctrl-C stays pytest's

    assert signal.getsignal(signal.SIGINT) is not emort.cli.entry._stop_while_starting
