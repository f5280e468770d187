"""Benchmarks: ``python benchmarks/bench.py [options]`` is ``emort bench [options]``.

See ``emort bench --help`` and ``emort.bench`` for what is measured.
"""

from __future__ import annotations

import sys

from emort.cli.app import main

if __name__ == "__main__":
    sys.argv[1:1] = ["bench"]
    main()
