"""``emort bench``: finds the source checkout's ``benchmarks/`` folder and runs it.

The benchmarks are development tools, not part of the installed package: they live in
``benchmarks/`` beside ``emort/`` in a source checkout (``pip install -e .``), and
:func:`main` imports ``benchmarks.bench`` from there. An installation without the
source tree gets one error line saying so.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from emort.runtime.errors import EmortError

#: The checkout root this package was imported from (``<root>/emort/bench.py``).
CHECKOUT = Path(__file__).resolve().parent.parent


def benchmarks_module(name: str = "bench"):
    """``benchmarks.<name>`` of this emort's source checkout (imported on first use).

    Raises EmortError when emort is installed without its source tree (no
    ``benchmarks/bench.py`` beside the package), or when another ``benchmarks`` package
    is already imported from elsewhere.
    """
    folder = CHECKOUT / "benchmarks"
    if not (folder / "bench.py").is_file() or not (CHECKOUT / "pyproject.toml").is_file():
        raise EmortError(f"emort bench runs the benchmarks/ folder of a source checkout, and this emort ({CHECKOUT / 'emort'}) "
                         "is installed without one; clone the repository and install it with `pip install -e .`")
    loaded = sys.modules.get("benchmarks")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != folder:
        raise EmortError(f"another 'benchmarks' package is already imported ({getattr(loaded, '__file__', None)}); "
                         f"run emort bench from a fresh process or `python {folder / 'bench.py'}`")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    return importlib.import_module(f"benchmarks.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    """``emort bench [options]``: ``benchmarks.bench.main(argv)`` of the checkout; returns the exit status.

    Raises EmortError (one line) when the checkout's ``benchmarks/`` folder cannot be found.
    """
    return benchmarks_module().main(argv)
