"""``python benchmarks/bench.py`` (and ``emort bench``): latency per component, real-time factor,
throughput and cost model, PyTorch eager and onnxruntime backends side by side.

What is measured, per clip length (1, 3, 10, 30 s): the front-end (numpy log-mel) and
the vocoder (the mel-band gain at the input rate); SER forward, style encoder and one
denoiser step on every backend (:mod:`benchmarks.runtime_rows`,
:mod:`benchmarks.eager_rows`); the whole enhancement with the bundle's defaults. Then
batch throughput, the cost model (:mod:`benchmarks.peaks`), the performance targets with
pass / miss and a steps x sampler table (:mod:`benchmarks.report`). Unavailable
backends are listed as skipped with the reason. Nothing is written but the reports.

The entry point is :func:`main` (``argv`` in, exit status out); :func:`run_benchmark` returns
the report as a JSON-able dict for callers that render it themselves.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable (benchmarks.*, emort)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import TARGET_CLIP_S, load_clips  # noqa: E402
from benchmarks.eager_rows import torch_backend  # noqa: E402
from benchmarks.peaks import cost_model, fp32_peak, matmul_peak, openvino_bf16_peak, ort_gemm_peaks  # noqa: E402
from benchmarks.report import evaluate_targets, report_warnings, rich_tables, write_reports  # noqa: E402
from benchmarks.runtime_rows import (  # noqa: E402
    BACKENDS,
    QUICK_SWEEP_GRID,
    SWEEP_GRID,
    EvaluateFn,
    batch_sweep,
    bench_backend,
    denoiser_feeds,
    ort_backend,
    parity,
    quality_sweep,
    target_emotion,
    throughput,
)
from benchmarks.timing import loadavg, machine_info, measure, pinned_threads  # noqa: E402
from emort import __version__  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402

log = logging.getLogger(__name__)

#: Clip lengths (seconds) of the latency table; ``quick`` uses the first two.
CLIP_LENGTHS = (1.0, 3.0, 10.0, 30.0)
QUICK_CLIP_LENGTHS = (1.0, 3.0)
DEVICES = ("all", "cpu", "cuda", "tensorrt")


@dataclass
class BenchSettings:
    """What to benchmark and how long; ``None`` fields take the defaults of :meth:`resolved`."""

    bundle: Path | None = None
    ser_run: Path | None = Path("runs/ser")
    diffusion_run: Path | None = Path("runs/diffusion")
    device: str = "all"  # all | cpu | cuda | tensorrt (which onnxruntime rows to run)
    threads: int | None = None
    repeats: int | None = None
    quick: bool = False
    data_dir: Path | None = None
    lengths: tuple[float, ...] | None = None
    sweep: bool = True
    cli: bool | None = None  # whole-process CLI rows (None: on unless quick)
    cli_repeats: int = 3
    budget_s: float | None = None  # per measurement
    extra: dict = field(default_factory=dict)

    def resolved(self) -> dict:
        """Every knob with its value for this run (``quick`` picks short clips and few repeats)."""
        from emort.runtime.session import default_threads

        q = self.quick
        return {
            "threads": self.threads or default_threads(),
            "repeats": self.repeats or (3 if q else 20),
            "warmup": 1 if q else 2,
            "min_runs": 1 if q else 3,
            "budget_s": self.budget_s or (1.0 if q else 8.0),
            "lengths": tuple(float(x) for x in (self.lengths or (QUICK_CLIP_LENGTHS if q else CLIP_LENGTHS))),
            "n_score": 8 if q else 32,
            "n_folder": 3 if q else 10,
            "matmul_n": 1024 if q else 2048,
            "matmul_repeats": 3 if q else 7,
            "sweep_grid": QUICK_SWEEP_GRID if q else SWEEP_GRID,
        }


def _s(p: Path | None) -> str | None:
    return None if p is None else str(p)


def run_benchmark(settings: BenchSettings, quality: EvaluateFn | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Run every measurement and return the report (a JSON-able dict).

    ``progress(message)`` hears what is being measured, and one line when the PyTorch
    eager rows are skipped (no training runs, no torch). Raises BundleError for a bad
    ``settings.bundle``.
    """
    from emort.runtime.bundle import load_bundle
    from emort.runtime.frontend import apply_band_gain, log_mel

    say = progress or (lambda msg: log.info("%s", msg))
    cfg = settings.resolved()
    threads, lengths = cfg["threads"], cfg["lengths"]
    if TARGET_CLIP_S not in lengths:
        lengths = tuple(sorted({*lengths, TARGET_CLIP_S}))
    timing = {k: cfg[k] for k in ("warmup", "repeats", "budget_s", "min_runs")}
    b = load_bundle(settings.bundle)
    sr = b.mel.sample_rate
    emotion = target_emotion(b.labels)
    rng = np.random.default_rng(0)

    say("loading audio")
    clips = load_clips(sr, lengths, cfg["n_score"], cfg["n_folder"], settings.data_dir)
    say("loading backends")
    eager = torch_backend(b, settings.ser_run, settings.diffusion_run)
    if eager.status != "ok":
        say(f"PyTorch eager rows skipped: {eager.reason}")
    elif eager.reason:
        say(f"PyTorch eager rows: {eager.reason}")
    backends = [eager] + [ort_backend(name, b, settings.device, threads) for name in BACKENDS[1:]]
    live = [be for be in backends if be.status == "ok"]
    defaults = live[0].enhancer.defaults if live else None

    report: dict = {
        "emort_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {},
        "settings": {"quick": settings.quick, "device": settings.device, "threads": threads, **timing, "clip_lengths_s": list(lengths),
                     "clip_source": clips.source, "emotion": emotion, "ser_run": _s(settings.ser_run), "diffusion_run": _s(settings.diffusion_run),
                     "enhance_options": defaults.to_dict() if defaults else None, "vocoder": "gain", **settings.extra},
        "bundle": {**b.summary(), "stride": b.stride, "flops_per_frame": b.models["denoiser"].flops_per_frame},
        "backends": {be.name: be.summary() for be in backends},
        "components": [],
        "throughput": [],
    }
    rows = report["components"]

    # torch on `threads`; numpy's BLAS as the process has it (the CLI: one thread, which is also
    # what lets the denoiser's threads spin), except for the matmul peak, measured on `threads`.
    with pinned_threads(threads, blas=False):
        report["machine"] = machine_info(threads)
        say(f"matmul peak ({cfg['matmul_n']}x{cfg['matmul_n']} float32, {threads} threads)")
        peak = matmul_peak(threads, cfg["matmul_n"], cfg["matmul_repeats"])  # pins the BLAS to `threads` itself
        say("GEMM peaks per precision (onnxruntime float32 and int8; OpenVINO bf16)")
        precision_peaks = ort_gemm_peaks(threads, cfg["matmul_n"], cfg["matmul_repeats"])
        precision_peaks["bf16"] = openvino_bf16_peak(threads, cfg["matmul_n"], cfg["matmul_repeats"])
        peak = fp32_peak(peak, precision_peaks)  # the faster float32 GEMM of the two, not numpy's alone

        # Eager and onnxruntime must be the same model: compare outputs once.
        report["parity"] = parity(backends, b, clips.by_length[TARGET_CLIP_S], rng)

        for seconds in lengths:
            wav = clips.by_length[seconds]
            mel = log_mel(wav, b.mel)
            src = b.normalize(mel)
            frames = src.shape[1]
            gain = np.broadcast_to(0.1 * np.sin(np.arange(frames) / 7.0)[None], mel.shape).astype(np.float32)
            feeds = denoiser_feeds(b, frames, rng)
            base = {"clip_s": seconds, "frames": frames}
            say(f"{seconds:g} s clip: numpy front-end and vocoder")
            rows.append({"component": "frontend", "backend": "numpy", **base, **measure(partial(log_mel, wav, b.mel), **timing)})
            rows.append({"component": "vocoder", "backend": "numpy", **base, **measure(partial(apply_band_gain, wav, sr, gain, b.mel), **timing)})
            for be in live:
                say(f"{seconds:g} s clip: {be.name}")
                rows += [{**r, **base} for r in bench_backend(be, wav, src, feeds, emotion, timing)]
        for r in rows:
            r["rtf"] = r["median_ms"] / 1e3 / r["clip_s"]

        for be in live:
            say(f"throughput: {be.name}")
            report["throughput"] += throughput(be, b, clips, emotion, timing)

        report["cost_model"] = cost_model(b, rows, peak, live, lengths, rng, bf16_peak=precision_peaks.get("bf16"))
        report["cost_model"]["precision_peaks"] = precision_peaks
        ort_cpu = next((be for be in live if be.name == "ort-cpu"), None)
        if ort_cpu is not None:
            say("denoiser batch sweep (3 s, ort-cpu): what batching several clips' calls would give")
            report["cost_model"]["batch_sweep"] = batch_sweep(ort_cpu, b, clips.by_length[TARGET_CLIP_S], peak, timing, rng)

        if settings.sweep and live:
            main_be = next((be for be in live if be.name == "ort-cpu"), live[0])
            say(f"steps x sampler sweep on {main_be.name}")
            sweep_clips = clips.score[:1] if settings.quick else clips.score[:2]
            rows_q = quality_sweep(main_be.enhancer, sweep_clips, emotion, cfg["sweep_grid"], evaluate=quality)
            report["quality"] = {"backend": main_be.name, "clips": len(sweep_clips), "clip_s": TARGET_CLIP_S, "evaluated": quality is not None,
                                 "note": "" if quality else "timing only; pass evaluate= to benchmarks.runtime_rows.quality_sweep for quality columns",
                                 "rows": rows_q}

    # Outside the pinned threads: each CLI row is a fresh `emort` process with the CLI's own settings.
    if settings.cli if settings.cli is not None else not settings.quick:
        from benchmarks.cli_throughput import bench_rows

        say(f"whole process: emort score and emort enhance on real folders, {settings.cli_repeats} runs each")
        report["cli"] = bench_rows(settings.data_dir, settings.cli_repeats, emotion, bundle=settings.bundle)
    report["machine"]["load_average_after"] = loadavg()
    report["targets"] = evaluate_targets(report)
    report["warnings"] = report_warnings(report)
    return report


