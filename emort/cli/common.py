"""What every ``emort`` command shares: consoles, the one-line error exit, common options, progress, extras.

Kept free of heavy imports (no numpy, torch or runtime models) so ``emort --help`` stays fast.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from emort.runtime.errors import EmortError, flat
from emort.runtime.openvino_cpu import PRECISIONS

# soft wrap: a line is never broken by rich (piped into a log, the console is 80 columns wide and
# summary lines were cut mid-phrase); tables still fit the width
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

_log = logging.getLogger("emort.cli")

F = TypeVar("F", bound=Callable)

# Typer's usage errors (BadParameter and kin) derive from click's ClickException, vendored or not.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# Plain (click-style) help: flags read `--x / --no-x`, numbers show their range, and no `<bool>` column.
MARKUP_MODE = None


def sub_app(help: str) -> typer.Typer:
    """A command group (``emort data``, ``emort train``, ...) with the CLI's help style."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=MARKUP_MODE)


#: ``--precision``'s choices (the denoiser's arithmetic: emort.runtime.openvino_cpu), checked before any work.
Precision = enum.Enum("Precision", {p: p for p in PRECISIONS}, type=str)
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | tensorrt (auto: TensorRT where the tensorrt package sees a GPU, else CUDA, else CPU).")
BundleOpt = typer.Option(None, "--bundle", show_default="the one shipped with emort", help="Model bundle folder.")


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print ``error: msg`` in red on stderr as one line (paths verbatim, no rich markup) and exit with ``code``."""
    err_console.print(f"[red]error:[/] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(code)


def need(module: str, extra: str) -> None:
    """Exit with an install hint when ``module`` (from the ``emort[extra]`` extra) is not importable."""
    try:
        __import__(module)
    except ImportError:
        pin = "torch==2.13.0 " if module == "torch" else ""  # unpinned, pip may pull a multi-GB CUDA build
        fail(f"this command needs {module}: pip install {pin}'emort[{extra}]' (in a clone: pip install {pin}-e '.[{extra}]')")


def need_features(features: str) -> None:
    """Exit with one line unless the statistics-classifier feature set ``features`` is known and
    what computes it is installed: F0 (pyworld), eGeMAPS (opensmile), the GE2E encoder (resemblyzer)."""
    from emort.training.ustats import FEATURE_SETS

    if features not in FEATURE_SETS:
        fail(f"--features: choose from {', '.join(FEATURE_SETS)}")
    if "pitch" in features:
        from emort.runtime.prosody import _pyworld

        _pyworld()  # F0: a core dependency, checked before any work
    if "egemaps" in features:
        need("opensmile", "eval")
    if "ge2e" in features:
        from emort.runtime.errors import EmortError
        from emort.training.voice import import_resemblyzer

        try:
            import_resemblyzer()
        except EmortError as e:
            fail(str(e))


def explicit(ctx: typer.Context, name: str) -> bool:
    """True when parameter ``name`` was given on the command line (or by environment), not left at its default."""
    src = ctx.get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def report_path(text: str) -> Path:
    """Typer parser of a report file option (``--json``): a path ending in a separator names a
    folder, refused as a usage error (``Path`` drops the separator, so ``--json out/`` had written
    a file called ``out``)."""
    if text.endswith(("/", os.sep)):
        raise typer.BadParameter(f"{text!r} ends in '/': that names a folder; give the report a file name (e.g. {text}report.json)")
    return Path(text)


def one_line(text: object) -> str:
    """:func:`emort.runtime.errors.flat`, rich markup escaped: for ``console.print``."""
    return escape(flat(text))


def positive(value: float | int | None) -> float | int | None:
    """Typer callback: refuse zero and negative numbers (``None`` = not given passes)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be > 0; got {value}")
    return value


def user_errors(fn: F) -> F:
    """Decorator for commands that process one thing: no traceback reaches the user.

    ``EmortError`` (a cause the user can fix) becomes ``fail(message)``; any other exception
    becomes one line naming its type (the traceback is logged, visible with ``emort -v``).
    Typer's own exits, aborts and usage errors pass through unchanged. Batch commands
    (enhance, score) use it for what fails the whole run (a bad bundle, an unwritable report);
    a file that fails is reported in its record and the batch goes on.
    """

    @functools.wraps(fn)  # keeps the signature, which Typer reads for the options
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, _USAGE_ERROR):
            raise
        except EmortError as e:
            fail(str(e))
        except Exception as e:
            _log.info("unexpected error", exc_info=True)
            stop = _caused_by_interrupt(e)
            if stop is not None:  # Ctrl-C inside a library that re-raises it (onnxruntime's import: ImportError)
                err_console.print("interrupted while loading (no report written)", soft_wrap=True, highlight=False)
                raise typer.Exit(interrupt_status(stop)) from None
            fail(f"{type(e).__name__}: {e}", code=1)

    return wrapper  # type: ignore[return-value]


def _caused_by_interrupt(e: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM's Terminated) in ``e``'s chain of causes and contexts, or None."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return None


#: Exit status of a batch stopped by Ctrl-C (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Exit status of a batch stopped by SIGTERM (128 + SIGTERM), e.g. a scheduler ending a job.
EXIT_TERMINATED = 143


def interrupt_status(e: BaseException) -> int:
    """Exit status for a run stopped by ``e``: 143 for SIGTERM (:class:`emort.cli.entry.Terminated`), else 130."""
    from emort.cli.entry import Terminated

    return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


def say_interrupted(summary: dict, json_out, resumes: bool = True) -> None:
    """One line after Ctrl-C: what was done, and what running the same command again does
    (``resumes``: it skips the outputs already written; else it starts again)."""
    where = f"; the report ({escape(str(json_out))}) says \"complete\": false" if json_out is not None else ""
    again = ("run the same command again to carry on (finished outputs are skipped)" if resumes
             else "run the same command again to score every file")
    earlier = summary.get("done", summary["processed"]) - summary["processed"]  # skipped as done by an earlier run
    what = f"{summary['processed']} file(s) done in this run" + (f" ({earlier} reached before the stop were done earlier, skipped)" if earlier else "")
    err_console.print(f"interrupted after {what}{where}; {again}", soft_wrap=True, highlight=False)


def progress():
    """A rich progress bar on stderr (count, elapsed, remaining); disabled when stderr is not a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=err_console, transient=False, disable=not err_console.is_terminal)


def log_when_no_tty() -> None:
    """Training under nohup/CI has no progress bar: log one line per epoch/checkpoint instead."""
    if not sys.stderr.isatty():
        logging.getLogger("emort.training").setLevel(logging.INFO)


class BatchProgress:
    """A progress-bar task for a batch-layer run: its total arrives with the batch's
    ``on_start(n)`` (after discovery), and the shard in hand is announced then."""

    def __init__(self, prog, name: str, shard=None):
        self.prog, self.shard = prog, shard
        self.task = prog.add_task(name, total=None)
        self.started = False

    def start(self, n: int) -> None:
        self.started = True
        self.prog.update(self.task, total=n)
        if self.shard is not None:
            err_console.print(f"shard {self.shard}: {self.shard.taken} of the {self.shard.found} file(s) found", soft_wrap=True)

    def advance(self) -> None:
        """One file done (records before ``start`` are discovery notes, not files)."""
        if self.started:
            self.prog.advance(self.task)
