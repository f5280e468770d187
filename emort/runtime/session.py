"""Backend choice and inference sessions: TensorRT > CUDA > CPU.

``device="auto"`` picks the best available backend once per process (TensorRT only where its Python
package imports and sees a GPU: onnxruntime-gpu lists its TensorRT provider either way). The CPU
and CUDA backends are onnxruntime sessions; ``tensorrt`` runs the engines that
``emort export tensorrt`` built and cached for this GPU (``emort.runtime.trt``),
falling back to onnxruntime's TensorRT execution provider when the native
engines are absent.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emort.runtime.errors import BackendError, BundleError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def native_tensorrt_available() -> bool:
    """The TensorRT Python package and CUDA runtime bindings import, and a GPU is visible."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart  # noqa: F401
    except ImportError:
        return False
    try:
        err, n = cudart.cudaGetDeviceCount()
        return int(err) == 0 and n > 0
    except Exception:  # driver missing
        return False


#: onnxruntime's provider names -> emort's device names, best first.
PROVIDER_DEVICES = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def available_devices(providers: Sequence[str] | None = None, native_trt: bool | None = None) -> list[str]:
    """Backends usable here, best first (``cpu`` always, last)."""
    providers = ort_providers() if providers is None else list(providers)
    native_trt = native_tensorrt_available() if native_trt is None else native_trt
    out = [dev for prov, dev in PROVIDER_DEVICES.items() if dev != "cpu" and (prov in providers or (dev == "tensorrt" and native_trt))]
    return out + ["cpu"]


#: The one-line repair when :func:`gpu_build_shadowed`: one onnxruntime module, the GPU build.
GPU_BUILD_FIX = "python -m pip uninstall -y onnxruntime onnxruntime-gpu && python -m pip install onnxruntime-gpu"
_CUDA_PROVIDER_LIBS = ("libonnxruntime_providers_cuda.so", "onnxruntime_providers_cuda.dll")


def gpu_build_shadowed(providers: Sequence[str] | None = None, capi_dir: Path | None = None) -> bool:
    """onnxruntime-gpu's CUDA provider library is installed, yet the imported ``onnxruntime`` lists no
    CUDA provider: the CPU package ``onnxruntime`` (a core dependency of emort) was installed over
    ``onnxruntime-gpu``, which installs the same module, so its GPU providers are gone (onnxruntime
    issue #26996, "`onnxruntime` and `onnxruntime-gpu` can not co-exist"). The GPU build lists its
    providers even on a host without a GPU, so the two together mean this mix-up. A file check
    (``capi_dir``: onnxruntime's ``capi`` folder), not a package-metadata scan, which costs 25-45 ms
    at start-up. A caller's own ``providers`` are checked against files only with its ``capi_dir``: the
    installed module's files say nothing of a list that did not come from it."""
    if providers is not None and capi_dir is None:
        return False
    providers = ort_providers() if providers is None else list(providers)
    if "CUDAExecutionProvider" in providers:
        return False
    if capi_dir is None:
        import onnxruntime as ort

        capi_dir = Path(ort.__file__).parent / "capi"
    return any((capi_dir / name).exists() for name in _CUDA_PROVIDER_LIBS)


def shadowed_hint() -> str:
    """The mix-up and its repair, one line; the repair pins the onnxruntime-gpu version that is installed
    (a newer one may need a newer CUDA than the host has)."""
    # imported only here, on the mix-up's path: a metadata scan costs 25-45 ms
    from importlib import metadata

    try:
        fix = GPU_BUILD_FIX + f"=={metadata.version('onnxruntime-gpu')}"
    except metadata.PackageNotFoundError:
        fix = GPU_BUILD_FIX
    return ("onnxruntime-gpu is installed, but the CPU package onnxruntime was installed over it and the module lists no GPU "
            f"provider; for the GPU, keep only the GPU build: {fix}")


_warned: set[object] = set()  # warnings said once per process: "shadowed", (asked, running) fallbacks
_warned_lock = threading.Lock()


def _warn_once(key: object, message: str) -> None:
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning(message)


