"""The timing harness and the machine it runs on.

Every timing: warm-up runs, then repeated runs (stopping early past a time budget),
reported as median and p90 in milliseconds. Thread counts are pinned for torch and
numpy's BLAS (threadpoolctl, when installed); onnxruntime gets its count at session start.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emort import __version__


def measure(fn: Callable[[], object], *, warmup: int, repeats: int, budget_s: float, min_runs: int = 3) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then up to ``repeats`` timed runs.

    Stops early once ``budget_s`` seconds of timed runs have passed and at least
    ``min_runs`` were done. Returns milliseconds: median, p90, min, mean, and the run count.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    times: list[float] = []
    start = time.perf_counter()
    min_runs = max(1, min(min_runs, repeats))
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_runs and time.perf_counter() - start > budget_s:
            break
    a = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "min_ms": float(a.min()),
            "mean_ms": float(a.mean()), "runs": len(times)}


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def torch_or_none():
    """The torch module, or None when the ``[train]`` extra is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@contextlib.contextmanager
def pinned_threads(threads: int, blas: bool = True):
    """Pin torch (when installed) and, with ``blas``, numpy's BLAS (threadpoolctl, when
    installed) to ``threads``."""
    with contextlib.ExitStack() as stack:
        if blas:
            try:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=threads))
            except ImportError:
                pass
        torch = torch_or_none()
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
        yield


def blas_threads() -> str:
    """numpy's BLAS library and its current thread count, as a short string."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed; set OMP_NUM_THREADS/OPENBLAS_NUM_THREADS to pin)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} x{i.get('num_threads')}" for i in blas) or "none found"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """1-, 5- and 15-minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads: int) -> dict:
    """CPU, cores, thread settings, load and library versions: the report's ``machine`` section."""
    import onnxruntime as ort

    torch = torch_or_none()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    info = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "threads": threads,
        "blas": blas_threads(),
        "load_average": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": list(ort.get_available_providers()),
        "torch": torch.__version__ if torch is not None else None,
        "emort": __version__,
    }
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_and_write(text: str, report: dict, json_path: Path | None) -> None:
    """Print a benchmark's table; with ``json_path``, write the report there and the table beside
    it as ``.md`` (both atomically)."""
    print(text)
    if json_path:
        from emort.runtime.atomic import write_json_atomic, write_text_atomic

        write_json_atomic(json_path, report)
        write_text_atomic(Path(json_path).with_suffix(".md"), text + "\n")


def run_timed(cmd: list[str], **kwargs) -> tuple:
    """Run ``cmd`` as a child process (``subprocess.run`` with output captured, ``kwargs`` passed
    on): ``(completed process, wall seconds, CPU seconds of the child: user + system)``."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
