"""The denoiser in bfloat16 on CPUs with bf16 dot-product instructions, through OpenVINO (optional: the ``[openvino]`` extra).

onnxruntime's CPU execution provider has no bfloat16 kernels on x86 (a bf16 graph fails to load;
its int8 graph made a different edit: docs/bench/quantize.md), while OpenVINO's CPU plugin runs
the same ONNX graph in bfloat16 on Intel AMX and on CPUs with AVX512-BF16 (AMD Zen 4 and later,
Intel Cooper Lake) (``INFERENCE_PRECISION_HINT=bf16``: OpenVINO chooses which operators run in
bf16; the dot products accumulate in float32). Measured on six validation clips on an Intel Xeon
with AMX (docs/bench/0.20/precision.md): the bf16 edit differs from the float32 edit by about half
as much as the float32 edit differs between two noise seeds; ``python benchmarks/precision.py``
repeats the comparison. Speed of a step at 3 s: 3.45x PyTorch eager on that Xeon; on an AMD EPYC
with AVX512-BF16 the edit's call 1.1-1.6x onnxruntime float32 in-process, but a folder of short
clips slower as a whole process (docs/bench/0.22/bf16_avx512.md).

The ``openvino`` package is imported only when a bf16 denoiser may be used (``precision="bf16"``,
or ``auto`` with a bundle that lists a checked bf16 edit: :func:`resolve_precision`).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from emort.runtime.errors import BackendError

#: Precisions of the denoiser: ``fp32`` (onnxruntime), ``bf16`` (OpenVINO, CPU), ``fp16`` (TensorRT),
#: ``auto`` (on the CPU bf16 where :func:`bf16_status` finds AMX-BF16 or AVX512-BF16 and OpenVINO,
#: on TensorRT fp16, each only where the bundle lists that precision's edit as checked).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: ``Enhancer.load``'s and the CLI's default.
DEFAULT_PRECISION = "fp32"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags Linux reports (``/proc/cpuinfo``); empty elsewhere or when unreadable."""
    if cpuinfo is None:
        if not sys.platform.startswith("linux"):
            return set()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_status(flags: set[str] | None = None) -> tuple[bool, str]:
    """``(usable, why)``: whether a bf16 denoiser can run here and is worth running. It needs
    OpenVINO (``pip install 'emort[openvino]'``) whose CPU plugin reports BF16 among its
    optimisation capabilities, on a CPU with AMX-BF16 (Intel Xeon 4th generation and later) or
    AVX512-BF16 (AMD Zen 4 and later; Intel Cooper Lake), the CPUs with bf16 dot-product
    instructions. On both kinds the edit's denoiser call ran faster in bf16 in-process; on the
    AVX512-BF16 machine a whole-process run over a folder of short clips was slower
    (docs/bench/0.20/precision.md, docs/bench/0.22/bf16_avx512.md). ``why`` says what is missing."""
    if flags is None:
        flags = cpu_flags()
        if not flags:
            return False, "this system does not report its CPU's features (bf16 is used only where AMX-BF16 or AVX512-BF16 is reported)"
    unit = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None
    if unit is None:
        return False, ("emort runs bf16 only on CPUs with AMX-BF16 or AVX512-BF16 (bf16 dot-product instructions), "
                       "and this one has neither")
    try:
        import openvino as ov
    except ImportError:
        return False, "OpenVINO is not installed (pip install 'emort[openvino]')"
    try:
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError as e:
        return False, f"OpenVINO's CPU plugin does not start ({_last_line(e)})"
    if "BF16" not in caps:
        return False, f"OpenVINO's CPU plugin does not offer BF16 here (a virtual machine may hide the CPU's {unit})"
    return True, f"{unit} and OpenVINO"


def resolve_precision(precision: str, device: str, measured: bool, status: tuple[bool, str] | None = None,
                      measured_fp16: bool = False) -> tuple[str, str]:
    """The denoiser's precision for a resolved ``device``: ``(fp32 | bf16 | fp16, why)``.

    On the CPU, ``auto`` -> ``bf16`` where ``measured`` (the bundle lists a bf16 edit checked
    against float32 for its denoiser file) and :func:`bf16_status` allows it (asked only then, so
    OpenVINO is not imported otherwise); on TensorRT, ``auto`` -> ``fp16`` where
    ``measured_fp16`` (the same, checked in fp16); else ``fp32`` (CUDA: always). The same rule
    as bf16's: a reduced precision is used unasked only where its edit was checked against
    float32. An explicit ``bf16`` or ``fp16`` that cannot run here raises :class:`BackendError`
    naming the cause. ``status``: for tests.
    """
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32", "asked for"
    if precision == "fp16" and device != "tensorrt":
        raise BackendError(f"precision fp16 runs on TensorRT only, not on {device!r} (add --device tensorrt)")
    if device == "tensorrt":
        if precision == "bf16":
            raise BackendError(f"precision bf16 runs on the CPU only, not on {device!r} (add --device cpu)")
        if precision == "fp16":
            return "fp16", "asked for"
        if not measured_fp16:
            return "fp32", "the bundle lists no fp16 edit checked against float32"
        return "fp16", "the bundle's fp16 edit was checked against float32"
    if device != "cpu":
        if precision == "bf16":
            raise BackendError(f"precision bf16 runs on the CPU only, not on {device!r} (add --device cpu)")
        return "fp32", f"device {device}"
    if precision == "auto" and not measured:
        return "fp32", "the bundle lists no bf16 edit checked against float32"
    ok, why = status if status is not None else bf16_status()
    if precision == "bf16":
        if not ok:
            raise BackendError(f"precision bf16 is not available: {why}")
        return "bf16", "asked for"
    if not ok:
        return "fp32", why
    return "bf16", why


