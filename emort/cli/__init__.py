"""Typer CLI. Heavy imports (torch, onnx) happen inside command bodies."""

import signal as _signal
import sys as _sys


def _stop_while_starting(signum, frame):  # Ctrl-C before a command runs: nothing done, no traceback
    _sys.stderr.write("interrupted before any work\n")
    raise SystemExit(130)


def _is_the_emort_command() -> bool:
    """Whether this process is the ``emort`` command (its script, or ``python -m emort.cli.app``),
    not a program that imports the CLI (tests, benchmarks), whose Ctrl-C stays its own."""
    import os

    arg0 = os.path.basename(_sys.argv[0] if _sys.argv else "").lower()
    return arg0 in ("emort", "emort.exe", "emort-script.py") or _sys.argv[0:1] == ["-m"] or arg0 == "app.py"


# Until emort.cli.app.main hands Ctrl-C back to the commands (which report what they did), an
# interrupt during the imports ends the `emort` process quietly (exit 130) instead of with a traceback.
if _is_the_emort_command() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _stop_while_starting)
