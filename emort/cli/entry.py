"""The ``emort`` script's entry point: Ctrl-C while the CLI's libraries load is one line, and
SIGTERM (what Slurm, Kubernetes and ``kill`` send a job) stops a command as Ctrl-C does."""

from __future__ import annotations

import signal
import sys


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM once the CLI runs: a batch stops as on Ctrl-C (its
    report written, its finished outputs recorded so that a rerun resumes them), and the process
    exits with 143 (128 + SIGTERM) instead of 130."""


def _terminate(signum, frame):
    raise Terminated()


def _stop_while_starting(signum, frame):  # Ctrl-C before a command runs: nothing done, no traceback
    sys.stderr.write("interrupted before any work\n")
    raise SystemExit(130)  # emort.cli.common.EXIT_INTERRUPTED (not imported: this runs before the CLI's libraries load)


def main() -> None:
    """Run the ``emort`` command. An interrupt while its libraries load (typer, numpy,
    onnxruntime: about 0.2 s) ends the process with one line and exit status 130 instead of a
    traceback; from then on Ctrl-C reaches the commands, which report what they did. A process
    started with SIGINT ignored (``nohup``, a background job) keeps it ignored. SIGTERM, unless
    the process started with it ignored, raises :class:`Terminated`: without it a job killed by
    its scheduler left its last finished output unrecorded, refused by the rerun."""
    starting = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if starting:
        signal.signal(signal.SIGINT, _stop_while_starting)
    from emort.cli.app import main as run

    if starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    run()
