"""ONNX bundle -> TensorRT engines for the GPU this runs on (``emort export tensorrt``).

One engine per bundle graph (``ser``, ``style``, ``denoiser``), one optimisation
profile each, derived from the bundle's shape ranges (:func:`profile_shapes`).
Engines are cached as ``<engine_dir>/<name>-<key>.plan`` where the key hashes the
bundle's weights, the GPU model, its compute capability, the TensorRT version, the
precision and the shape ranges (:func:`engine_cache_key`); a plan with the same key
is never rebuilt. A ``.json`` sidecar next to each plan records those facts for
:func:`emort.runtime.trt.find_engine`. A TensorRT timing cache (``timing.cache`` in
the engine folder) makes rebuilds after a bundle update fast.

Written against the TensorRT 10 Python API. TensorRT 11 dropped the FP16 builder flag
(networks are strongly typed there); on it the engines are built in FP32 with a
warning, and the cache key says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from emort.runtime.atomic import write_bytes_atomic
from emort.runtime.errors import BackendError, BundleError
from emort.runtime.trt import (
    EngineFacts,
    bundle_shapes,
    default_engine_dir,
    engine_key,
    gpu_facts,
    import_cudart,
    import_tensorrt,
    meta_path,
    plan_filename,
)

log = logging.getLogger(__name__)

# ser_speaker, ser_clip: optional (per-speaker and single-clip scoring); stats (a scikit-learn classifier, ai.onnx.ml operators) stays on the CPU provider
GRAPHS = ("ser", "style", "denoiser", "ser_speaker", "ser_clip")
TIMING_CACHE = "timing.cache"

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


# --- pure: shapes, keys, folders -------------------------------------------------------------


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n``."""
    m = max(1, int(multiple))
    return -(-int(n) // m) * m


def _check_range(what: str, r: Iterable[int]) -> tuple[int, int, int]:
    vals = tuple(int(v) for v in r)
    if len(vals) != 3 or not (1 <= vals[0] <= vals[1] <= vals[2]):
        raise BundleError(f"bundle shapes.{what} must be [min, opt, max] with 1 <= min <= opt <= max, got {list(vals)}")
    return vals  # type: ignore[return-value]


def profile_shapes(bundle, name: str) -> Profile:
    """``{input name: (min_shape, opt_shape, max_shape)}`` of graph ``name``'s optimisation profile.

    Batch and frame ranges come from ``bundle.shapes``; the denoiser's frames are rounded
    up to a multiple of ``bundle.stride``. The emotion-embedding width is the length of
    the bundle's centroids; the style width is ``bundle.models["style"].dim``.
    """
    if name not in GRAPHS:
        raise BundleError(f"unknown bundle graph {name!r}; choose one of {', '.join(GRAPHS)}")
    b = _check_range("batch", bundle.shapes.batch)
    f = _check_range("frames", bundle.shapes.frames)
    n_mels = int(bundle.mel.n_mels)
    where = getattr(bundle, "path", "bundle")

    def each(make: Callable[[int, int], Shape], frames: tuple[int, int, int] = f) -> tuple[Shape, Shape, Shape]:
        return (make(b[0], frames[0]), make(b[1], frames[1]), make(b[2], frames[2]))

    if name in ("ser", "ser_speaker", "ser_clip"):
        prof = {"mel": each(lambda n, t: (n, 1, n_mels, t))}
    elif name == "style":
        prof = {"mel": each(lambda n, t: (n, n_mels, t))}
    else:
        stride = int(bundle.stride)
        if stride < 1:
            raise BundleError(f"{where}: stride must be >= 1, got {stride}")
        fs = tuple(round_up(v, stride) for v in f)
        if not bundle.centroids:
            raise BundleError(f"{where}: the manifest has no emotion centroids, so the denoiser's emotion width is unknown")
        emb_dims = {int(len(v)) for v in bundle.centroids.values()}
        if len(emb_dims) != 1:
            raise BundleError(f"{where}: emotion centroids have different lengths {sorted(emb_dims)}")
        e_dim = emb_dims.pop()
        style = bundle.models.get("style")
        s_dim = style.dim if style is not None else None
        if s_dim is None:
            raise BundleError(f"{where}: manifest models.style has no 'dim' (the style-embedding width the denoiser takes); "
                              "re-export the bundle with `emort export onnx`")
        s_dim = int(s_dim)
        prof = {
            "x": each(lambda n, t: (n, n_mels, t), fs),  # type: ignore[arg-type]
            "t": each(lambda n, t: (n,)),
            "emotion": each(lambda n, t: (n, e_dim)),
            "emotion_mask": each(lambda n, t: (n, 1)),
            "style": each(lambda n, t: (n, s_dim)),
        }
    spec = bundle.models.get(name) if hasattr(bundle, "models") else None
    if spec is not None and set(spec.inputs) != set(prof):
        raise BundleError(f"{where}: graph {name!r} has inputs {list(spec.inputs)}, expected {list(prof)}")
    return prof


def engine_cache_key(bundle, gpu_name: str, compute_capability, trt_version: str, precision: str = "fp16") -> str:
    """sha256 hex[:20] of the bundle's content hash, shape ranges, GPU, compute capability,
    TensorRT version and precision: equal keys mean an engine can be reused."""
    return engine_key(bundle.content_hash, gpu_name, compute_capability, trt_version, precision, bundle_shapes(bundle))


def engine_dir(bundle, cache_root: str | Path | None = None) -> Path:
    """Where this bundle's engines are cached: ``<$EMORT_CACHE or ~/.cache/emort>/engines/<bundle hash>``."""
    return default_engine_dir(bundle, cache_root)


def engine_meta(name: str, key: str, bundle, facts: EngineFacts, precision: str, profile: Mapping) -> dict:
    """The sidecar written next to each plan (read by :func:`emort.runtime.trt.find_engine`)."""
    spec = bundle.models[name]
    return {
        "name": name,
        "key": key,
        "bundle_hash": bundle.content_hash,
        "onnx_file": spec.file,
        "onnx_sha256": bundle.files.get(spec.file),
        **asdict(facts),
        "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in profile.items()},
        "inputs": list(spec.inputs),
        "outputs": list(spec.outputs),
    }


# --- the build (needs a GPU) -----------------------------------------------------------------


def build_engines(
    bundle,
    out_dir: str | Path | None = None,
    fp16: bool = True,
    workspace_gb: float = 4,
    names: Iterable[str] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> dict[str, Path]:
    """Build (or reuse) TensorRT engines; returns ``{name: plan path}``, the denoiser's FP16
    engine as ``"denoiser@fp16"``.

    Every graph gets an FP32 engine; with ``fp16`` the denoiser gets an FP16 one too, which runs
    only where asked for (``--precision fp16``) or where the bundle lists its fp16 edit as checked
    against float32 (``auto``): the rule bf16 follows on the CPU (docs/bench/0.24/bf16_parity/).
    The SER and style encoder run in FP32 (a few ms per clip). ``names`` defaults to every graph
    the bundle has. ``out_dir`` defaults to :func:`engine_dir`. ``progress(name, status)`` is
    called with ``"cached"``, ``"building"`` or ``"built"``. Raises BackendError without TensorRT /
    CUDA, or when parsing or building fails.
    """
    trt = import_tensorrt()
    import_cudart()
    names = [n for n in GRAPHS if n in bundle.models] if names is None else list(names)
    for n in names:
        if n not in GRAPHS:
            raise BundleError(f"unknown bundle graph {n!r}; choose one of {', '.join(GRAPHS)}")
    profiles = {n: profile_shapes(bundle, n) for n in names}  # fail on a bad manifest before any GPU work
    facts = gpu_facts()
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    if fp16 and not has_fp16_flag:
        log.warning("TensorRT %s has no FP16 builder flag (strongly typed networks only); building FP32 engines",
                    facts.trt_version)
    # (result key, graph, precision): FP32 for every graph, FP16 for the denoiser where asked and possible
    wanted = [(n, n, "fp32") for n in names]
    if fp16 and has_fp16_flag and "denoiser" in names:
        wanted.append(("denoiser@fp16", "denoiser", "fp16"))
    keys = {p: engine_cache_key(bundle, facts.gpu_name, facts.compute_capability, facts.trt_version, p) for p in ("fp32", "fp16")}
    out = Path(out_dir).expanduser() if out_dir is not None else engine_dir(bundle)
    out.mkdir(parents=True, exist_ok=True)

    def tell(name: str, status: str) -> None:
        if progress is not None:
            progress(name, status)

    result: dict[str, Path] = {}
    todo = []
    for k, n, prec in wanted:
        plan = out / plan_filename(n, keys[prec])
        if plan.is_file() and plan.stat().st_size > 0 and meta_path(plan).is_file():
            log.info("%s: cached engine %s", k, plan)
            result[k] = plan
            tell(k, "cached")
        else:
            todo.append((k, n, prec))
    if not todo:
        return result

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise BackendError("TensorRT could not create a builder (is the GPU visible and the driver loaded?)")
    timing_path = out / TIMING_CACHE
    cache_cfg = builder.create_builder_config()
    timing = _load_timing_cache(cache_cfg, timing_path)

    for k, n, prec in todo:
        tell(k, "building")
        plan = out / plan_filename(n, keys[prec])
        bundle.verify([n])
        serialized = _build_one(trt, builder, logger, bundle.model_path(n), profiles[n], timing, prec == "fp16", workspace_gb)
        write_bytes_atomic(plan, serialized)
        # the sidecar last: a plan without one is of unknown precision, never run, and rebuilt here
        write_bytes_atomic(meta_path(plan), json.dumps(engine_meta(n, keys[prec], bundle, facts, prec, profiles[n]), indent=1).encode())
        log.info("%s: built %s", k, plan)
        result[k] = plan
        tell(k, "built")
        write_bytes_atomic(timing_path, timing.serialize())  # after each graph: an interrupted build keeps its timings
    return result


def _load_timing_cache(config, path: Path):
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warning("cannot read TensorRT timing cache %s (%s); starting a new one", path, e)
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.info("TensorRT timing cache %s is from another GPU or version; starting a new one", path)
        cache = config.create_timing_cache(b"")
    return cache


def _build_one(trt, builder, logger, onnx_path: Path, profile: Profile, timing, fp16: bool, workspace_gb: float):
    """Parse one ONNX file and build its serialized engine (IHostMemory)."""
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errs.append(e.desc() if hasattr(e, "desc") else str(e))
        raise BackendError(f"{onnx_path}: TensorRT could not parse the ONNX graph: " + "; ".join(errs or ["unknown error"]))
    net_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if set(net_inputs) != set(profile):
        raise BackendError(f"{onnx_path}: graph inputs {net_inputs} differ from the bundle's {list(profile)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    elif hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT builds float32 layers in TF32 unless told not to: an "fp32" engine is float32, as on
        # the CPU (onnxruntime's CUDA provider likewise, emort.runtime.session.CUDA_OPTIONS)
        config.clear_flag(trt.BuilderFlag.TF32)
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        log.warning("TensorRT rejected the timing cache; building without it")
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.items():
        opt.set_shape(name, lo, mid, hi)
    if config.add_optimization_profile(opt) < 0:
        raise BackendError(f"{onnx_path}: invalid optimisation profile {profile}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    return serialized
