"""Whole-process throughput of ``emort score`` and ``emort enhance`` on real folders, beside the
same work done in-process.

What a user waits for: each row runs the CLI as a fresh process (interpreter start, imports,
model load, reading, compute, writing, the report) on 100+ real clips and times it from the
outside; the in-process row does the same files through the library
(:func:`emort.runtime.batch.score_files` / :func:`~emort.runtime.batch.enhance_files`) in this
process after the models are loaded, with the process settings the CLI gives itself (numpy's
BLAS on one thread, freed memory kept), so the difference is start-up and the CLI's own work. A
start-up row (``emort score`` on one file) and a 10-file row show how much of a small batch is
start-up. Each figure is the median of ``--repeats`` runs (min and max beside it), machine and
load average recorded; ratios between rows of one run are what carry to another machine.

    python benchmarks/cli_throughput.py --data ../shared/data --json docs/bench/cli_throughput.json
    python benchmarks/cli_throughput.py --no-score --compare-steps '' --prosody --json docs/bench/cli_prosody.json
    python benchmarks/cli_throughput.py --no-score --compare-steps '' --bf16   # on a CPU with AMX-BF16 or AVX512-BF16
    python benchmarks/cli_throughput.py --per-speaker-only --json docs/bench/cli_egemaps.json   # the per-speaker rows, --egemaps among them

Clips: ``--score-files`` EmoDB files (all 535 training, validation and test files are fine
for timing: nothing is scored against labels) and ``--enhance-files`` files taken in turn from
EmoDB (16 kHz), RAVDESS (48 kHz) and nEMO (24 kHz), so every input rate is in the mix.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clips import corpus_files  # noqa: E402
from benchmarks.timing import cpu_model, loadavg, print_and_write  # noqa: E402


def mixed_files(data: Path, n: int) -> list[Path]:
    """``n`` files taken in turn from EmoDB, RAVDESS and nEMO (evenly spread over each corpus)."""
    lists = [f for f in (corpus_files(data, c) for c in ("emodb", "ravdess", "nemo")) if f]
    if not lists:
        raise SystemExit(f"no corpora under {data}")
    out: list[Path] = []
    per = -(-n // len(lists))
    for files in lists:
        step = max(1, len(files) // per)
        out += files[::step][:per]
    return sorted(out[:n])


def audio_seconds(files: list[Path]) -> float:
    return sum(sf.info(str(f)).duration for f in files)


def _stats(values: list[float]) -> dict:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values), "runs": len(values)}


def row(task: str, where: str, files: list[Path], seconds: float, st: dict, **extra) -> dict:
    """One table row: the timing ``st`` (:func:`_stats`) of ``files`` holding ``seconds`` of audio."""
    med = st["median_s"]
    return {"task": task, "where": where, "files": len(files), "audio_s": round(seconds, 2), **st,
            "clips_per_s": len(files) / med, "rtf": med / seconds, **extra}


def whole_process(cmd: list[str], repeats: int, before=None) -> dict:
    """Wall time of ``cmd`` as a fresh process, ``repeats`` times (``before()`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} ... exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
    return _stats(times)


def tune_like_the_cli() -> None:
    """The process settings ``emort`` applies to itself (emort.cli.app.main)."""
    from emort.runtime.session import limit_blas_threads, retain_freed_memory

    limit_blas_threads(1)
    retain_freed_memory()


def in_process_score(files: list[Path], repeats: int) -> dict:
    from emort.runtime import batch
    from emort.runtime.scorer import Scorer
    from emort.runtime.session import default_threads

    tune_like_the_cli()
    scorer = Scorer.load(threads=max(1, default_threads() // batch.READ_THREADS))  # as `emort score` loads it
    list(batch.score_files(scorer, [str(f) for f in files[:8]]))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(1 for r in batch.score_files(scorer, [str(f) for f in files]) if r.status == "scored")
        times.append(time.perf_counter() - t0)
        assert n == len(files), f"{len(files) - n} files were not scored"
    return _stats(times)


def in_process_enhance(files: list[Path], emotion: str, repeats: int, out_root: Path, overrides: dict) -> dict:
    from emort.runtime import batch
    from emort.runtime.enhancer import Enhancer

    tune_like_the_cli()
    overrides = dict(overrides)
    enh = Enhancer.load(precision=overrides.pop("precision", "fp32"))
    opts = enh.options(**overrides)
    times = []
    for i in range(repeats + 1):  # the first run is the warm-up
        out = out_root / f"inproc{i}"
        t0 = time.perf_counter()
        recs = [r for r in batch.enhance_files(enh, [str(f) for f in files], out, emotion, opts) if r.status == "written"]
        if i:
            times.append(time.perf_counter() - t0)
        assert len(recs) == len(files), f"{len(files) - len(recs)} files were not written"
        shutil.rmtree(out)
    return _stats(times)


def compile_bytecode() -> str:
    """Compile emort's modules to bytecode before timing, as ``pip install`` does for an installed
    package: an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) would
    otherwise compile every emort module from source in every process (about 60 ms of a 0.4 s
    start-up on a 2-core AMD EPYC). Returns what was done, for the report."""
    import compileall

    import emort

    pkg = Path(emort.__file__).resolve().parent
    try:
        ok = compileall.compile_dir(str(pkg), quiet=1)
    except OSError as e:
        return f"not compiled ({e}): start-up rows include compiling emort's modules"
    return f"emort's modules compiled to bytecode before timing ({pkg}), as pip install does" if ok else \
        "compiling emort's modules failed: start-up rows may include compiling them"


def run(data: Path, n_score: int, n_enhance: int, repeats: int, emotion: str, steps_compare: list[int],
        score: bool = True, prosody: bool = False, per_speaker_only: bool = False, bf16: bool = False) -> dict:
    bytecode = compile_bytecode()
    emort = [sys.executable, "-m", "emort.cli.app"]
    score_files = corpus_files(data, "emodb")[:n_score]
    enhance_files = mixed_files(data, n_enhance)
    if len(score_files) < n_score or len(enhance_files) < n_enhance:
        raise SystemExit(f"found {len(score_files)} / {len(enhance_files)} files under {data}; need {n_score} / {n_enhance}")
    score_s, enhance_s = audio_seconds(score_files), audio_seconds(enhance_files)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="emort-cli-bench-"))
    try:
        def add(task, where, files, seconds, st, **extra):
            rows.append(row(task, where, files, seconds, st, **extra))

        if score or per_speaker_only:
            score_rows(add, emort, score_files, score_s, repeats, per_speaker_only)
        variants = [("defaults", [], {}), *((f"--steps {n}", ["--steps", str(n)], {"steps": n}) for n in steps_compare)]
        if prosody:  # the conversion path: pitch, tempo and level first, the spectral edit at the bundle's prosody amount
            variants.append(("--prosody", ["--prosody"], {"prosody": True}))
        if bf16:  # the denoiser in bf16 through OpenVINO (a CPU with AMX-BF16 or AVX512-BF16; docs/bench/0.22/bf16_avx512.md)
            variants.append(("--precision bf16", ["--precision", "bf16"], {"precision": "bf16"}))
        for label, extra, ov in [] if per_speaker_only else variants:
            out = tmp / "cli"
            st = whole_process([*emort, "enhance", *map(str, enhance_files), "-e", emotion, "-o", str(out), *extra], repeats,
                               before=lambda out=out: shutil.rmtree(out, ignore_errors=True))
            add("enhance", "whole process", enhance_files, enhance_s, st, settings=label)
            add("enhance", "in-process", enhance_files, enhance_s, in_process_enhance(enhance_files, emotion, repeats, tmp, ov), settings=label)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from emort import __version__
    from emort.runtime.bundle import load_bundle

    return {
        "emort_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "load_average_start": LOAD_START,
                    "load_average_end": loadavg()},
        "bundle_defaults": load_bundle(None).defaults.to_dict(),
        "bytecode": bytecode,
        "emotion": emotion,
        "rows": rows,
    }


def score_rows(add, emort: list[str], score_files: list[Path], score_s: float, repeats: int, per_speaker_only: bool = False) -> None:
    """The ``emort score`` rows: all files whole-process and in-process, 10 files, one file
    (start-up), and per speaker in three settings (four with the ``[egemaps]`` extra installed)."""
    if not per_speaker_only:
        single_clip_rows(add, emort, score_files, score_s, repeats)
    # per speaker (EmoDB's speaker code leads each name): the bundle's statistics classifier (F0
    # analysis per clip since 0.9) fused with the GE2E voice classifier (an LSTM per clip, 0.12),
    # with eGeMAPS too (openSMILE per clip, 0.18), the statistics classifier alone, and the
    # per-speaker SER alone
    import importlib.util

    egemaps = [["--stats", "--egemaps"]] if importlib.util.find_spec("opensmile") else []
    for flags in (["--stats"], *egemaps, ["--stats", "--no-voice"], ["--no-stats"]):
        add("score --per-speaker", "whole process", score_files, score_s,
            whole_process([*emort, "score", *map(str, score_files), "--speaker-pattern", r"^(\d\d)", *flags], repeats),
            settings=" ".join(flags))


def single_clip_rows(add, emort: list[str], score_files: list[Path], score_s: float, repeats: int) -> None:
    add("score", "whole process", score_files, score_s, whole_process([*emort, "score", *map(str, score_files)], repeats))
    add("score", "in-process", score_files, score_s, in_process_score(score_files, repeats))
    add("score", "whole process", score_files[:10], audio_seconds(score_files[:10]),
        whole_process([*emort, "score", *map(str, score_files[:10])], repeats))
    add("score", "whole process (start-up: 1 file)", score_files[:1], audio_seconds(score_files[:1]),
        whole_process([*emort, "score", str(score_files[0])], repeats))


def bench_rows(data: Path | None, repeats: int, emotion: str, n_score: int = 408, n_enhance: int = 120,
               bundle: Path | None = None) -> dict:
    """The whole-process rows of ``emort bench`` (issue 19's CLI targets, in the bench's run):
    ``emort score`` on ``n_score`` EmoDB files and ``emort enhance`` at the bundle's defaults on
    ``n_enhance`` files of EmoDB, RAVDESS and nEMO, ``repeats`` fresh processes each (medians).
    ``{"rows": [...], "bytecode": ...}``, or ``{"skipped": why}`` without enough real files."""
    from benchmarks.clips import shared_data_dir

    data = Path(data) if data is not None else shared_data_dir()
    if not data.is_dir():
        return {"skipped": f"no corpora at {data} (--data, $EMORT_SHARED_DATA or ../shared/data)"}
    score_files = corpus_files(data, "emodb")[:n_score]
    try:
        enhance_files = mixed_files(data, n_enhance)
    except SystemExit as e:
        return {"skipped": str(e)}
    if len(score_files) < n_score or len(enhance_files) < n_enhance:
        return {"skipped": f"found {len(score_files)} EmoDB / {len(enhance_files)} mixed files under {data}; the rows need {n_score} / {n_enhance}"}
    bytecode = compile_bytecode()
    emort = [sys.executable, "-m", "emort.cli.app"]
    with_bundle = ["--bundle", str(bundle)] if bundle is not None else []  # the bundle the rest of the report times
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="emort-bench-cli-"))
    try:
        for task, files, cmd, before in (
                ("score", score_files, [*emort, "score", *map(str, score_files), *with_bundle], None),
                ("enhance", enhance_files, [*emort, "enhance", *map(str, enhance_files), "-e", emotion, "-o", str(tmp / "out"), *with_bundle],
                 lambda: shutil.rmtree(tmp / "out", ignore_errors=True))):
            try:
                st = whole_process(cmd, repeats, before=before)
            except SystemExit as e:  # a file failed: keep the rest of the bench's report, say why these rows are missing
                return {"skipped": f"emort {task} did not finish cleanly: {e}"}
            rows.append(row(task, "whole process", files, audio_seconds(files), st))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": rows, "bytecode": bytecode, "emotion": emotion, "data": str(data)}


LOAD_START: list | None = None


def table(rep: dict) -> str:
    lines = [f"# emort CLI throughput ({rep['created']}, emort {rep['emort_version']}, {rep['machine']['cpu']}, "
             f"{rep['machine']['cores']} cores; load average {rep['machine']['load_average_start']} -> {rep['machine']['load_average_end']})", "",
             f"{rep.get('bytecode', '')}; {rep['rows'][0]['runs'] if rep['rows'] else 0} runs per row.", "",
             "| task | settings | where | files | audio s | median s (min-max) | clips/s | RTF |", "|---|---|---|---:|---:|---|---:|---:|"]
    for r in rep["rows"]:
        lines.append(f"| {r['task']} | {r.get('settings', '')} | {r['where']} | {r['files']} | {r['audio_s']:.1f} | "
                     f"{r['median_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f}) | {r['clips_per_s']:.1f} | {r['rtf']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global LOAD_START
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding emodb/, ravdess/, nemo/")
    ap.add_argument("--score-files", type=int, default=408, help="EmoDB files scored (default 408)")
    ap.add_argument("--enhance-files", type=int, default=120, help="files enhanced, from the three corpora in turn (default 120)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per row (the median is reported)")
    ap.add_argument("--emotion", default="angry")
    ap.add_argument("--compare-steps", default="8", help="also enhance with these --steps (comma-separated; '' for none)")
    ap.add_argument("--prosody", action="store_true", help="also enhance with --prosody (the conversion path; needs the prosody extra)")
    ap.add_argument("--bf16", action="store_true", help="also enhance with --precision bf16 (needs OpenVINO and a CPU with AMX-BF16 or AVX512-BF16)")
    ap.add_argument("--no-score", action="store_true", help="leave out the emort score rows")
    ap.add_argument("--per-speaker-only", action="store_true", help="only the per-speaker emort score rows (no enhance rows)")
    ap.add_argument("--json", type=Path, help="write the report here (and the table beside it as .md)")
    a = ap.parse_args(argv)
    if a.bf16:
        from emort.runtime.openvino_cpu import bf16_status

        ok, why = bf16_status()
        if not ok:
            print(f"--bf16: {why}", file=sys.stderr)
            return 2
    LOAD_START = loadavg()
    rep = run(a.data, a.score_files, a.enhance_files, a.repeats, a.emotion, [int(s) for s in a.compare_steps.split(",") if s.strip()],
              score=not a.no_score, prosody=a.prosody, per_speaker_only=a.per_speaker_only, bf16=a.bf16)
    print_and_write(table(rep), rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
