"""``python benchmarks/paired_cli.py --old CHECKOUT``: one CLI job, whole process, this checkout
against another one (an older version), in turn.

The other checkout is a plain folder with the project's files, e.g. a git worktree:
``git worktree add /tmp/emort-old f32f2a9``. Each run is a fresh process started outside both
folders with ``PYTHONPATH`` set to the checkout's root, so it imports that checkout's ``emort``
(checked) with this environment's libraries; both checkouts' modules are compiled to bytecode
first. The two run in turn, the order alternating, for ``--pairs`` pairs after one uncounted
pair; medians of wall and CPU seconds (user + system of the child) and of the per-pair ratios
new / old.

Jobs (``--job``): ``per-speaker`` (``emort score`` on ``--files`` EmoDB files with
``--speaker-pattern '^(\\d\\d)'``, as ``benchmarks/cli_throughput.py``'s per-speaker row),
``score`` (single clips), ``enhance`` (``--files`` files of the three corpora, ``-e angry``).
For the score jobs the last pair's JSON reports are compared file by file: how many predictions
differ and the largest difference of a probability. Prints a table, writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli_throughput import mixed_files  # noqa: E402
from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info, print_and_write, run_timed  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RUN = ("import sys, emort; root = {root!r}; "
       "assert emort.__file__.startswith(root), f'imported {{emort.__file__}}, not from {{root}}'; "
       "sys.argv[0] = 'emort'; from emort.cli.app import main; main()")


def job_args(job: str, data: Path, n: int, out: Path) -> list[str]:
    if job == "per-speaker":
        return ["score", *map(str, corpus_files(data, "emodb")[:n]), "--speaker-pattern", r"^(\d\d)"]
    if job == "score":
        return ["score", *map(str, corpus_files(data, "emodb")[:n])]
    return ["enhance", *map(str, mixed_files(data, n)), "-e", "angry", "-o", str(out), "--overwrite"]


def compare_reports(old: Path, new: Path) -> dict:
    """Two ``emort score --json`` reports of the same files: differing predictions, largest |p - p'|."""
    import json

    a = {r["path"]: r for r in json.loads(old.read_text())["results"]}
    b = {r["path"]: r for r in json.loads(new.read_text())["results"]}
    if set(a) != set(b):
        raise SystemExit(f"the two reports hold different files ({len(a)} and {len(b)})")
    differ = sum(a[p].get("prediction") != b[p].get("prediction") for p in a)
    diff = max((abs(a[p]["scores"][k] - b[p]["scores"][k]) for p in a if a[p].get("scores") for k in a[p]["scores"]), default=0.0)
    return {"files": len(a), "predictions_differ": differ, "max_abs_diff": diff}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the other checkout's root folder")
    ap.add_argument("--job", choices=("per-speaker", "score", "enhance"), default="per-speaker")
    ap.add_argument("--files", type=int, default=None, help="files (default: 408 for score jobs, 120 for enhance)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--data", type=Path, default=None, help="folder holding emodb/, ravdess/, nemo/ (default: ../shared/data)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    roots = {"old": a.old.resolve(), "new": REPO}
    for root in roots.values():
        compileall.compile_dir(str(root / "emort"), quiet=1)
    data = Path(a.data or shared_data_dir())
    n = a.files or (120 if a.job == "enhance" else 408)
    tmp = Path(tempfile.mkdtemp(prefix="emort-paired-"))
    res: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    try:
        for p in range(a.pairs + 1):  # the first pair warms the caches and is not counted
            for v in (("old", "new") if p % 2 == 0 else ("new", "old")):
                root = str(roots[v])
                report = ["--json", str(tmp / f"{v}.json")] if a.job != "enhance" and p == a.pairs else []
                cmd = [sys.executable, "-c", RUN.format(root=root), *job_args(a.job, data, n, tmp / v), *report]
                r, wall, cpu = run_timed(cmd, cwd=tmp, env={**os.environ, "PYTHONPATH": root})
                if r.returncode != 0:
                    raise SystemExit(f"{v} ({root}) exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
                if p:
                    res[v].append((wall, cpu))
        same = compare_reports(tmp / "old.json", tmp / "new.json") if a.job != "enhance" else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep = {"job": a.job, "files": n, "pairs": a.pairs, "old": str(roots["old"]), "new": str(roots["new"]),
           **{f"{v}_{k}_s": statistics.median(x[i] for x in res[v]) for v in res for i, k in enumerate(("wall", "cpu"))},
           "wall_ratio": statistics.median(b[0] / o[0] for o, b in zip(res["old"], res["new"])),
           "cpu_ratio": statistics.median(b[1] / o[1] for o, b in zip(res["old"], res["new"])),
           "outputs": same, "runs": res, "machine": machine_info(1)}
    m = rep["machine"]
    text = "\n".join([
        f"# `{a.job}`, {n} files, whole process: {roots['new']} (new) against {roots['old']} (old)",
        "", f"{a.pairs} pairs, the order alternating ({m['cpu_model']}, {m['cores']} cores; load average {m['load_average']})", "",
        "| measure | old | new | new / old (median of pairs) |", "|---|---:|---:|---:|",
        f"| wall s | {rep['old_wall_s']:.2f} | {rep['new_wall_s']:.2f} | {rep['wall_ratio']:.3f} |",
        f"| CPU s (user + system) | {rep['old_cpu_s']:.2f} | {rep['new_cpu_s']:.2f} | {rep['cpu_ratio']:.3f} |"]
        + ([] if same is None else ["", f"Outputs of the last pair, {same['files']} files: {same['predictions_differ']} predictions "
                                    f"differ; largest probability difference {same['max_abs_diff']:.2e}."]))
    print_and_write(text, rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
