"""Benchmarks: latency per component, real-time factor, throughput and cost model, backends side by side.

``emort bench`` (and ``python benchmarks/bench.py``) call :func:`run_benchmark`, which
returns one JSON-able report; :func:`report_tables` turns it into tables that
:func:`to_markdown` and the CLI render. What is measured, per clip length
(1, 3, 10, 30 s):

* front-end (numpy log-mel) and vocoder (``apply_mel_gain``) on numpy;
* SER forward, style encoder and one denoiser step (classifier-free guidance:
  batch 2) on every backend: PyTorch eager (the training runs' weights) and
  onnxruntime CPU / CUDA / TensorRT (the bundle graphs), unavailable ones listed
  as skipped with the reason;
* the whole enhancement (``Enhancer.enhance_mel`` with the bundle's defaults).

Then batch throughput (scoring 3 s clips; enhancing a folder of clips), the
cost model (denoiser FLOPs vs the machine's measured float32 matmul peak), the
MISSION.md performance targets with pass/miss, and a steps x sampler table
(:func:`quality_sweep`, which takes an ``evaluate`` hook for quality columns).

Every timing: warm-up runs, then repeated runs (stopping early past a time
budget), reported as median and p90. Thread counts are pinned for onnxruntime,
torch and numpy's BLAS (via threadpoolctl when installed). Audio is read from
the shared corpora in place (EmoDB clips concatenated to reach the lengths) or
synthesised; nothing is written but the reports.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from emort import __version__

log = logging.getLogger(__name__)

#: Clip lengths (seconds) of the latency table; ``quick`` uses the first two.
CLIP_LENGTHS = (1.0, 3.0, 10.0, 30.0)
QUICK_CLIP_LENGTHS = (1.0, 3.0)
#: The clip length the targets are judged at (MISSION.md: 3 s clips).
TARGET_CLIP_S = 3.0
#: Backends in table order. ``torch`` is PyTorch eager on the training runs' weights.
BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-tensorrt")
ORT_DEVICES = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}
#: Components of the latency table, in order; ``numpy`` ones have no backend choice.
COMPONENTS = ("frontend", "ser", "style", "denoiser_step", "vocoder", "enhance")
NUMPY_COMPONENTS = ("frontend", "vocoder")
COMPONENT_LABELS = {
    "frontend": "front-end (log-mel)",
    "ser": "SER forward",
    "style": "style encoder",
    "denoiser_step": "denoiser step (CFG, batch 2)",
    "vocoder": "vocoder (mel gain)",
    "enhance": "enhance end to end",
}
#: Clips in one scoring batch (the bundle's TensorRT profiles stop at batch 8).
SCORE_BATCH = 8
#: Default steps x sampler grid of the sweep.
SWEEP_GRID = tuple((s, n) for s in ("ddim", "dpmpp", "ddpm") for n in (4, 8, 16))
QUICK_SWEEP_GRID = (("ddim", 2), ("dpmpp", 4))


@dataclass(frozen=True)
class Target:
    """One MISSION.md performance target: ``measured <op> goal``."""

    key: str
    label: str
    goal: float
    op: str  # "<=" or ">="
    unit: str = ""


TARGETS = (
    Target("enhance_rtf", "enhance RTF, defaults, 3 s clip (ort-cpu)", 0.05, "<="),
    Target("ort_speedup_denoiser", "ORT vs torch eager, denoiser step, 3 s", 1.5, ">=", "x"),
    Target("ort_speedup_ser", "ORT vs torch eager, SER forward, 3 s", 1.5, ">=", "x"),
    Target("denoiser_peak_fraction", "denoiser step / matmul peak (ort-cpu, 3 s)", 0.5, ">="),
    Target("score_clips_per_s", "scoring, 3 s clips per second (ort-cpu)", 100.0, ">=", "/s"),
)


# --- timing ----------------------------------------------------------------------------------


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


@contextlib.contextmanager
def pinned_threads(threads: int):
    """Pin numpy's BLAS (threadpoolctl, when installed) and torch (when imported) to ``threads``."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=threads))
        except ImportError:
            pass
        torch = _torch_or_none()
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


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# --- machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    import onnxruntime as ort

    torch = _torch_or_none()
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
        "load_average": _loadavg(),
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


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """The machine's float32 matmul rate (numpy, ``n`` x ``n``), best of ``repeats``, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with pinned_threads(threads):
        a @ b  # warm-up: thread pool start, page faults
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return {"n": n, "repeats": repeats, "best_ms": best * 1e3, "gflops": 2 * n**3 / best / 1e9, "threads": threads}


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --- clips -----------------------------------------------------------------------------------


def shared_data_dir() -> Path:
    """``$EMORT_SHARED_DATA``, else ``../shared/data`` from the working directory (may not exist)."""
    env = os.environ.get("EMORT_SHARED_DATA")
    return Path(env).expanduser() if env else Path.cwd().parent / "shared" / "data"


def synth_speech(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic voice through moving formants, in
    syllable-rate bursts with pauses and some fricative noise. float32, peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants = np.stack([550 + 200 * np.sin(2 * np.pi * r * t + p) for r, p in zip((1.7, 2.3, 1.1), rng.uniform(0, 6, 3), strict=True)])
    formants[1] += 1000
    formants[2] += 1900
    voice = np.zeros(n)
    for k in range(1, int(4000 // 150) + 1):
        fk = k * f0
        amp = sum(np.exp(-0.5 * ((fk - fm) / 120.0) ** 2) for fm in formants) + 0.02
        voice += amp * np.sin(k * phase) / k**0.5
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.7).astype(float)
    noise = rng.standard_normal(n) * 0.05 * (1 - syll)
    y = (voice * syll + noise) * pauses
    y = np.convolve(y, np.ones(64) / 64, mode="same") * 0.3 + y * 0.7  # soften edges
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


@dataclass
class Clips:
    """Benchmark audio at the bundle rate: one clip per length, 3 s clips for scoring, a folder for enhancing."""

    source: str
    by_length: dict[float, np.ndarray]
    score: list[np.ndarray]
    folder: list[np.ndarray]


def load_clips(sample_rate: int, lengths: Sequence[float], n_score: int, n_folder: int, data_dir: Path | None = None) -> Clips:
    """Real EmoDB clips (concatenated to reach long lengths) when the corpus is found, else synthetic speech."""
    data_dir = shared_data_dir() if data_dir is None else Path(data_dir)
    files = sorted((data_dir / "emodb" / "wav").glob("*.flac"))
    need_s = max(max(lengths), TARGET_CLIP_S * n_score) + 1.0
    if files:
        from emort.runtime.audio import read_audio

        step = max(1, len(files) // 64)
        folder: list[np.ndarray] = []
        pool: list[np.ndarray] = []
        total = 0
        for p in files[::step]:
            x = read_audio(p, sample_rate).samples
            if len(folder) < n_folder:
                folder.append(x)
            pool.append(x)
            total += len(x)
            if total >= need_s * sample_rate and len(folder) >= n_folder:
                break
        cat = np.concatenate(pool)
        source = f"EmoDB ({len(pool)} real clips concatenated, {data_dir / 'emodb'})"
    else:
        cat = synth_speech(need_s, sample_rate)
        folder = [synth_speech(1.5 + (i % 4) * 0.75, sample_rate, seed=i + 1) for i in range(n_folder)]
        source = f"synthetic speech-like signal (no EmoDB under {data_dir})"
    cat = np.tile(cat, int(np.ceil(need_s * sample_rate / len(cat))))

    def cut(seconds: float, offset: int = 0) -> np.ndarray:
        n = int(round(seconds * sample_rate))
        return np.ascontiguousarray(cat[offset : offset + n])

    n3 = int(TARGET_CLIP_S * sample_rate)
    return Clips(source=source, by_length={float(s): cut(s) for s in lengths},
                 score=[cut(TARGET_CLIP_S, i * n3) for i in range(n_score)], folder=folder)


# --- backends --------------------------------------------------------------------------------


class TorchModel:
    """A torch module called like an onnxruntime session: ``(**numpy inputs) -> list of numpy outputs``."""

    def __init__(self, module, input_names: Sequence[str], device: str = "cpu"):
        self.module = module
        self.input_names = list(input_names)
        self.device = device

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(inputs[k])).to(self.device) for k in self.input_names])
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().cpu().numpy() for o in out]


@dataclass
class Backend:
    name: str
    status: str  # "ok" | "skipped"
    reason: str = ""
    device: str = ""
    enhancer: object | None = None  # emort.runtime.enhancer.Enhancer

    def summary(self) -> dict:
        d = {"status": self.status, "device": self.device}
        if self.reason:
            d["reason"] = self.reason
        return d


def _torch_backend(bundle, ser_run: Path | None, diffusion_run: Path | None) -> Backend:
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    if _torch_or_none() is None:
        return Backend("torch", "skipped", "torch is not installed (pip install 'emort[train]')")
    for what, run, name in (("SER", ser_run, "ser"), ("diffusion", diffusion_run, "diffusion")):
        if run is None:
            return Backend("torch", "skipped", f"no {what} run folder given (--{name}-run)")
        if not (Path(run) / f"{name}.json").exists():
            return Backend("torch", "skipped", f"{what} run {run} not found (no {name}.json); eager rows need the training run folders")
    try:
        from emort.training.diffusion import load_diffusion
        from emort.training.ser import input_norm, load_ser

        ser, ser_cfg = load_ser(ser_run)
        diff, _ = load_diffusion(diffusion_run)
    except Exception as e:  # a broken or incompatible run folder: report it, keep benchmarking the rest
        return Backend("torch", "skipped", f"could not load the runs: {e}")
    if input_norm(ser_cfg) != "global":  # the bundle's "ser" graph is the global SER; this one would be fed the wrong input
        return Backend("torch", "skipped", f"SER run {ser_run} is speaker-normalised (--norm speaker); give the global SER run the bundle was exported from")
    specs = bundle.models
    enh = Enhancer(bundle, Scorer(bundle, TorchModel(ser, specs["ser"].inputs), "torch"), TorchModel(diff.style, specs["style"].inputs),
                   TorchModel(diff.denoiser, specs["denoiser"].inputs), "torch")
    return Backend("torch", "ok", device="cpu", enhancer=enh)


def _ort_backend(name: str, bundle, requested: str, threads: int) -> Backend:
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.session import available_devices, ort_providers

    dev = ORT_DEVICES[name]
    if requested not in ("all", dev):
        return Backend(name, "skipped", f"not requested (--device {requested})", dev)
    if dev not in available_devices():
        why = {"cuda": f"CUDAExecutionProvider not available (onnxruntime providers: {', '.join(ort_providers())}); "
                       "needs onnxruntime-gpu and an NVIDIA GPU (pip install 'emort[cuda]')",
               "tensorrt": "neither native TensorRT nor onnxruntime's TensorrtExecutionProvider is available; "
                           "needs TensorRT and an NVIDIA GPU (pip install 'emort[cuda]')"}.get(dev, f"{dev} not available")
        return Backend(name, "skipped", why, dev)
    try:
        enh = Enhancer.load(bundle, device=dev, threads=threads)
    except Exception as e:  # a provider that is listed but fails to start (driver, library mismatch)
        return Backend(name, "skipped", f"failed to start: {e}", dev)
    return Backend(name, "ok", device=dev, enhancer=enh)


# --- cost model ------------------------------------------------------------------------------


def onnx_flops(path: Path, feeds: dict[str, np.ndarray]) -> dict:
    """Conv / MatMul / Gemm FLOPs (2 x multiply-adds) of one run of an ONNX graph on ``feeds``.

    Shapes come from one onnxruntime CPU run with those operators' tensors exposed
    as outputs, so symbolic and computed shapes are exact.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    ops = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    existing = {o.name for o in model.graph.output}
    wanted: list[str] = []
    for n in ops:
        for name in (n.input[0], n.input[1], n.output[0]):
            if name not in inits and name not in existing and name not in wanted:
                wanted.append(name)
    model.graph.output.extend([onnx.ValueInfoProto(name=name) for name in wanted])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = dict(inits)
    shapes.update({k: list(v.shape) for k, v in zip(names, sess.run(names, feeds), strict=True)})
    shapes.update({k: list(v.shape) for k, v in feeds.items()})
    by_op: dict[str, float] = {}
    for n in ops:
        w, y = shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "Conv":
            f = 2.0 * np.prod(y) * np.prod(w[1:])  # w: (Cout, Cin/groups, *kernel)
        else:
            a = shapes[n.input[0]]
            trans_a = n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute)
            f = 2.0 * np.prod(y) * (a[0] if trans_a else a[-1])
        by_op[n.op_type] = by_op.get(n.op_type, 0.0) + float(f)
    return {"flops": sum(by_op.values()), "by_op": by_op, "nodes": len(ops)}


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class BenchSettings:
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
    budget_s: float | None = None  # per measurement
    extra: dict = field(default_factory=dict)

    def resolved(self) -> dict:
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


