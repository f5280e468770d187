"""The denoiser in bfloat16 on CPUs with bf16 matrix units, through OpenVINO (optional: the ``[openvino]`` extra).

onnxruntime's CPU execution provider has no bfloat16 kernels on x86 (a bf16 graph fails to load;
its int8 graph made a different edit: docs/bench/quantize.md), while OpenVINO's CPU plugin runs
the same ONNX graph with bf16 convolutions on Intel AMX (``INFERENCE_PRECISION_HINT=bf16``), the
accumulation and the element-wise operators in float32. Measured on validation clips
(``python benchmarks/precision.py``, docs/bench/0.20/precision.md): the bf16 edit differs from
the float32 edit by less than the float32 edit differs between two noise seeds.

Nothing here is imported unless a bf16 denoiser is asked for (``precision="bf16"``, or ``auto``
on a CPU with AMX-BF16: :func:`resolve_precision`).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from emort.runtime.errors import BackendError

#: Precisions of the denoiser: ``fp32`` (onnxruntime), ``bf16`` (OpenVINO), ``auto`` (bf16 where
#: :func:`bf16_status` finds AMX-BF16 and OpenVINO, and the bundle lists bf16 as measured).
PRECISIONS = ("auto", "fp32", "bf16")

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
    OpenVINO (``pip install 'emort[openvino]'``) and a CPU with AMX-BF16 (Intel Xeon 4th
    generation and later: the only kind it was measured faster on); ``why`` says what is missing."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" not in flags:
        return False, "this CPU has no AMX-BF16 matrix unit (bf16 measured faster only with it)"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, "OpenVINO is not installed (pip install 'emort[openvino]')"
    return True, "AMX-BF16 and OpenVINO"


def resolve_precision(precision: str, device: str, measured: bool, status: tuple[bool, str] | None = None) -> tuple[str, str]:
    """The denoiser's precision for a resolved ``device``: ``(fp32 | bf16, why)``.

    ``auto`` -> ``bf16`` on the CPU where :func:`bf16_status` allows it and ``measured`` (the
    bundle lists bf16 among the precisions its edit was checked in), else ``fp32``. An explicit
    ``bf16`` that cannot run raises :class:`BackendError` naming the cause.
    """
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32", "asked for"
    if device != "cpu":
        if precision == "bf16":
            raise BackendError(f"precision bf16 runs on the CPU only (device {device!r}; TensorRT already runs in fp16)")
        return "fp32", f"device {device}"
    ok, why = status if status is not None else bf16_status()
    if precision == "bf16":
        if not ok:
            raise BackendError(f"precision bf16 is not available: {why}")
        return "bf16", "asked for"
    if not ok:
        return "fp32", why
    if not measured:
        return "fp32", "the bundle lists no measured bf16 edit"
    return "bf16", why


class OpenVinoModel:
    """One graph compiled by OpenVINO's CPU plugin. ``__call__(**inputs) -> list of outputs`` (float32).

    ``precision``: ``bf16`` (its convolutions and matrix products in bfloat16, accumulated in
    float32) or ``fp32``. ``threads``: inference threads (default: all cores). Each calling thread
    gets its own infer request, so one instance serves concurrent callers.
    """

    def __init__(self, path: Path, precision: str = "bf16", threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("OpenVINO is not installed (pip install 'emort[openvino]')") from None
        config = {"INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.path = Path(path)
        self.device = "cpu"
        self.precision = precision
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self._local = threading.local()

    def __call__(self, **inputs):
        import numpy as np  # not at import: the CLI reads PRECISIONS before it needs numpy

        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        req.infer({k: np.ascontiguousarray(inputs[k], np.float32) for k in self.input_names})
        # copies: the request's output tensors are overwritten by its next call
        return [np.array(req.get_output_tensor(i).data, np.float32) for i in range(len(self.output_names))]