def fallback_message(asked: str, running: str) -> str:
    """What ``auto`` says when onnxruntime could not start ``asked`` and runs on ``running`` (devices
    best first: tensorrt > cuda > cpu): the backends that failed, what they need, how to skip them."""
    order = ("tensorrt", "cuda", "cpu")
    failed = order[order.index(asked) : order.index(running)]
    needs = {"tensorrt": "the TensorRT libraries", "cuda": "the CUDA and cuDNN libraries onnxruntime-gpu was built for"}
    what = " and ".join(needs[d] for d in failed if d in needs) or "its libraries"
    skip = "skips the GPU" if running == "cpu" else f"skips {' and '.join(failed)}"
    return (f"onnxruntime could not start {' or '.join(failed)} here (it needs {what}; its own messages above name what is "
            f"missing); running on {running}. --device {running} {skip}")


def _pip_cuda_present() -> bool:
    """pip's ``nvidia`` namespace package (CUDA, cuDNN) is installed."""
    import importlib.util

    return importlib.util.find_spec("nvidia") is not None


_preload_lock = threading.Lock()
_preloaded: list[bool] = []  # one entry once tried: the result


def preload_cuda_libraries() -> bool:
    """Load the CUDA and cuDNN libraries that pip's ``nvidia-*`` packages install (``pip install
    'onnxruntime-gpu[cuda,cudnn]'``, what emort's ``[cuda]`` extra asks for), once per process,
    before a CUDA or TensorRT session starts: ``onnxruntime.preload_dlls()`` (onnxruntime-gpu 1.21 or
    later; its documentation, CUDA Execution Provider, "Preload DLLs"). Without it onnxruntime finds
    pip-installed CUDA only where torch was imported first or ``LD_LIBRARY_PATH`` names the folders.
    Skipped where there is nothing to do: no ``nvidia`` pip packages (a system CUDA, which onnxruntime
    finds itself), or torch already imported (it loaded its own, and a second cuDNN could clash).
    onnxruntime prints the libraries it could not load (to stdout, its own choice). Returns True where
    ``preload_dlls`` was called without raising, which says it ran, not that every library loaded."""
    with _preload_lock:
        if _preloaded:
            return _preloaded[0]
        import onnxruntime as ort

        fn = getattr(ort, "preload_dlls", None)
        ok = False
        if fn is not None and "torch" not in sys.modules and _pip_cuda_present():
            try:
                fn()
                ok = True
            except Exception as e:  # a missing folder or library: onnxruntime's own search still runs
                log.warning("onnxruntime.preload_dlls() failed (%s); onnxruntime looks for the CUDA libraries itself", e)
        _preloaded.append(ok)
        return ok


def resolve_device(device: str, providers: Sequence[str] | None = None, native_trt: bool | None = None,
                   capi_dir: Path | None = None) -> str:
    """``auto`` -> best available; an explicit device must be available or BackendError. Where the GPU
    build of onnxruntime is shadowed by the CPU package (:func:`gpu_build_shadowed`), ``auto`` warns
    once and the error for an explicit GPU device names the repair."""
    if device not in DEVICES:
        raise BackendError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    native_trt = native_tensorrt_available() if native_trt is None else native_trt  # once: imports tensorrt, asks the driver
    avail = available_devices(providers, native_trt)
    if device == "auto":
        if "cuda" not in avail and "shadowed" not in _warned and gpu_build_shadowed(providers, capi_dir):
            _warn_once("shadowed", f"running on {avail[0]}: {shadowed_hint()}")
        if avail[0] == "tensorrt" and not native_trt:
            # onnxruntime-gpu lists its TensorRT provider with or without TensorRT's libraries (an H200
            # host without them, 0.33: the provider could not start, and every run warned of the fallback
            # to CUDA): auto takes TensorRT only where its Python package imports and sees a GPU
            return avail[1]
        return avail[0]
    if device not in avail:
        hint = (shadowed_hint() if device in ("cuda", "tensorrt") and gpu_build_shadowed(providers, capi_dir)
                else f"pip install 'emort[{'tensorrt' if device == 'tensorrt' else 'cuda'}]' on a machine with an NVIDIA GPU "
                     "(README: Install, NVIDIA GPUs)")
        raise BackendError(f"device {device!r} is not available here (available: {', '.join(avail)}); {hint}")
    return device