#: ``evaluate(sources, outputs, sample_rate, emotion, options) -> {metric: value}``; see :func:`quality_sweep`.
EvaluateFn = Callable[[list[np.ndarray], list[np.ndarray], int, str, object], dict]


def quality_sweep(enhancer, clips: Sequence[np.ndarray], emotion: str, grid: Sequence[tuple[str, int]] = SWEEP_GRID,
                  evaluate: EvaluateFn | None = None, base_options: dict | None = None) -> list[dict]:
    """Steps x sampler vs speed (and quality when ``evaluate`` is given).

    For each ``(sampler, steps)`` in ``grid`` every clip is enhanced toward
    ``emotion`` with the bundle defaults otherwise (plus ``base_options``). Each row
    has ``sampler``, ``steps``, ``rtf`` (total seconds / total audio seconds) and,
    when ``evaluate`` is given, whatever it returns for the outputs, e.g. target
    probability under a held-out judge, speaker similarity, content error; those
    become extra columns of the table. ``evaluate(sources, outputs, sample_rate,
    emotion, options)`` receives waveforms at the bundle rate and the
    :class:`~emort.runtime.editing.EditOptions` used.
    """
    sr = enhancer.bundle.mel.sample_rate
    audio_s = sum(len(c) for c in clips) / sr
    rows = []
    for sampler, steps in grid:
        opts = enhancer.options(**{**(base_options or {}), "sampler": sampler, "steps": steps})
        enhancer.enhance_mel(clips[0], emotion, opts)  # warm-up
        t0 = time.perf_counter()
        outs = [enhancer.enhance_mel(c, emotion, opts).wav for c in clips]
        row: dict = {"sampler": sampler, "steps": int(steps), "rtf": (time.perf_counter() - t0) / audio_s}
        if evaluate is not None:
            row.update(evaluate(list(clips), outs, sr, emotion, opts))
        rows.append(row)
    return rows


