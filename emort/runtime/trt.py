"""Native TensorRT engines at run time: find the engine built for this GPU, run it.

``emort export tensorrt`` (``emort.export.tensorrt``) builds one engine per bundle
graph and caches it as ``<engine_dir>/<name>-<key>.plan`` plus a ``.json`` sidecar
that records what it was built from and for (bundle hash, ONNX checksum, GPU,
compute capability, TensorRT version, precision). :class:`TrtModel` runs such a
plan with the same call interface as :class:`emort.runtime.session.OrtModel`.

This module never imports torch or librosa, and imports ``tensorrt`` and
``cuda.bindings`` only inside the functions that need a GPU, so ``import
emort.runtime.trt`` works on any machine. The pure-python parts (cache keys,
engine choice, shape signatures, buffer sizes, the capture schedule) are small
functions tested without a device in ``tests/export/test_tensorrt_logic.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emort.runtime.errors import BackendError

log = logging.getLogger(__name__)

#: Bumped when the plan layout or sidecar meaning changes; part of every cache key.
ENGINE_FORMAT = 1
INSTALL_HINT = "TensorRT export needs an NVIDIA GPU and `pip install 'emort[tensorrt]'`"
PLAN_SUFFIX = ".plan"
KEY_LEN = 20
#: Distinct input-shape signatures with a captured CUDA graph kept per model (LRU).
MAX_GRAPHS = 16
_ALIGN = 256

Shape = tuple[int, ...]
Signature = tuple[tuple[str, Shape], ...]


# --- lazy imports ----------------------------------------------------------------------------


def import_tensorrt():
    """``tensorrt``, or BackendError naming the extra to install."""
    try:
        import tensorrt
    except ImportError:
        raise BackendError(INSTALL_HINT) from None
    return tensorrt


def import_cudart():
    """``cuda.bindings.runtime`` (cuda-python), or BackendError naming the extra to install."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise BackendError(INSTALL_HINT) from None
    return cudart


