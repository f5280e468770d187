"""``emort bench``: the benchmark of the source checkout (``benchmarks/bench.py``).

``emort.bench.main(argv)`` finds the checkout's ``benchmarks/`` and runs it; its parser is
the one definition of the options (``python benchmarks/bench.py ARGS`` is ``emort bench ARGS``).
This command hands it the arguments untouched, ``--help`` included, and exits with its status.
"""

from __future__ import annotations

import typer

from emort.cli.common import user_errors

# Everything after `bench` goes to the benchmark's own parser, which also answers --help.
BENCH_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@user_errors
def bench(ctx: typer.Context) -> None:
    """Latency, real-time factor and throughput of a bundle.

    Per component and end to end, with a cost model; PyTorch eager and every onnxruntime
    backend side by side. Options: `emort bench --help`.
    """
    from emort.bench import main  # imported here: it loads the benchmarks (numpy) only when run

    raise typer.Exit(main(list(ctx.args)))