def _target_emotion(labels: Sequence[str]) -> str:
    return "happy" if "happy" in labels else labels[-1]


def _denoiser_feeds(bundle, frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t_pad = frames + (-frames) % bundle.stride
    emb_dim = len(next(iter(bundle.centroids.values())))
    style_dim = int(bundle.manifest["models"]["style"].get("dim", 128))
    return {
        "x": rng.standard_normal((2, bundle.mel.n_mels, t_pad)).astype(np.float32),
        "t": np.array([500.0, 500.0], np.float32),
        "emotion": rng.standard_normal((2, emb_dim)).astype(np.float32),
        "emotion_mask": np.array([[1.0], [0.0]], np.float32),
        "style": rng.standard_normal((2, style_dim)).astype(np.float32),
    }


def _count_calls(enhancer, wav: np.ndarray, emotion: str) -> int:
    """Denoiser forward passes of one enhancement with the defaults."""
    calls = 0
    inner = enhancer.denoiser

    def counting(**kw):
        nonlocal calls
        calls += 1
        return inner(**kw)

    enhancer.denoiser = counting
    try:
        enhancer.enhance_mel(wav, emotion, enhancer.defaults)
    finally:
        enhancer.denoiser = inner
    return calls


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1.0))


def run_benchmark(settings: BenchSettings, quality: EvaluateFn | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Run every measurement and return the report (JSON-able dict)."""
    from emort.runtime.bundle import load_bundle
    from emort.runtime.frontend import apply_mel_gain, log_mel

    say = progress or (lambda msg: log.info("%s", msg))
    cfg = settings.resolved()
    threads, lengths = cfg["threads"], cfg["lengths"]
    if TARGET_CLIP_S not in lengths:
        lengths = tuple(sorted({*lengths, TARGET_CLIP_S}))
    timing = {k: cfg[k] for k in ("warmup", "repeats", "budget_s", "min_runs")}
    b = load_bundle(settings.bundle)
    sr = b.mel.sample_rate
    emotion = _target_emotion(b.labels)
    rng = np.random.default_rng(0)

    say("loading audio")
    clips = load_clips(sr, lengths, cfg["n_score"], cfg["n_folder"], settings.data_dir)
    say("loading backends")
    backends = [_torch_backend(b, settings.ser_run, settings.diffusion_run)]
    backends += [_ort_backend(name, b, settings.device, threads) for name in BACKENDS[1:]]
    live = [be for be in backends if be.status == "ok"]
    defaults = live[0].enhancer.defaults if live else None

    report: dict = {
        "emort_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {},
        "settings": {"quick": settings.quick, "device": settings.device, "threads": threads, **timing, "clip_lengths_s": list(lengths),
                     "clip_source": clips.source, "emotion": emotion, "ser_run": _s(settings.ser_run), "diffusion_run": _s(settings.diffusion_run),
                     "enhance_options": dict(defaults.__dict__) if defaults else None, "vocoder": "gain", **settings.extra},
        "bundle": {**b.summary(), "stride": b.stride, "flops_per_frame": b.manifest["models"]["denoiser"].get("flops_per_frame")},
        "backends": {be.name: be.summary() for be in backends},
        "components": [],
        "throughput": [],
    }
    rows = report["components"]

    with pinned_threads(threads):
        report["machine"] = machine_info(threads)
        say(f"matmul peak ({cfg['matmul_n']}x{cfg['matmul_n']} float32, {threads} threads)")
        peak = matmul_peak(threads, cfg["matmul_n"], cfg["matmul_repeats"])

        # Eager and onnxruntime must be the same model: compare outputs once.
        report["parity"] = _parity(backends, b, clips.by_length[TARGET_CLIP_S], rng)

        for seconds in lengths:
            wav = clips.by_length[seconds]
            mel = log_mel(wav, b.mel)
            src = b.normalize(mel)
            frames = src.shape[1]
            edited = mel + 0.1 * np.sin(np.arange(frames) / 7.0)[None].astype(np.float32)
            feeds = _denoiser_feeds(b, frames, rng)
            base = {"clip_s": seconds, "frames": frames}
            say(f"{seconds:g} s clip: numpy front-end and vocoder")
            rows.append({"component": "frontend", "backend": "numpy", **base, **measure(partial(log_mel, wav, b.mel), **timing)})
            rows.append({"component": "vocoder", "backend": "numpy", **base, **measure(partial(apply_mel_gain, wav, mel, edited, b.mel), **timing)})
            for be in live:
                say(f"{seconds:g} s clip: {be.name}")
                rows += [{**r, **base} for r in _bench_backend(be, wav, src, feeds, emotion, timing)]
        for r in rows:
            r["rtf"] = r["median_ms"] / 1e3 / r["clip_s"]

        for be in live:
            say(f"throughput: {be.name}")
            report["throughput"] += _throughput(be, b, clips, emotion, timing)

        cost = _cost_model(b, rows, peak, live, lengths, rng)
        report["cost_model"] = cost

        if settings.sweep and live:
            main = next((be for be in live if be.name == "ort-cpu"), live[0])
            say(f"steps x sampler sweep on {main.name}")
            sweep_clips = clips.score[:1] if settings.quick else clips.score[:2]
            rows_q = quality_sweep(main.enhancer, sweep_clips, emotion, cfg["sweep_grid"], evaluate=quality)
            report["quality"] = {"backend": main.name, "clips": len(sweep_clips), "clip_s": TARGET_CLIP_S, "evaluated": quality is not None,
                                 "note": "" if quality else "timing only; pass evaluate= to emort.bench.quality_sweep for quality columns",
                                 "rows": rows_q}

    report["machine"]["load_average_after"] = _loadavg()
    report["targets"] = evaluate_targets(report)
    report["warnings"] = _warnings(report)
    return report


def _bench_backend(be: Backend, wav: np.ndarray, src: np.ndarray, feeds: dict[str, np.ndarray], emotion: str, timing: dict) -> list[dict]:
    """SER, style, one denoiser step and the whole enhancement of one clip on one backend."""
    enh = be.enhancer
    ser_in, style_in = src[None, None], src[None]
    rows = [
        {"component": "ser", "backend": be.name, "batch": 1, **measure(lambda: enh.scorer.ser(mel=ser_in), **timing)},
        {"component": "style", "backend": be.name, "batch": 1, **measure(lambda: enh.style(mel=style_in), **timing)},
        {"component": "denoiser_step", "backend": be.name, "batch": 2, "frames_padded": int(feeds["x"].shape[2]),
         **measure(lambda: enh.denoiser(**feeds), **timing)},
    ]
    calls = _count_calls(enh, wav, emotion)  # also the warm-up of the end-to-end run
    e2e = measure(lambda: enh.enhance_mel(wav, emotion, enh.defaults), **{**timing, "warmup": 0})
    rows.append({"component": "enhance", "backend": be.name, "denoiser_calls": calls, **e2e})
    return rows


def _s(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _parity(backends: list[Backend], b, wav: np.ndarray, rng: np.random.Generator) -> dict:
    """Max relative difference of each ORT backend from torch eager on the 3 s clip (same-model check)."""
    from emort.runtime.frontend import log_mel

    ref = next((be for be in backends if be.name == "torch" and be.status == "ok"), None)
    if ref is None:
        return {}
    src = b.normalize(log_mel(wav, b.mel))
    feeds = _denoiser_feeds(b, src.shape[1], rng)
    out: dict = {}
    r = ref.enhancer
    want = {"ser": r.scorer.ser(mel=src[None, None]), "style": r.style(mel=src[None]), "denoiser": r.denoiser(**feeds)}
    for be in backends:
        if be.status != "ok" or be is ref:
            continue
        e = be.enhancer
        got = {"ser": e.scorer.ser(mel=src[None, None]), "style": e.style(mel=src[None]), "denoiser": e.denoiser(**feeds)}
        out[be.name] = {k: max(_rel_diff(g, w) for g, w in zip(got[k], want[k], strict=True)) for k in want}
    return out


def _throughput(be: Backend, b, clips: Clips, emotion: str, timing: dict) -> list[dict]:
    from emort.runtime.frontend import log_mel

    enh = be.enhancer
    scorer = enh.scorer
    n = len(clips.score)

    def score_all():
        mels = [scorer.normalized_mel(w) for w in clips.score]
        for i in range(0, n, SCORE_BATCH):
            scorer.score_mels(mels[i : i + SCORE_BATCH])

    mels = [b.normalize(log_mel(w, b.mel)) for w in clips.score]

    def score_model():
        for i in range(0, n, SCORE_BATCH):
            scorer.score_mels(mels[i : i + SCORE_BATCH])

    def enhance_folder():
        for w in clips.folder:
            enh.enhance_mel(w, emotion, enh.defaults)

    rows = []
    score_s = n * TARGET_CLIP_S
    enh.enhance_mel(clips.folder[0], emotion, enh.defaults)  # warm-up of the folder run: one clip, not the whole folder
    for task, fn, count, audio_s, t in (
        ("score", score_all, n, score_s, timing),
        ("score_model_only", score_model, n, score_s, timing),
        ("enhance_folder", enhance_folder, len(clips.folder), sum(len(w) for w in clips.folder) / b.mel.sample_rate,
         {**timing, "warmup": 0, "repeats": min(timing["repeats"], 5), "min_runs": 1}),
    ):
        m = measure(fn, **t)
        rows.append({"task": task, "backend": be.name, "clips": count, "audio_s": round(audio_s, 3),
                     "batch": SCORE_BATCH if task.startswith("score") else 1,
                     "clips_per_s": count / (m["median_ms"] / 1e3), "rtf": m["median_ms"] / 1e3 / audio_s, **m})
    return rows


def _cost_model(b, rows: list[dict], peak: dict, live: list[Backend], lengths: Sequence[float], rng: np.random.Generator) -> dict:
    fpf = b.manifest["models"]["denoiser"].get("flops_per_frame")
    cost: dict = {"matmul_peak": peak, "flops_per_frame_manifest": fpf, "denoiser": []}
    steps = [r for r in rows if r["component"] == "denoiser_step"]
    frames3 = next((r["frames_padded"] for r in steps if r["clip_s"] == TARGET_CLIP_S), None)
    if frames3 is not None:
        try:
            feeds = _denoiser_feeds(b, frames3, rng)
            fl = onnx_flops(b.model_path("denoiser"), feeds)
            per_frame = fl["flops"] / (2 * frames3)
            cost["onnx_graph"] = {"clip_s": TARGET_CLIP_S, "frames": frames3, "batch": 2, "flops": fl["flops"], "by_op": fl["by_op"],
                                  "flops_per_frame": per_frame, "manifest_ratio": per_frame / fpf if fpf else None}
        except ImportError:
            cost["onnx_graph"] = {"skipped": "the onnx package is not installed (pip install 'emort[export]')"}
        except Exception as e:  # the cross-check is optional; never lose the run for it
            cost["onnx_graph"] = {"skipped": f"could not count graph FLOPs: {e}"}
    per_frame = fpf or cost.get("onnx_graph", {}).get("flops_per_frame")
    cost["flops_source"] = "manifest" if fpf else ("onnx graph" if per_frame else None)
    if not per_frame:
        return cost
    gpu = {be.name for be in live if be.device in ("cuda", "tensorrt")}
    for r in steps:
        flops = per_frame * r["frames_padded"] * r["batch"]
        achieved = flops / (r["median_ms"] / 1e3) / 1e9
        cost["denoiser"].append({"backend": r["backend"], "clip_s": r["clip_s"], "frames_padded": r["frames_padded"], "batch": r["batch"],
                                 "gflop": flops / 1e9, "gflops_achieved": achieved,
                                 "fraction_of_peak": None if r["backend"] in gpu else achieved / peak["gflops"]})
    return cost


def _find(rows: list[dict], **kw) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def evaluate_targets(report: dict) -> list[dict]:
    """MISSION.md targets against the measured values (ort-cpu at 3 s; eager for the speed-ups)."""
    comp, thr = report["components"], report["throughput"]
    three = TARGET_CLIP_S
    measured: dict[str, tuple[float | None, str]] = {}

    def speedup(component: str) -> tuple[float | None, str]:
        ort_r, eager = _find(comp, component=component, backend="ort-cpu", clip_s=three), _find(comp, component=component, backend="torch", clip_s=three)
        if ort_r is None or eager is None:
            return None, "needs both the torch and ort-cpu rows: " + _why(report, "torch" if eager is None else "ort-cpu")
        return eager["median_ms"] / ort_r["median_ms"], f"torch {eager['median_ms']:.2f} ms / ort-cpu {ort_r['median_ms']:.2f} ms"

    e2e = _find(comp, component="enhance", backend="ort-cpu", clip_s=three)
    measured["enhance_rtf"] = (e2e["rtf"], f"{e2e['median_ms']:.1f} ms for {three:g} s") if e2e else (None, _why(report, "ort-cpu"))
    measured["ort_speedup_denoiser"] = speedup("denoiser_step")
    measured["ort_speedup_ser"] = speedup("ser")
    den = next((d for d in report.get("cost_model", {}).get("denoiser", []) if d["backend"] == "ort-cpu" and d["clip_s"] == three), None)
    peak = report.get("cost_model", {}).get("matmul_peak", {}).get("gflops")
    measured["denoiser_peak_fraction"] = ((den["fraction_of_peak"], f"{den['gflops_achieved']:.1f} of {peak:.1f} GFLOP/s") if den
                                          else (None, _why(report, "ort-cpu")))
    sc = _find(thr, task="score", backend="ort-cpu")
    measured["score_clips_per_s"] = (sc["clips_per_s"], f"{sc['clips']} clips, batch {sc['batch']}, front-end included") if sc else (None, _why(report, "ort-cpu"))

    out = []
    for t in TARGETS:
        value, detail = measured[t.key]
        row = {"key": t.key, "label": t.label, "goal": t.goal, "op": t.op, "unit": t.unit, "measured": value, "detail": detail}
        if value is None:
            row.update(status="n/a", factor=None)
        else:
            factor = value / t.goal if t.op == ">=" else t.goal / value if value > 0 else float("inf")
            row.update(status="pass" if factor >= 1 else "miss", factor=factor)
        out.append(row)
    return out


def _why(report: dict, backend: str) -> str:
    be = report["backends"].get(backend, {})
    return f"{backend} {be.get('status', 'missing')}" + (f" ({be['reason']})" if be.get("reason") else "")


def _warnings(report: dict) -> list[str]:
    out = []
    m = report["machine"]
    cores = m.get("cores_usable") or 1
    for key, when in (("load_average", "at the start"), ("load_average_after", "at the end")):
        la = m.get(key)
        if la and la[0] > 0.5 * cores:
            out.append(f"the machine was busy (1-min load average {la[0]} on {cores} cores {when}); timings are pessimistic, "
                       "eager torch especially (its OpenMP threads stall when preempted)")
            break
    if m["threads"] > cores:
        out.append(f"{m['threads']} threads on {cores} usable cores: oversubscribed")
    if m["blas"].startswith("unknown"):
        out.append("numpy BLAS threads not pinned (threadpoolctl missing): matmul peak and front-end use the library default")
    for name, diffs in report.get("parity", {}).items():
        bad = {k: v for k, v in diffs.items() if v > 1e-2}
        if bad:
            out.append(f"{name} outputs differ from torch eager ({bad}): the runs may not be the ones the bundle was exported from")
    if report["settings"]["quick"]:
        out.append("quick mode: few repeats and short clips; not a measurement to report")
    return out


# --- presentation ----------------------------------------------------------------------------


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: set[int] = field(default_factory=set)  # right-aligned column indexes


def _ms(r: dict | None) -> str:
    if r is None:
        return "—"
    return f"{r['median_ms']:.2f} ({r['p90_ms']:.2f})"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def report_tables(report: dict) -> list[TableData]:
    """The report as tables (rendered by the CLI with rich and by :func:`to_markdown`)."""
    m, s = report["machine"], report["settings"]
    live = [k for k, v in report["backends"].items() if v["status"] == "ok"]
    ort_main = "ort-cpu" if "ort-cpu" in live else next((k for k in live if k.startswith("ort")), None)
    la = f"{m['load_average']}" + (f" -> {m['load_average_after']}" if m.get("load_average_after") else "")
    env = [["CPU", m["cpu_model"]], ["cores (usable / total)", f"{m['cores_usable']} / {m['cores']}"], ["threads", str(m["threads"])],
           ["numpy BLAS", m["blas"]], ["load average (start -> end)", la], ["onnxruntime", f"{m['onnxruntime']} ({', '.join(m['onnxruntime_providers'])})"],
           ["torch", m["torch"] or "not installed"], ["numpy / python", f"{m['numpy']} / {m['python']}"]]
    if m.get("gpu"):
        env.append(["GPU", m["gpu"]])
    env += [["bundle", f"{report['bundle']['name']} ({report['bundle']['path']}, hash {report['bundle']['hash']})"],
            ["timing", f"warm-up {s['warmup']}, then up to {s['repeats']} runs (at least {s['min_runs']}, budget {s['budget_s']:g} s each); median (p90)"],
            ["clips", s["clip_source"]]]
    env += [[f"backend {k}", v["status"] + (f": {v['reason']}" if v.get("reason") else "")] for k, v in report["backends"].items()]
    tables = [TableData("environment", ["item", "value"], env)]

    # latency
    heads = ["component", "clip s", "frames"] + [f"{b} ms" for b in ["numpy", *live]] + ["speed-up vs eager", f"RTF ({ort_main or '-'})"]
    rows = []
    comp = report["components"]
    for c in COMPONENTS:
        for sec in s["clip_lengths_s"]:
            ref = _find(comp, component=c, clip_s=sec)
            if ref is None:
                continue
            cells = [COMPONENT_LABELS[c], f"{sec:g}", str(ref["frames"])]
            cells.append(_ms(ref) if c in NUMPY_COMPONENTS else "")
            cells += ["" if c in NUMPY_COMPONENTS else _ms(_find(comp, component=c, backend=b, clip_s=sec)) for b in live]
            eager, fast = _find(comp, component=c, backend="torch", clip_s=sec), _find(comp, component=c, backend=ort_main, clip_s=sec)
            cells.append(f"{eager['median_ms'] / fast['median_ms']:.2f}x" if eager and fast else "")
            main_row = ref if c in NUMPY_COMPONENTS else fast
            cells.append(_num(main_row["rtf"], ".4f") if main_row else "—")
            rows.append(cells)
    skipped = ", ".join(k for k, v in report["backends"].items() if v["status"] != "ok")
    tables.append(TableData("latency per call: median (p90), ms", heads, rows,
                            f"denoiser step = one forward of batch 2 (classifier-free guidance); enhance = enhance_mel with the bundle defaults "
                            f"{_opts(s.get('enhance_options'))}; RTF = median time / clip length."
                            + (f" Skipped backends (see environment): {skipped}." if skipped else ""),
                            numeric=set(range(1, len(heads)))))

    # throughput
    rows = [[r["task"].replace("_", " "), r["backend"], str(r["clips"]), f"{r['audio_s']:.1f}", str(r["batch"]), f"{r['clips_per_s']:.1f}",
             f"{r['rtf']:.4f}", _ms(r)] for r in report["throughput"]]
    tables.append(TableData("batch throughput", ["task", "backend", "clips", "audio s", "batch", "clips/s", "RTF", "median (p90) ms"], rows,
                            "score = decoded 3 s clips -> probabilities, front-end included; enhance folder = clips of natural length, one at a time.",
                            numeric={2, 3, 4, 5, 6, 7}))

    # cost model
    cm = report.get("cost_model", {})
    pk = cm.get("matmul_peak", {})
    rows = [[d["backend"], f"{d['clip_s']:g}", str(d["frames_padded"]), f"{d['gflop']:.3f}", f"{d['gflops_achieved']:.1f}",
             "—" if d["fraction_of_peak"] is None else f"{100 * d['fraction_of_peak']:.1f}%"] for d in cm.get("denoiser", [])]
    og = cm.get("onnx_graph", {})
    check = (f"ONNX graph count: {og['flops_per_frame']:.4g} FLOPs/frame ({og['manifest_ratio']:.3f}x the manifest)" if og.get("manifest_ratio")
             else og.get("skipped", ""))
    tables.append(TableData("cost model: denoiser step vs matmul peak", ["backend", "clip s", "frames", "GFLOP/step", "GFLOP/s", "of peak"], rows,
                            f"peak: numpy float32 {pk.get('n')}x{pk.get('n')} matmul, best of {pk.get('repeats')}, {pk.get('threads')} threads = "
                            f"{_num(pk.get('gflops'), '.1f')} GFLOP/s. FLOPs/frame ({cm.get('flops_source')}): "
                            f"{_num(cm.get('flops_per_frame_manifest'), '.4g')}. {check}", numeric={1, 2, 3, 4, 5}))

    # targets
    rows = []
    for t in report["targets"]:
        val = "—" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        if t["status"] == "n/a":
            margin = t["detail"]
        elif t["status"] == "pass":
            margin = f"{t['factor']:.2f}x better than needed; {t['detail']}"
        else:
            margin = f"needs {1 / t['factor']:.2f}x; {t['detail']}" if t["factor"] > 0 else t["detail"]
        rows.append([t["label"], val, f"{t['op']} {t['goal']:g}{t['unit']}", t["status"].upper(), margin])
    tables.append(TableData("MISSION.md performance targets", ["target", "measured", "goal", "status", "margin"], rows))

    # steps x sampler
    q = report.get("quality")
    if q and q.get("rows"):
        extra = [k for k in dict.fromkeys(k for r in q["rows"] for k in r) if k not in ("sampler", "steps", "rtf")]
        rows = [[r["sampler"], str(r["steps"]), f"{r['rtf']:.4f}", *[_cell(r.get(k)) for k in extra]] for r in q["rows"]]
        tables.append(TableData(f"steps x sampler ({q['backend']}, {q['clips']} x {q['clip_s']:g} s clips)", ["sampler", "steps", "RTF", *extra], rows,
                                q.get("note", ""), numeric=set(range(1, 3 + len(extra)))))

    return tables


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "—" if v is None else str(v)


def _opts(o: dict | None) -> str:
    if not o:
        return ""
    return "(" + ", ".join(f"{k} {o[k]}" for k in ("steps", "sampler", "strength", "guidance") if k in o) + ")"


def to_markdown(report: dict) -> str:
    """The report's tables as GitHub Markdown (for the README)."""
    out = [f"# emort benchmark ({report['created']}, emort {report['emort_version']}, bundle {report['bundle']['name']})", ""]
    for w in report.get("warnings", []):
        out.append(f"- **warning:** {w}")
    if report.get("warnings"):
        out.append("")
    for t in report_tables(report):
        out += [f"### {t.title}", ""]
        if t.caption:
            out += [t.caption, ""]
        out.append("| " + " | ".join(t.headers) + " |")
        out.append("|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t.rows]
        out.append("")
    return "\n".join(out)


def rich_tables(report: dict) -> list:
    """The report's tables as ``rich.table.Table`` objects."""
    from rich.markup import escape
    from rich.table import Table

    out = []
    for t in report_tables(report):
        tab = Table(title=escape(t.title), caption=escape(t.caption) if t.caption else None, caption_justify="left")
        for i, h in enumerate(t.headers):
            tab.add_column(escape(h), justify="right" if i in t.numeric else "left", overflow="fold")
        for r in t.rows:
            cells = [escape(c) for c in r]
            if t.title.startswith("MISSION"):
                colour = {"PASS": "green", "MISS": "red"}.get(r[3], "yellow")
                cells[3] = f"[{colour}]{cells[3]}[/]"
            tab.add_row(*cells)
        out.append(tab)
    return out