def _at_least_1(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/bench.py`` and ``emort bench`` (one definition)."""
    p = argparse.ArgumentParser(
        prog=None if __name__ == "__main__" else "emort bench",
        description="Latency per component, real-time factor, throughput and cost model; PyTorch eager vs onnxruntime side by side.",
    )
    p.add_argument("--bundle", type=Path, default=None, help="Model bundle folder (default: the one shipped with emort).")
    p.add_argument("--ser-run", type=Path, default=Path("runs/ser"), help="SER training run for the PyTorch eager rows (absent: the same modules rebuilt from the bundle).")
    p.add_argument("--diffusion-run", type=Path, default=Path("runs/diffusion"), help="Diffusion training run for the eager rows.")
    p.add_argument("--device", choices=DEVICES, default="all", help="onnxruntime rows to run (all: every available backend).")
    p.add_argument("--threads", type=_at_least_1, default=None, help="Threads for onnxruntime, torch and numpy (default: EMORT_THREADS or all cores).")
    p.add_argument("--repeats", type=_at_least_1, default=None, help="Timed runs per measurement after warm-up (default 20; 3 with --quick).")
    p.add_argument("--quick", action="store_true", help="1 and 3 s clips, few repeats: a smoke run, not a measurement.")
    p.add_argument("--data", type=Path, default=None,
                   help="Folder with emodb/ (real clips; default $EMORT_SHARED_DATA or ../shared/data, else synthetic).")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True, help="Time the steps x sampler grid.")
    p.add_argument("--cli", action=argparse.BooleanOptionalAction, default=None,
                   help="Also time `emort score` (408 EmoDB files) and `emort enhance` (120 files of three corpora) as whole "
                        "processes, 3 runs each (default: on, off with --quick; needs the corpora under --data).")
    p.add_argument("--json", type=Path, default=Path("reports/bench.json"), help="Write the full report as JSON (default: reports/bench.json in the working folder).")
    p.add_argument("--md", type=Path, default=None, help="Also write the tables as Markdown (for the README).")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), benchmark, print the tables, write the reports.

    Returns the exit status: 0, or 2 after one ``error:`` line for a user error (a bad
    bundle, an unwritable report path). ``--help`` and bad options exit through argparse.
    """
    from rich.console import Console
    from rich.markup import escape

    from emort.runtime.atomic import check_writable

    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    settings = BenchSettings(bundle=args.bundle, ser_run=args.ser_run, diffusion_run=args.diffusion_run, device=args.device,
                             threads=args.threads, repeats=args.repeats, quick=args.quick, data_dir=args.data, sweep=args.sweep,
                             cli=args.cli)
    try:
        for path, what in ((args.json, "JSON report"), (args.md, "Markdown report")):
            if path is not None:
                check_writable(path, what)  # before the run, not after minutes of it
        report = run_benchmark(settings, progress=lambda msg: err.print(f"[dim]{escape(msg)}[/]", soft_wrap=True))
        written = write_reports(report, args.json, args.md)
    except EmortError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        return 2
    out = Console() if sys.stdout.isatty() else Console(width=160)  # piped to a file: don't squeeze the tables into 80 columns
    for t in rich_tables(report):
        out.print(t)
    for w in report["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    for p in written:
        out.print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    from emort.runtime.session import limit_blas_threads, retain_freed_memory

    limit_blas_threads(1)  # the process settings of `emort bench` (the CLI's), so both entries measure the same
    retain_freed_memory()
    sys.exit(main())
