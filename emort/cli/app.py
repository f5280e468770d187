"""``emort`` command line: the Typer app, its version callback and the registration of every command.

The commands live one module per sub-app (``emort.cli.enhance``, ``score``, ``data``, ``train``,
``export``, ``eval``, ``bench``); shared pieces (consoles, ``fail``, common options) in ``emort.cli.common``.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

from emort import __version__
from emort.cli.augment import augment
from emort.cli.bench import BENCH_CONTEXT, bench
from emort.cli.common import MARKUP_MODE, console, err_console, interrupt_status
from emort.cli.data import data_app
from emort.cli.enhance import BundleDefaultsCommand, enhance
from emort.cli.eval import eval_app
from emort.cli.export import export_app
from emort.cli.report import report_app
from emort.cli.score import score
from emort.cli.train import train_app
from emort.runtime.errors import EmortError

app = typer.Typer(help="Make the emotion in recorded speech clearer, or change it.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=MARKUP_MODE)


def _version(value: bool) -> None:
    if value:
        console.print(f"emort {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# --- registration: commands are listed in this order, the groups after them ---------------------

app.command("enhance", cls=BundleDefaultsCommand)(enhance)
app.command("score")(score)
app.command("augment")(augment)
app.command("bench", context_settings=BENCH_CONTEXT, add_help_option=False)(bench)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(export_app, name="export")
app.add_typer(eval_app, name="eval")
app.add_typer(report_app, name="report")


def main() -> None:
    try:
        from emort.runtime.session import limit_blas_threads, retain_freed_memory

        # The CLI owns its process: numpy's BLAS on one thread (its idle threads would spin on the
        # cores onnxruntime needs) and the heap kept instead of page-faulted back in for every clip.
        limit_blas_threads(1)
        retain_freed_memory()
        app()
    except EmortError as e:  # anything user-caused that escaped a command
        err_console.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Ctrl-C (or SIGTERM) outside a batch's own handling (models loading, a training run)
        err_console.print("interrupted (no report written)", soft_wrap=True, highlight=False)
        sys.exit(interrupt_status(e))


if __name__ == "__main__":
    main()