#: onnxruntime's CUDA provider options. ``cudnn_conv_algo_search`` ``DEFAULT`` (implicit-precomputed
#: GEMM, no search): a folder's clips of differing lengths change every graph's input shape from call
#: to call, and the provider chose its convolutions again at each change. On an H200 (40 clips of
#: three corpora, benchmarks/cuda_shapes.py, docs/bench/0.33/), per clip, `Enhancer.enhance` took a
#: median 80 ms with these options, 190 ms with ``HEURISTIC`` (emort until 0.32) and 909 ms with
#: ``EXHAUSTIVE`` (onnxruntime's own default; another run of the same host), against 43 ms on its
#: 16-core CPU. ``use_tf32`` off: float32 as on the CPU (TF32, the provider's default, moved the voice
#: encoder's output by 6e-3 of its peak; off, by 2e-6).
CUDA_OPTIONS = {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"}


def provider_list(device: str, trt_cache_dir: Path | None = None, fp16: bool = False) -> list:
    """onnxruntime providers (with options) for a resolved device. ``fp16``: TensorRT builds its
    engines in FP16 (tensorrt only; until 0.26 it always did, while the reports said fp32)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        return [("CUDAExecutionProvider", dict(CUDA_OPTIONS)), "CPUExecutionProvider"]
    if device == "tensorrt":
        opts: dict = {"trt_fp16_enable": bool(fp16)}
        if trt_cache_dir is not None:
            trt_cache_dir.mkdir(parents=True, exist_ok=True)
            opts.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(trt_cache_dir),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(trt_cache_dir),
            )
        return [("TensorrtExecutionProvider", opts), ("CUDAExecutionProvider", dict(CUDA_OPTIONS)), "CPUExecutionProvider"]
    raise BackendError(f"no providers for device {device!r}")



def backend_of(providers: Sequence[str]) -> str:
    """The device a session runs on, from its ``get_providers()`` (best first): onnxruntime drops a
    provider it could not start (no GPU, no CUDA or TensorRT libraries) and runs on the next one,
    with only a log line, so what was asked for is not what runs."""
    for p in providers:
        if p in PROVIDER_DEVICES:
            return PROVIDER_DEVICES[p]
    return "cpu"


def default_threads() -> int:
    env = os.environ.get("EMORT_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise BackendError(f"EMORT_THREADS must be an integer, got {env!r}") from None
    return max(1, os.cpu_count() or 1)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def retain_freed_memory(top_pad_bytes: int = 16 * 2**20, mmap_threshold_bytes: int = 16 * 2**20) -> bool:
    """Ask glibc's allocator to keep freed memory for reuse instead of handing it back to the
    system after each array (process-wide): the heap grows ``top_pad_bytes`` at a time, is
    trimmed only past twice that, and blocks below ``mmap_threshold_bytes`` come from it.

    The front-end's temporaries (a clip's frames and spectrum: about 1 MB each) are freed and
    allocated again for every clip; by default glibc returns the top of the heap to the system
    each time and the next clip page-faults it back in, which made ``log_mel`` of a 2 s clip
    take 1.86 ms instead of 0.70 (2-core AMD EPYC; ``emort score`` on 408 files: 1.20 -> 1.02 s
    of scoring). A threshold of 32 MB instead of 16 kept a 10-minute file's blocks on the heap
    and raised its peak by 120 MB; 16 MB left that peak as it was at the same speed. Only the
    CLI calls it (it owns its process); an application embedding emort may call it too.
    Returns False (and does nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        # Setting any of these turns off glibc's adaptive mmap threshold, which would leave
        # every block over 128 kB (a 48 kHz clip's STFT: MBs) to fresh, page-faulting mmaps.
        return all(libc.mallopt(param, value) for param, value in (
            (_M_MMAP_THRESHOLD, int(mmap_threshold_bytes)), (_M_TOP_PAD, int(top_pad_bytes)), (_M_TRIM_THRESHOLD, 2 * int(top_pad_bytes))))
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False


def limit_blas_threads(threads: int = 1) -> bool:
    """Run numpy's BLAS on ``threads`` threads for the rest of the process; returns False when
    no BLAS library is visible to threadpoolctl.

    The runtime's own matrix products are small (a mel filterbank over a clip's frames), and
    OpenBLAS's worker threads busy-wait after each one, taking the cores from the onnxruntime
    sessions and the reading threads that run next. Measured on 2 cores with one thread:
    ``emort score`` on 408 EmoDB files 2.0 -> 1.1 s of scoring, ``Enhancer.enhance`` of a 3.4 s
    clip 150 -> 120 ms. Process-wide, so only the CLI calls it (it owns its process, and calls
    it once from its main thread: limits set and restored around each call from several
    threads did not hold with the OpenBLAS numpy ships); an application embedding emort may
    call it, or set ``OPENBLAS_NUM_THREADS=1`` before numpy is imported.
    """
    from threadpoolctl import threadpool_limits

    return bool(threadpool_limits(limits=int(threads), user_api="blas").get_original_num_threads())


#: How long, in microseconds, an idle thread of an onnxruntime session's pool spins before it sleeps.
#: A denoiser call runs about 400 operators back to back: threads that sleep between them are woken
#: for each (onnxruntime's ``session.intra_op.allow_spinning`` off, emort's default from 0.5 to
#: 0.13), while threads left to spin on (onnxruntime's own default) keep the cores after a call,
#: from the numpy work and the reading and writing threads that run next. Chosen among 50, 200
#: and 1000 us by ``python benchmarks/spin.py`` (docs/bench/spin.md, a 2-core AMD EPYC).
#: Needs onnxruntime 1.26 or later (:data:`BOUNDED_SPIN_ORT`); with an older one the sessions do
#: not spin, as before 0.14.
SPIN_US = 200

#: The first onnxruntime release that reads ``session.intra_op.spin_duration_us`` (1.25.1's
#: library does not contain the key; 1.26.0's does). An older one ignores the key and would spin
#: unbounded, which is what starved the work after each call.
BOUNDED_SPIN_ORT = (1, 26)


def ort_version(version: str) -> tuple[int, int]:
    """``"1.32.0"`` (or ``"1.26.0.dev20260401"``, ``"1.27rc1"``) -> ``(1, 32)``; ``(0, 0)`` when unreadable."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def spin_setting(spin, version: str) -> bool | int:
    """What a session does with ``spin`` (see :class:`OrtModel`) under onnxruntime ``version``:
    True (unbounded), False (never), or a spin limit in microseconds; a limit becomes False where
    onnxruntime cannot bound the spinning. Raises ValueError for a negative or non-integer limit."""
    if isinstance(spin, (bool, np.bool_)):
        return bool(spin)
    try:
        us = operator.index(spin)
    except TypeError:
        raise ValueError(f"spin: True, False or a whole number of microseconds >= 0, not {spin!r}") from None
    if us < 0:
        raise ValueError(f"spin: a number of microseconds >= 0, not {us}")
    return us if us and ort_version(version) >= BOUNDED_SPIN_ORT else False


def session_options(threads: int | None = None, spin: bool | int = SPIN_US):
    """emort's onnxruntime session settings: all graph optimisations, ``threads`` intra-op threads
    (default: :func:`default_threads`), one inter-op thread, warnings off, and the threads waiting
    as ``spin`` says (:func:`spin_setting`). Returns ``(SessionOptions, the spin setting applied)``."""
    import onnxruntime as ort

    spin = spin_setting(spin, ort.__version__)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BackendError(f"threads must be a whole number >= 1 (or None: the default), not {threads!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Unbounded spinning starved the work after each run on 2 cores (the SER/style threads made the
    # denoiser's next steps 47 ms instead of 14; `emort score` on 103 files took 2.03 s instead of 1.37 s).
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin and spin is not True:
        so.add_session_config_entry("session.intra_op.spin_duration_us", str(spin))
    return so, spin


class OrtModel:
    """One onnxruntime session. ``__call__(**inputs) -> list of outputs`` (float32 numpy).

    ``spin``: how the pool's idle threads wait between operators: an int, spin at most that many
    microseconds, then sleep (default :data:`SPIN_US`; onnxruntime 1.26 or later, else they do
    not spin); True, spin as onnxruntime does by default (long after a run); False or 0, never
    spin. :attr:`spin` is what the session was given after that. onnxruntime's ``run`` is
    thread-safe, so one instance serves concurrent callers.
    """

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, trt_cache_dir: Path | None = None,
                 spin: bool | int = SPIN_US, fp16: bool = False, strict: bool = True):
        import onnxruntime as ort

        so, spin = session_options(threads, spin)
        self.path = Path(path)
        self.spin = spin
        state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
        broken = tuple(getattr(state, n) for n in ("InvalidProtobuf", "InvalidGraph", "NoSuchFile") if hasattr(state, n))
        if device in ("cuda", "tensorrt"):
            preload_cuda_libraries()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=provider_list(device, trt_cache_dir, fp16))
        except broken as e:  # the file, not the device: a truncated or foreign graph (a provider failure is not caught here)
            msg = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise BundleError(f"{path}: not a loadable ONNX graph ({msg[:200]})") from None
        #: the device it runs on, which onnxruntime may have changed (:func:`backend_of`)
        self.device = backend_of(self.session.get_providers())
        if self.device != device:
            if strict:
                raise BackendError(f"{path}: onnxruntime could not run it on {device} here and fell back to {self.device} "
                                   f"(its providers: {', '.join(self.session.get_providers())}); check the GPU, driver and "
                                   f"CUDA / TensorRT libraries" + (", build this GPU's engines with `emort export tensorrt`"
                                                                   if device == "tensorrt" else "")
                                   + f", or choose --device {self.device}")
            _warn_once((device, self.device), fallback_message(device, self.device))  # once per fallback, not per graph
        #: the arithmetic it runs in: fp16 only where TensorRT builds it so
        self.precision = "fp16" if fp16 and self.device == "tensorrt" else "fp32"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, inputs)


_announced = threading.Event()


def announce_device(device: str) -> None:
    """Log the chosen backend once per process."""
    if not _announced.is_set():
        _announced.set()
        log.info("emort backend: %s", device)


def load_model(path: Path, device: str, threads: int | None = None, engine_dir: Path | None = None, name: str = "",
               spin: bool | int = SPIN_US, precision: str = "fp32", strict: bool = True) -> OrtModel:
    """A session for one bundle graph on a resolved device; its ``device`` and ``precision``
    attributes say what runs.

    For ``tensorrt``, the native engine built by ``emort export tensorrt`` in ``precision`` is
    used when ``engine_dir`` holds one; otherwise onnxruntime's TensorRT provider builds and
    caches its own, in FP16 only for ``precision="fp16"``. ``precision="bf16"`` (CPU only,
    resolved by :func:`emort.runtime.openvino_cpu.resolve_precision`): the graph compiled by
    OpenVINO in bfloat16 (:class:`~emort.runtime.openvino_cpu.OpenVinoModel`). ``strict``:
    BackendError when onnxruntime cannot start ``device`` and would fall back to another (an
    explicit ``--device``); else the model runs where onnxruntime put it (``auto``), with a warning.
    """
    if precision == "bf16":
        if device != "cpu":
            raise BackendError(f"precision bf16 runs on the CPU only, not on {device!r}")
        from emort.runtime.openvino_cpu import OpenVinoModel

        return OpenVinoModel(path, "bf16", threads or default_threads())  # type: ignore[return-value]
    if precision == "fp16" and device != "tensorrt":
        raise BackendError(f"precision fp16 runs on TensorRT only, not on {device!r}")
    if device == "tensorrt" and engine_dir is not None and native_tensorrt_available():
        from emort.runtime import trt

        engine = trt.find_engine(engine_dir, name, source=path, precision=precision)
        if engine is not None:
            return trt.TrtModel(engine)  # type: ignore[return-value]
    return OrtModel(path, device, threads, trt_cache_dir=engine_dir, spin=spin, fp16=precision == "fp16", strict=strict)
