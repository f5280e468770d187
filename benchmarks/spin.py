"""``python benchmarks/spin.py``: how should the onnxruntime sessions' threads wait between operators?

Three settings of ``spin`` (:class:`emort.runtime.session.OrtModel`, ``Enhancer.load`` and
``Scorer.load`` take it), measured side by side, in turn, on real clips:

* ``off``: never spin (``spin=False``; emort 0.13's default);
* ``bounded``: spin at most :data:`emort.runtime.session.SPIN_US` microseconds, then sleep (the
  default since 0.14);
* ``unbounded``: ``spin=True`` (the denoiser's threads spin as onnxruntime does by default; the
  SER's and style encoder's stay bounded).

Rows:

* **in-process**: ``Enhancer.enhance`` of ``--clips`` EmoDB clips with numpy's BLAS on one thread
  (as the CLI sets it), the settings in turn clip by clip over ``--rounds`` rounds; median
  milliseconds per call and the median of the per-clip ratios to ``off``;
* **whole process**: ``emort enhance`` on ``--files`` files of the three corpora and ``emort score``
  on ``--score-files`` EmoDB files, as fresh processes, the settings in turn (the order rotating)
  for ``--rounds-cli`` rounds after one uncounted; median wall seconds and CPU seconds (user +
  system of the child) and the median of the per-round ratios to ``off``.

Prints a table, writes JSON (``--json``). Docs: docs/design.md, "Speed on a CPU"; docs/bench/spin.md.
"""

from __future__ import annotations

import argparse
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

SETTINGS = ("off", "bounded", "unbounded")

#: Runs the CLI with ``Enhancer.load`` and ``Scorer.load`` given ``spin`` (the CLI has no option for it).
CLI = ("import sys; import emort.runtime.enhancer as e, emort.runtime.scorer as s; spin = {spin!r}; "
       "[setattr(c, 'load', classmethod(lambda cls, *a, _f=c.load.__func__, **k: _f(cls, *a, **{{**k, 'spin': spin}}))) "
       "for c in (e.Enhancer, s.Scorer)]; sys.argv[0] = 'emort'; from emort.cli.app import main; main()")


def spin_value(setting: str) -> bool | int:
    from emort.runtime.session import SPIN_US

    return {"off": False, "bounded": SPIN_US, "unbounded": True}[setting]


def in_process(files: list[Path], rounds: int) -> dict:
    import soundfile as sf

    from emort import Enhancer

    audio = [sf.read(str(f), dtype="float32") for f in files]
    enh = {s: Enhancer.load(device="cpu", spin=spin_value(s)) for s in SETTINGS}
    opts = enh["off"].options()
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for x, sr in audio[:2]:
        for e in enh.values():
            e.enhance(x, sr, "angry", options=opts)
    n = 0
    for _ in range(rounds):
        for x, sr in audio:
            order = SETTINGS[n % 3:] + SETTINGS[:n % 3]
            n += 1
            for s in order:
                t0 = time.perf_counter()
                enh[s].enhance(x, sr, "angry", options=opts)
                times[s].append(time.perf_counter() - t0)
    return {"calls": len(times["off"]), **{f"{s}_ms": 1e3 * statistics.median(times[s]) for s in SETTINGS},
            **{f"{s}_ratio": statistics.median(b / a for a, b in zip(times["off"], times[s])) for s in SETTINGS[1:]}}


def whole_process(job: str, files: list[Path], rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="emort-spin-"))
    try:
        def cmd(setting: str) -> list[str]:
            head = [sys.executable, "-c", CLI.format(spin=spin_value(setting))]
            if job == "enhance":
                return [*head, "enhance", *map(str, files), "-e", "angry", "-o", str(tmp / setting), "--overwrite"]
            return [*head, "score", *map(str, files)]

        res: dict[str, list[tuple[float, float]]] = {s: [] for s in SETTINGS}
        for r in range(rounds + 1):  # the first round warms the caches and is not counted
            for s in SETTINGS[r % 3:] + SETTINGS[:r % 3]:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                p = subprocess.run(cmd(s), capture_output=True, text=True)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if p.returncode != 0:
                    raise SystemExit(f"emort {job} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
                if r:
                    res[s].append((wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict = {"job": job, "files": len(files), "rounds": rounds}
    for s in SETTINGS:
        out[f"{s}_wall_s"] = statistics.median(w for w, _ in res[s])
        out[f"{s}_cpu_s"] = statistics.median(c for _, c in res[s])
        if s != "off":
            out[f"{s}_wall_ratio"] = statistics.median(b[0] / a[0] for a, b in zip(res["off"], res[s]))
            out[f"{s}_cpu_ratio"] = statistics.median(b[1] / a[1] for a, b in zip(res["off"], res[s]))
    return out


def table(rep: dict) -> str:
    from emort.runtime.session import SPIN_US

    m = rep["machine"]
    lines = [f"# onnxruntime threads: never spinning, spinning at most {SPIN_US} us, spinning unbounded "
             f"({m['cpu_model']}, {m['cores']} cores; load average {m['load_average']})", "",
             "| where | measure | off | bounded (default) | unbounded | bounded / off | unbounded / off |",
             "|---|---|---:|---:|---:|---:|---:|"]
    r = rep["in_process"]
    lines.append(f"| in-process, `Enhancer.enhance`, {r['calls']} calls each, BLAS on 1 thread | ms per call | {r['off_ms']:.1f} | "
                 f"{r['bounded_ms']:.1f} | {r['unbounded_ms']:.1f} | {r['bounded_ratio']:.3f} | {r['unbounded_ratio']:.3f} |")
    for w in rep["whole_process"]:
        what = f"whole process, `emort {w['job']}` {w['files']} files, {w['rounds']} rounds"
        for key, unit in (("wall", "wall s"), ("cpu", "CPU s (user + system)")):
            lines.append(f"| {what if key == 'wall' else ''} | {unit} | {w[f'off_{key}_s']:.2f} | {w[f'bounded_{key}_s']:.2f} | "
                         f"{w[f'unbounded_{key}_s']:.2f} | {w[f'bounded_{key}_ratio']:.3f} | {w[f'unbounded_{key}_ratio']:.3f} |")
    lines += ["", "Ratios are medians of per-call (in-process) or per-round (whole process) ratios; the settings ran in turn, "
              "the order rotating."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder holding emodb/, ravdess/, nemo/ (default: ../shared/data)")
    ap.add_argument("--clips", type=int, default=30, help="EmoDB clips for the in-process row (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="in-process rounds over the clips")
    ap.add_argument("--files", type=int, default=120, help="files for the whole-process enhance rows (default 120)")
    ap.add_argument("--score-files", type=int, default=408, help="EmoDB files for the whole-process score rows (default 408)")
    ap.add_argument("--rounds-cli", type=int, default=5, help="counted rounds of the whole-process rows")
    ap.add_argument("--json", type=Path, help="write the report here (and the table beside it as .md)")
    a = ap.parse_args(argv)
    from emort.runtime.session import limit_blas_threads, retain_freed_memory

    limit_blas_threads(1)
    retain_freed_memory()
    data = Path(a.data or shared_data_dir())
    clips = corpus_files(data, "emodb")[100 : 100 + a.clips]
    rep = {"bytecode": compile_bytecode(), "in_process": in_process(clips, a.rounds),
           "whole_process": [whole_process("enhance", mixed_files(data, a.files), a.rounds_cli),
                             whole_process("score", corpus_files(data, "emodb")[: a.score_files], a.rounds_cli)]}
    rep["machine"] = machine_info(1)
    print_and_write(table(rep), rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