def _usable_cache_dir(cache_dir: str | Path | bool | None) -> Path | None:
    """The model-cache folder :class:`OpenVinoModel` uses, created, or None (no cache): ``False``,
    or a folder that cannot be created or written."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        from emort.runtime.trt import default_cache_root

        cache_dir = default_cache_root() / "openvino"
    d = Path(cache_dir).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d if os.access(d, os.W_OK | os.X_OK) else None


def _last_line(e: BaseException) -> str:
    """OpenVINO's errors are stacks of 'Exception from src/...' lines; the last non-empty one says what."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("Exception from")]
    return lines[-1] if lines else type(e).__name__


class OpenVinoModel:
    """One graph compiled by OpenVINO's CPU plugin. ``__call__(**inputs) -> list of outputs``:
    every input is passed as float32 (the denoiser's inputs all are), outputs are float32 copies.

    ``precision``: ``bf16`` (OpenVINO's bf16 inference precision) or ``fp32``. A bf16 graph
    that OpenVINO compiles in float32 instead (it does so silently on a CPU without bf16)
    raises :class:`BackendError`, as does a graph it cannot compile (one line). ``threads``:
    inference threads (default: all cores); with fewer threads than cores the threads are not
    pinned to cores, so several processes on one machine (Ray workers) do not share a core.
    One instance may be called from several threads: its one infer request serves the calls one
    after another (a lock). They ran one after another anyway on the compiled model's one stream,
    and concurrent first calls at new input shapes, each thread with its own request building its
    kernels inside OpenVINO's thread pool, once hung a full test run for good (every thread waiting;
    2 cores).

    ``cache_dir``: where OpenVINO keeps the compiled model between processes (its model cache,
    keyed by the graph file, the settings and the CPU): compiling the shipped denoiser took
    0.26-0.34 s and loading it from the cache 0.05 s on an Intel Xeon with AMX
    (docs/bench/0.24/README.md). Default ``$EMORT_CACHE/openvino`` (``~/.cache/emort/openvino``);
    ``False``: no cache. A folder that cannot be created or written means no cache, not an error.
    The first call with each new number of frames still costs OpenVINO 30-45 ms there (it builds
    its kernels per input shape, in memory only).
    """

    def __init__(self, path: Path, precision: str = "bf16", threads: int | None = None,
                 cache_dir: str | Path | bool | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("OpenVINO is not installed (pip install 'emort[openvino]')") from None
        config: dict = {"INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
            if int(threads) < (os.cpu_count() or 1):
                config["ENABLE_CPU_PINNING"] = False
        self.path = Path(path)
        self.device = "cpu"
        self.precision = precision
        self.cache_dir = _usable_cache_dir(cache_dir)
        try:
            try:
                self.compiled = ov.Core().compile_model(str(path), "CPU", {**config, "CACHE_DIR": str(self.cache_dir)}
                                                        if self.cache_dir else config)
            except RuntimeError:
                if not self.cache_dir:
                    raise
                self.cache_dir = None  # a cache OpenVINO cannot use (e.g. a blob it fails to read) is skipped
                self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as e:
            raise BackendError(f"{path}: OpenVINO cannot compile it ({_last_line(e)})") from None
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        if precision == "bf16" and got != ov.Type.bf16:
            raise BackendError(f"{path}: OpenVINO compiled it in {got.get_type_name()}, not bf16, on this CPU")
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, **inputs):
        import numpy as np  # not at import: the CLI reads PRECISIONS before it needs numpy

        feeds = {k: np.ascontiguousarray(inputs[k], np.float32) for k in self.input_names}
        with self._lock:
            self._request.infer(feeds)
            # copies: the request's output tensors are overwritten by its next call
            return [np.array(self._request.get_output_tensor(i).data, np.float32) for i in range(len(self.output_names))]