def cuda_check(result, what: str):
    """Unwrap a cuda-python result ``(err, *values)``: raise BackendError unless ``err`` is 0.

    Returns None, the single value, or a tuple of values.
    """
    if not isinstance(result, tuple):
        result = (result,)
    err, *values = result
    if int(err) != 0:
        raise BackendError(f"CUDA call {what} failed: {err!r}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# --- what an engine is built for -------------------------------------------------------------


def normalize_cc(compute_capability) -> str:
    """``(8, 9)``, ``"8.9"``, ``89.0`` -> ``"8.9"``; a string other than ``major.minor`` is kept."""
    if isinstance(compute_capability, (tuple, list)):
        major, minor = compute_capability
        return f"{int(major)}.{int(minor)}"
    return str(compute_capability).strip()


@dataclass(frozen=True)
class EngineFacts:
    """What a serialized engine is tied to: the GPU model and the TensorRT version."""

    gpu_name: str
    compute_capability: str  # "major.minor"
    trt_version: str

    def matches(self, meta: Mapping) -> bool:
        return (
            meta.get("gpu_name") == self.gpu_name
            and normalize_cc(meta.get("compute_capability", "")) == self.compute_capability
            and meta.get("trt_version") == self.trt_version
        )


def gpu_facts(device: int | None = None) -> EngineFacts:
    """Facts of the current (or given) CUDA device and the installed TensorRT. Needs a GPU."""
    trt = import_tensorrt()
    cudart = import_cudart()
    if device is None:
        device = int(cuda_check(cudart.cudaGetDevice(), "cudaGetDevice"))
    prop = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return EngineFacts(gpu_name=str(name).strip(), compute_capability=f"{prop.major}.{prop.minor}", trt_version=str(trt.__version__))


def current_facts() -> EngineFacts | None:
    """:func:`gpu_facts`, or None where TensorRT / CUDA / a GPU is missing."""
    try:
        return gpu_facts()
    except Exception as e:  # BackendError, or a driver without a device
        log.debug("no GPU facts: %s", e)
        return None


def engine_key(bundle_hash: str, gpu_name: str, compute_capability, trt_version: str, precision: str = "fp16",
               shapes: Mapping | None = None) -> str:
    """Stable cache key (sha256 hex, first 20) of everything an engine depends on."""
    payload = {
        "format": ENGINE_FORMAT,
        "bundle": str(bundle_hash),
        "gpu": str(gpu_name),
        "cc": normalize_cc(compute_capability),
        "trt": str(trt_version),
        "precision": str(precision),
        "shapes": shapes or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:KEY_LEN]


def bundle_shapes(bundle) -> dict:
    """The shape ranges and stride of a bundle, as they enter the cache key."""
    return {"batch": [int(v) for v in bundle.shapes.batch], "frames": [int(v) for v in bundle.shapes.frames],
            "stride": int(bundle.stride)}


# --- where engines live ----------------------------------------------------------------------


def default_cache_root() -> Path:
    """``$EMORT_CACHE`` or ``~/.cache/emort``."""
    env = os.environ.get("EMORT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emort"


def default_engine_dir(bundle, cache_root: str | Path | None = None) -> Path:
    """``<cache root>/engines/<bundle content hash>``: one folder per bundle's weights."""
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    return root / "engines" / bundle.content_hash


def plan_filename(name: str, key: str) -> str:
    return f"{name}-{key}{PLAN_SUFFIX}"


def meta_path(plan: Path) -> Path:
    """The JSON sidecar of a plan: same stem, ``.json``."""
    return plan.with_suffix(".json")


def parse_plan_filename(filename: str) -> tuple[str, str] | None:
    """``"denoiser-<20 hex>.plan"`` -> ``("denoiser", key)``; None for any other name."""
    m = re.fullmatch(rf"(.+)-([0-9a-f]{{{KEY_LEN}}}){re.escape(PLAN_SUFFIX)}", filename)
    return (m.group(1), m.group(2)) if m else None


@dataclass(frozen=True)
class EngineCandidate:
    path: Path
    meta: dict | None  # the sidecar, None when absent or unreadable
    mtime: float


def choose_engine(candidates: Sequence[EngineCandidate], facts: EngineFacts | None = None,
                  onnx_sha256: str | None = None) -> Path | None:
    """The best plan among ``candidates``, or None.

    A plan whose sidecar says it was built for another GPU / TensorRT version (when
    ``facts`` are known) or from another ONNX file (when ``onnx_sha256`` is given) is
    never chosen: it would not load, or would run other weights. Among the rest, one
    whose sidecar confirms the facts beats one without a sidecar; then the newest wins.
    """
    best: tuple[int, float] | None = None
    chosen = None
    for c in candidates:
        meta = c.meta
        if meta is not None and onnx_sha256 is not None and meta.get("onnx_sha256") not in (None, onnx_sha256):
            continue
        if meta is not None and facts is not None:
            if not facts.matches(meta):
                continue
            rank = 2
        else:
            rank = 1
        score = (rank, c.mtime)
        if best is None or score > best:
            best, chosen = score, c.path
    return chosen


def _read_meta(plan: Path) -> dict | None:
    mp = meta_path(plan)
    try:
        return json.loads(mp.read_text())
    except (OSError, ValueError):
        return None


_AUTO = object()


def find_engine(engine_dir: str | Path, name: str, facts: EngineFacts | None | object = _AUTO,
                source: str | Path | None = None, precision: str | None = None) -> Path | None:
    """The plan for graph ``name`` in ``engine_dir`` to run here, or None.

    ``facts`` defaults to this machine's GPU / TensorRT (:func:`current_facts`; None
    where they cannot be read). ``source``: the bundle's ONNX file; when given, only a
    plan built from a file with the same sha256 is taken. ``precision`` (``fp32``, ``fp16``):
    when given, only a plan whose sidecar says it was built so (a plan without a sidecar is
    of unknown precision, and not taken). See :func:`choose_engine`.
    """
    d = Path(engine_dir)
    if not d.is_dir():
        return None
    cands = []
    other: set[str] = set()  # precisions of the plans passed over
    for p in d.glob(f"{glob_escape(name)}-*{PLAN_SUFFIX}"):
        parsed = parse_plan_filename(p.name)
        if parsed is None or parsed[0] != name or not p.is_file():
            continue
        meta = _read_meta(p)
        if precision is not None and (meta or {}).get("precision") != precision:
            other.add(str((meta or {}).get("precision", "unknown")))
            continue
        cands.append(EngineCandidate(p, meta, p.stat().st_mtime))
    if not cands:
        if other:  # e.g. the FP16 plans of emort before 0.26 (its FP32 run needs FP32 engines)
            log.warning("TensorRT engines for %r in %s are %s, not %s; run `emort export tensorrt` again to build %s ones",
                        name, d, " and ".join(sorted(other)), precision, precision)
        return None
    if facts is _AUTO:
        facts = current_facts()
    digest = None
    if source is not None and Path(source).is_file():
        from emort.runtime.bundle import sha256_file

        digest = sha256_file(Path(source))
    chosen = choose_engine(cands, facts, digest)  # type: ignore[arg-type]
    if chosen is None:
        log.warning("TensorRT engines for %r in %s were built for another GPU, TensorRT version or model; "
                    "rebuild them with `emort export tensorrt`", name, d)
    return chosen


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


# --- pure helpers of the execution path ------------------------------------------------------


def shape_signature(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> Signature:
    """``((name, shape), ...)`` in input order: the key of a captured CUDA graph."""
    return tuple((n, tuple(int(d) for d in arrays[n].shape)) for n in names)


def nbytes(shape: Iterable[int], itemsize: int) -> int:
    n = int(itemsize)
    for d in shape:
        if int(d) < 0:
            raise ValueError(f"shape {tuple(shape)} has an unknown dimension")
        n *= int(d)
    return n


def grow_capacity(current: int, needed: int, align: int = _ALIGN) -> int:
    """Grow-only device buffer size: ``current`` if it fits, else at least 1.5x, aligned."""
    if needed <= current:
        return current
    want = max(needed, current + current // 2, align)
    return -(-want // align) * align


def check_profile(name: str, shape: Shape, profile: tuple[Shape, Shape, Shape]) -> None:
    """BackendError unless ``shape`` lies inside the engine's optimisation profile ``(min, opt, max)``."""
    lo, _, hi = profile
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi, strict=True)):
        rng = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(lo, hi, strict=True))
        raise BackendError(f"input {name!r} has shape {tuple(shape)}, outside the TensorRT engine's range ({rng}); "
                           "rebuild the engines with wider bundle shapes or use --device cuda/cpu")


def prepare_inputs(inputs: Mapping[str, np.ndarray], names: Sequence[str], dtypes: Mapping[str, np.dtype],
                   profiles: Mapping[str, tuple[Shape, Shape, Shape]] | None = None) -> dict[str, np.ndarray]:
    """Contiguous arrays of the engine's dtypes, in the engine's input names; clear errors otherwise."""
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise ValueError(f"inputs must be exactly {list(names)} (missing {missing}, unexpected {extra})")
    out = {}
    for n in names:
        a = np.ascontiguousarray(inputs[n], dtype=dtypes[n])
        if profiles is not None and n in profiles:
            check_profile(n, a.shape, profiles[n])
        out[n] = a
    return out


def plan_execution(sig: Signature, last: Signature | None, graphs: Mapping, failed: set, enabled: bool = True) -> str:
    """What to do for one call: ``"replay"`` a captured graph; ``"capture"`` one when the
    previous enqueue had these very shapes (TensorRT does its shape-dependent setup on the
    first enqueue after a shape change, which must not land in a graph); else ``"execute"``."""
    if not enabled:
        return "execute"
    if sig in graphs:
        return "replay"
    if sig == last and sig not in failed:
        return "capture"
    return "execute"


# --- the model -------------------------------------------------------------------------------


class TrtModel:
    """One deserialized TensorRT engine. ``__call__(**inputs) -> list of outputs`` (numpy),
    in ``output_names`` order, like :class:`emort.runtime.session.OrtModel`.

    Device buffers are kept per tensor and only grow. After the first call with a given
    set of input shapes, the second captures the enqueue into a CUDA graph and later
    calls replay it (host<->device copies stay outside the graph). Calls are serialised
    by a lock: an execution context is not thread-safe.
    """

    def __init__(self, engine_path: str | Path, cuda_graphs: bool = True, max_graphs: int = MAX_GRAPHS):
        trt = import_tensorrt()
        self._cudart = cudart = import_cudart()
        self.path = Path(engine_path)
        self.device = "tensorrt"
        self.precision = (_read_meta(self.path) or {}).get("precision", "unknown")
        self.cuda_graphs = cuda_graphs
        self.max_graphs = max(0, int(max_graphs))
        self._lock = threading.Lock()
        self._closed = False
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self._graphs: OrderedDict[Signature, object] = OrderedDict()  # sig -> cudaGraphExec_t
        self._last: Signature | None = None  # shapes of the last plain enqueue
        self._failed: set[Signature] = set()
        self._stream = None

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise BackendError(f"{self.path}: cannot read TensorRT engine ({e})") from None
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"{self.path}: TensorRT could not load this engine (built for another GPU or TensorRT "
                               "version?); rebuild it with `emort export tensorrt`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{self.path}: could not create a TensorRT execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.profiles: dict[str, tuple[Shape, Shape, Shape]] = {
            n: tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(n, 0))  # type: ignore[misc]
            for n in self.input_names
        }
        self._stream = cuda_check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    # -- public -----------------------------------------------------------------------------

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        arrays = prepare_inputs(inputs, self.input_names, self._dtypes, self.profiles)
        sig = shape_signature(arrays, self.input_names)
        cudart = self._cudart
        with self._lock:
            if self._closed:
                raise BackendError(f"{self.path}: TensorRT model is closed")
            for n in self.input_names:
                if not self.context.set_input_shape(n, arrays[n].shape):
                    raise BackendError(f"{self.path}: TensorRT rejected shape {arrays[n].shape} for input {n!r}")
            out_shapes = {n: tuple(int(d) for d in self.context.get_tensor_shape(n)) for n in self.output_names}
            for n, s in out_shapes.items():
                if any(d < 0 for d in s):
                    raise BackendError(f"{self.path}: output {n!r} has a data-dependent shape {s}; not supported")
            sizes = {n: arrays[n].nbytes for n in self.input_names}
            sizes.update({n: nbytes(s, self._dtypes[n].itemsize) for n, s in out_shapes.items()})
            if self._ensure_buffers(sizes):
                self._drop_graphs()  # captured graphs hold the old addresses
            for n, (ptr, _) in self._buffers.items():
                self.context.set_tensor_address(n, ptr)

            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            for n in self.input_names:
                a = arrays[n]
                if a.nbytes:
                    cuda_check(cudart.cudaMemcpyAsync(self._buffers[n][0], a.ctypes.data, a.nbytes, h2d, self._stream), "cudaMemcpyAsync H2D")
            self._run(sig)
            outs = [np.empty(out_shapes[n], self._dtypes[n]) for n in self.output_names]
            d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            for n, o in zip(self.output_names, outs, strict=True):
                if o.nbytes:
                    cuda_check(cudart.cudaMemcpyAsync(o.ctypes.data, self._buffers[n][0], o.nbytes, d2h, self._stream), "cudaMemcpyAsync D2H")
            cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return outs

    def close(self) -> None:
        """Free graphs, device buffers and the stream. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cudart = self._cudart
            try:
                if self._stream is not None:
                    cudart.cudaStreamSynchronize(self._stream)
                self._drop_graphs()
                for ptr, _ in self._buffers.values():
                    cudart.cudaFree(ptr)
                self._buffers.clear()
                if self._stream is not None:
                    cudart.cudaStreamDestroy(self._stream)
                    self._stream = None
            except Exception as e:  # interpreter shutdown, driver gone
                log.debug("TrtModel.close: %s", e)

    def __enter__(self) -> TrtModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals --------------------------------------------------------------------------

    def _ensure_buffers(self, sizes: Mapping[str, int]) -> bool:
        """Grow device buffers to ``sizes``; True if any was reallocated."""
        cudart = self._cudart
        grew = False
        for n, need in sizes.items():
            ptr, cap = self._buffers.get(n, (0, 0))
            new_cap = grow_capacity(cap, max(int(need), 1))
            if new_cap != cap or n not in self._buffers:
                if ptr:
                    cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
                    cuda_check(cudart.cudaFree(ptr), "cudaFree")
                new_ptr = cuda_check(cudart.cudaMalloc(new_cap), "cudaMalloc")
                self._buffers[n] = (int(new_ptr), new_cap)
                grew = True
        return grew

    def _run(self, sig: Signature) -> None:
        action = plan_execution(sig, self._last, self._graphs, self._failed, self.cuda_graphs and self.max_graphs > 0)
        if action == "capture":
            self._capture(sig)
            action = "replay" if sig in self._graphs else "execute"
        if action == "replay":
            self._graphs.move_to_end(sig)
            cuda_check(self._cudart.cudaGraphLaunch(self._graphs[sig], self._stream), "cudaGraphLaunch")
            return
        if not self.context.execute_async_v3(int(self._stream)):
            raise BackendError(f"{self.path}: TensorRT execution failed")
        self._last = sig

    def _capture(self, sig: Signature) -> None:
        """Record one enqueue for these shapes into a CUDA graph; on failure, run without graphs for them."""
        cudart = self._cudart
        graph = None
        try:
            cuda_check(cudart.cudaStreamBeginCapture(self._stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                       "cudaStreamBeginCapture")
            ok = self.context.execute_async_v3(int(self._stream))
            graph = cuda_check(cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
            if not ok:
                raise BackendError("execute_async_v3 failed during capture")
            exe = cuda_check(cudart.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        except Exception as e:
            log.info("%s: CUDA graph capture failed for shapes %s (%s); running without a graph", self.path.name, sig, e)
            status = cudart.cudaStreamIsCapturing(self._stream)
            if isinstance(status, tuple) and len(status) > 1 and int(status[1]) != 0:
                cudart.cudaStreamEndCapture(self._stream)
            cudart.cudaGetLastError()  # clear the error the failed capture left behind
            self._failed.add(sig)
            return
        finally:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)
        self._graphs[sig] = exe
        while len(self._graphs) > self.max_graphs:
            _, old = self._graphs.popitem(last=False)
            cudart.cudaGraphExecDestroy(old)

    def _drop_graphs(self) -> None:
        for exe in self._graphs.values():
            self._cudart.cudaGraphExecDestroy(exe)
        self._graphs.clear()
