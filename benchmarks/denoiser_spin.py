"""``python benchmarks/denoiser_spin.py``: should the denoiser's onnxruntime threads spin?

``Enhancer.load(spin=True)`` lets the denoiser session's pool threads wait spinning between
operators instead of sleeping (the default is off). Measured side by side, in turn, on real clips:

* **in-process**: ``Enhancer.enhance`` of ``--clips`` EmoDB clips, alternating the two settings
  clip by clip over ``--rounds`` rounds, once with numpy's BLAS on one thread (what the CLI sets)
  and once with it on every core (numpy's default); median milliseconds per call and the median of
  the per-clip ratios;
* **whole process**: ``emort enhance`` on ``--files`` files of the three corpora, as fresh
  processes, the two settings in turn for ``--pairs`` pairs; median wall seconds and CPU seconds
  (user + system of the child) and the median of the per-pair ratios.

Prints a table, writes JSON (``--json``). Docs: docs/design.md, "Speed on a CPU".
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli_throughput import compile_bytecode, mixed_files  # noqa: E402
from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info, print_and_write  # noqa: E402

#: Runs the CLI with ``Enhancer.load(spin=True)`` as the default (the CLI has no option for it).
SPIN_CLI = ("import emort.runtime.enhancer as m; f = m.Enhancer.load.__func__; "
            "m.Enhancer.load = classmethod(lambda cls, *a, **k: f(cls, *a, **{**k, 'spin': True})); "
            "from emort.cli.app import main; main()")


def in_process(files: list[Path], rounds: int, blas_threads: int) -> dict:
    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from emort import Enhancer

    audio = [sf.read(str(f), dtype="float32") for f in files]
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        enh = {s: Enhancer.load(device="cpu", spin=s) for s in (False, True)}
        opts = enh[False].options()
        times: dict[bool, list[float]] = {False: [], True: []}
        for x, sr in audio[:2]:
            for e in enh.values():
                e.enhance(x, sr, "angry", options=opts)
        for r in range(rounds):
            for x, sr in audio:
                for s in ((False, True) if r % 2 == 0 else (True, False)):
                    t0 = time.perf_counter()
                    enh[s].enhance(x, sr, "angry", options=opts)
                    times[s].append(time.perf_counter() - t0)
    ratio = [b / a for a, b in zip(times[False], times[True])]
    return {"blas_threads": blas_threads, "calls": len(ratio), "off_ms": 1e3 * statistics.median(times[False]),
            "on_ms": 1e3 * statistics.median(times[True]), "ratio_median": statistics.median(ratio)}


def whole_process(files: list[Path], pairs: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="emort-spin-"))
    try:
        def cmd(spin: bool) -> list[str]:
            head = [sys.executable, "-c", SPIN_CLI] if spin else [sys.executable, "-m", "emort.cli.app"]
            return [*head, "enhance", *map(str, files), "-e", "angry", "-o", str(tmp / ("on" if spin else "off")), "--overwrite"]

        res: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for p in range(pairs + 1):  # the first pair warms the caches and is not counted
            for s in ((False, True) if p % 2 == 0 else (True, False)):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                r = subprocess.run(cmd(s), capture_output=True, text=True)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if r.returncode != 0:
                    raise SystemExit(f"emort enhance exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
                if p:
                    res[s].append((wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {s: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for s, v in res.items()}
    return {"files": len(files), "pairs": pairs, "off_wall_s": med[False][0], "on_wall_s": med[True][0],
            "off_cpu_s": med[False][1], "on_cpu_s": med[True][1],
            "wall_ratio_median": statistics.median(b[0] / a[0] for a, b in zip(res[False], res[True])),
            "cpu_ratio_median": statistics.median(b[1] / a[1] for a, b in zip(res[False], res[True]))}


def table(rep: dict) -> str:
    m = rep["machine"]
    lines = [f"# Denoiser threads spinning or not ({m['cpu_model']}, {m['cores']} cores; load average {m['load_average']})", "",
             "| where | setting | off | on (`spin=True`) | on / off (median of pairs) |", "|---|---|---:|---:|---:|"]
    for r in rep["in_process"]:
        lines.append(f"| in-process, `Enhancer.enhance`, {r['calls']} calls each | numpy BLAS on {r['blas_threads']} thread(s) | "
                     f"{r['off_ms']:.1f} ms | {r['on_ms']:.1f} ms | {r['ratio_median']:.3f} |")
    w = rep["whole_process"]
    lines.append(f"| whole process, `emort enhance` {w['files']} files, {w['pairs']} pairs | wall | {w['off_wall_s']:.2f} s | "
                 f"{w['on_wall_s']:.2f} s | {w['wall_ratio_median']:.3f} |")
    lines.append(f"| | CPU (user + system) | {w['off_cpu_s']:.2f} s | {w['on_cpu_s']:.2f} s | {w['cpu_ratio_median']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder holding emodb/, ravdess/, nemo/ (default: ../shared/data)")
    ap.add_argument("--clips", type=int, default=30, help="EmoDB clips for the in-process rows (default 30)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=120, help="files for the whole-process rows (default 120)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the report here (and the table beside it as .md)")
    a = ap.parse_args(argv)
    from emort.runtime.session import limit_blas_threads, retain_freed_memory

    limit_blas_threads(1)
    retain_freed_memory()
    data = Path(a.data or shared_data_dir())
    clips = corpus_files(data, "emodb")[100 : 100 + a.clips]
    rep = {"bytecode": compile_bytecode(), "in_process": [in_process(clips, a.rounds, t) for t in (1, len(os.sched_getaffinity(0)))],
           "whole_process": whole_process(mixed_files(data, a.files), a.pairs)}
    rep["machine"] = machine_info(1)
    print_and_write(table(rep), rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
