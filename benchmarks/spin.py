"""``python benchmarks/spin.py``: how should the onnxruntime sessions' threads wait between operators?

Settings of ``spin`` (:class:`emort.runtime.session.OrtModel`, ``Enhancer.load`` and
``Scorer.load`` take it), measured side by side, in turn, on real clips:

* ``off``: never spin (``spin=False``; emort 0.5 to 0.13);
* ``50``, ``200``, ``1000``: spin at most that many microseconds, then sleep (the default since
  0.14 is :data:`emort.runtime.session.SPIN_US`);
* ``unbounded``: ``spin=True`` (the denoiser's threads spin as onnxruntime does by default; the
  SER's and style encoder's at the default; ``Scorer.load``'s sessions all unbounded).

Rows:

* **whole process**: ``emort enhance`` on ``--files`` files of the three corpora and ``emort score``
  on ``--score-files`` EmoDB files, as fresh processes, every setting once per round in rotating
  order, for ``--rounds`` rounds after one uncounted; median wall seconds and CPU seconds (user +
  system of the child) and the median of the per-round ratios to ``off``;
* **in-process**: ``Enhancer.enhance`` of ``--clips`` EmoDB clips with numpy's BLAS on one thread
  (as the CLI sets it), ``off`` against the default in turn, each call after a 50 ms pause (so
  that no session's threads still spin from the call before); median milliseconds per call and
  the median of the per-clip ratios.

Prints a table, writes JSON (``--json``). Docs: docs/design.md, "Speed on a CPU"; docs/bench/spin.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli_throughput import compile_bytecode, mixed_files  # noqa: E402
from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info, print_and_write, run_timed  # noqa: E402

#: Setting name -> the ``spin`` argument.
SETTINGS: dict[str, bool | int] = {"off": False, "50": 50, "200": 200, "1000": 1000, "unbounded": True}

#: Runs the CLI with ``Enhancer.load`` and ``Scorer.load`` given ``spin`` (the CLI has no option for it).
CLI = ("import sys; import emort.runtime.enhancer as e, emort.runtime.scorer as s; spin = {spin!r}; "
       "[setattr(c, 'load', classmethod(lambda cls, *a, _f=c.load.__func__, **k: _f(cls, *a, **{{**k, 'spin': spin}}))) "
       "for c in (e.Enhancer, s.Scorer)]; sys.argv[0] = 'emort'; from emort.cli.app import main; main()")


def in_process(files: list[Path], rounds: int) -> dict:
    import soundfile as sf

    from emort import Enhancer
    from emort.runtime.session import SPIN_US

    audio = [sf.read(str(f), dtype="float32") for f in files]
    enh = {"off": Enhancer.load(device="cpu", spin=False), "default": Enhancer.load(device="cpu", spin=SPIN_US)}
    opts = enh["off"].options()
    times: dict[str, list[float]] = {k: [] for k in enh}
    for x, sr in audio[:2]:
        for e in enh.values():
            e.enhance(x, sr, "angry", options=opts)
    n = 0
    for _ in range(rounds):
        for x, sr in audio:
            for k in (("off", "default") if n % 2 == 0 else ("default", "off")):
                time.sleep(0.05)
                t0 = time.perf_counter()
                enh[k].enhance(x, sr, "angry", options=opts)
                times[k].append(time.perf_counter() - t0)
            n += 1
    return {"calls": len(times["off"]), "spin_us": SPIN_US, "off_ms": 1e3 * statistics.median(times["off"]),
            "default_ms": 1e3 * statistics.median(times["default"]),
            "ratio": statistics.median(b / a for a, b in zip(times["off"], times["default"]))}


def whole_process(job: str, files: list[Path], rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="emort-spin-"))
    names = list(SETTINGS)
    try:
        def cmd(setting: str) -> list[str]:
            head = [sys.executable, "-c", CLI.format(spin=SETTINGS[setting])]
            if job == "enhance":
                return [*head, "enhance", *map(str, files), "-e", "angry", "-o", str(tmp / setting), "--overwrite"]
            return [*head, "score", *map(str, files)]

        res: dict[str, list[tuple[float, float]]] = {s: [] for s in names}
        for r in range(rounds + 1):  # the first round warms the caches and is not counted
            k = r % len(names)
            for s in names[k:] + names[:k]:
                p, wall, cpu = run_timed(cmd(s))
                if p.returncode != 0:
                    raise SystemExit(f"emort {job} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
                if r:
                    res[s].append((wall, cpu))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {}
    for s in names:
        rows[s] = {"wall_s": statistics.median(w for w, _ in res[s]), "cpu_s": statistics.median(c for _, c in res[s]),
                   "wall_ratio": statistics.median(b[0] / a[0] for a, b in zip(res["off"], res[s])),
                   "cpu_ratio": statistics.median(b[1] / a[1] for a, b in zip(res["off"], res[s]))}
    return {"job": job, "files": len(files), "rounds": rounds, "settings": rows}


def table(rep: dict) -> str:
    from emort.runtime.session import SPIN_US

    m = rep["machine"]
    names = list(SETTINGS)
    head = [f"{n} us" if isinstance(SETTINGS[n], int) and not isinstance(SETTINGS[n], bool) else n for n in names]
    head = [h + (" (default)" if SETTINGS[n] == SPIN_US and not isinstance(SETTINGS[n], bool) else "") for h, n in zip(head, names)]
    lines = [f"# onnxruntime threads between operators: never spinning, spinning at most N us, spinning unbounded "
             f"({m['cpu_model']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}; load average {m['load_average']})", "",
             "| job | measure | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(names)]
    for w in rep["whole_process"]:
        what = f"`emort {w['job']}`, {w['files']} files, {w['rounds']} rounds"
        st = w["settings"]
        lines.append(f"| {what} | wall s | " + " | ".join(f"{st[n]['wall_s']:.2f}" for n in names) + " |")
        lines.append("| | wall / off | " + " | ".join(f"{st[n]['wall_ratio']:.3f}" for n in names) + " |")
        lines.append("| | CPU s (user + system) | " + " | ".join(f"{st[n]['cpu_s']:.2f}" for n in names) + " |")
        lines.append("| | CPU / off | " + " | ".join(f"{st[n]['cpu_ratio']:.3f}" for n in names) + " |")
    r = rep["in_process"]
    lines += ["", f"In-process, `Enhancer.enhance` of EmoDB clips, {r['calls']} calls each, numpy's BLAS on one thread, "
              f"each call after a 50 ms pause: off {r['off_ms']:.1f} ms, spinning at most {r['spin_us']} us {r['default_ms']:.1f} ms "
              f"(median of per-clip ratios {r['ratio']:.3f}).", "",
              "Whole-process ratios are medians of per-round ratios to `off`; every setting ran once per round, the order rotating."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder holding emodb/, ravdess/, nemo/ (default: ../shared/data)")
    ap.add_argument("--clips", type=int, default=30, help="EmoDB clips for the in-process row (default 30)")
    ap.add_argument("--clip-rounds", type=int, default=2, help="in-process rounds over the clips")
    ap.add_argument("--files", type=int, default=120, help="files for the whole-process enhance rows (default 120)")
    ap.add_argument("--score-files", type=int, default=408, help="EmoDB files for the whole-process score rows (default 408)")
    ap.add_argument("--rounds", type=int, default=5, help="counted rounds of the whole-process rows")
    ap.add_argument("--json", type=Path, help="write the report here (and the table beside it as .md)")
    a = ap.parse_args(argv)
    from emort.runtime.session import limit_blas_threads, retain_freed_memory

    limit_blas_threads(1)
    retain_freed_memory()
    data = Path(a.data or shared_data_dir())
    clips = corpus_files(data, "emodb")[100 : 100 + a.clips]
    rep = {"bytecode": compile_bytecode(),
           "whole_process": [whole_process("enhance", mixed_files(data, a.files), a.rounds),
                             whole_process("score", corpus_files(data, "emodb")[: a.score_files], a.rounds)],
           "in_process": in_process(clips, a.clip_rounds)}
    rep["machine"] = machine_info(1)
    print_and_write(table(rep), rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
