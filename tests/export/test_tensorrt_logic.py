"""TensorRT export and runtime logic that needs no GPU.

Pure parts (optimisation profiles, cache keys, engine folders, engine choice, buffer
sizes, capture schedule, backend choice) are tested directly. The GPU paths of
``build_engines`` and ``TrtModel`` run against small fakes of ``tensorrt`` and
``cuda.bindings.runtime`` that move real bytes through ctypes memory and record what
a CUDA graph would bake in, so wiring mistakes (a memcpy inside a capture, a graph
replayed after its buffers were freed, outputs out of order) fail here.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from emort.export import tensorrt as tx
from emort.runtime import session
from emort.runtime import trt as rt
from emort.runtime.bundle import Bundle, ModelSpec, ShapeRange
from emort.runtime.errors import BackendError, BundleError
from emort.runtime.samplers import NoiseSchedule
from emort.runtime.settings import MelSettings

LABELS = ["neutral", "happy", "sad", "angry", "fear", "disgust"]
DN_INPUTS = ["x", "t", "emotion", "emotion_mask", "style"]


def make_bundle(path: Path, *, stride=4, batch=(1, 2, 8), frames=(8, 256, 2048), n_mels=80, emb=16, style_dim=32,
                files=None, write_files=False, speaker=False) -> Bundle:
    files = files or {"ser.onnx": "1" * 64, "style.onnx": "2" * 64, "denoiser.onnx": "3" * 64, **({"ser_speaker.onnx": "4" * 64} if speaker else {})}
    models_m = {
        "ser": {"file": "ser.onnx", "inputs": ["mel"], "outputs": ["logits", "embedding"], "dim": emb},
        "style": {"file": "style.onnx", "inputs": ["mel"], "outputs": ["style"], "dim": style_dim},
        "denoiser": {"file": "denoiser.onnx", "inputs": DN_INPUTS, "outputs": ["prediction"]},
    }
    if speaker:
        models_m["ser_speaker"] = {"file": "ser_speaker.onnx", "inputs": ["mel"], "outputs": ["logits", "embedding"], "dim": emb, "norm": "speaker"}
    if style_dim is None:
        del models_m["style"]["dim"]
    if write_files:
        path.mkdir(parents=True, exist_ok=True)
        for f in files:
            (path / f).write_bytes(b"onnx:" + f.encode())
    return Bundle(
        path=path,
        manifest={"files": dict(files), "models": models_m},
        mel=MelSettings(n_mels=n_mels),
        labels=LABELS,
        norm_mean=np.zeros(n_mels, np.float32),
        norm_std=np.ones(n_mels, np.float32),
        centroids={lab: np.zeros(emb, np.float32) for lab in LABELS},
        schedule=NoiseSchedule(),
        prediction="v",
        stride=stride,
        models={k: ModelSpec.from_manifest(v) for k, v in models_m.items()},
        shapes=ShapeRange(batch=tuple(batch), frames=tuple(frames)),
        files=dict(files),
        checked=False,  # fake graphs: their checksums are placeholders
    )


# --- optimisation profiles -------------------------------------------------------------------


def test_profile_ser_and_style(tmp_path):
    b = make_bundle(tmp_path, batch=(1, 3, 6), frames=(10, 100, 1000), n_mels=64)
    assert tx.profile_shapes(b, "ser") == {"mel": ((1, 1, 64, 10), (3, 1, 64, 100), (6, 1, 64, 1000))}
    assert tx.profile_shapes(b, "style") == {"mel": ((1, 64, 10), (3, 64, 100), (6, 64, 1000))}


def test_profile_denoiser_rounds_frames_to_stride(tmp_path):
    b = make_bundle(tmp_path, stride=8, batch=(1, 2, 4), frames=(10, 250, 2050), n_mels=80, emb=24, style_dim=48)
    p = tx.profile_shapes(b, "denoiser")
    assert list(p) == DN_INPUTS
    assert p["x"] == ((1, 80, 16), (2, 80, 256), (4, 80, 2056))
    for lo, mid, hi in [p["x"]]:
        assert all(s[2] % 8 == 0 for s in (lo, mid, hi))
    assert p["t"] == ((1,), (2,), (4,))
    assert p["emotion"] == ((1, 24), (2, 24), (4, 24))
    assert p["emotion_mask"] == ((1, 1), (2, 1), (4, 1))
    assert p["style"] == ((1, 48), (2, 48), (4, 48))
    # SER frames are not rounded
    assert tx.profile_shapes(b, "ser")["mel"][0][3] == 10


@pytest.mark.parametrize(("n", "m", "want"), [(1, 4, 4), (4, 4, 4), (5, 4, 8), (0, 4, 0), (2050, 8, 2056), (7, 1, 7)])
def test_round_up(n, m, want):
    assert tx.round_up(n, m) == want


def test_profile_needs_style_dim(tmp_path):
    b = make_bundle(tmp_path, style_dim=None)
    with pytest.raises(BundleError, match=r"models\.style has no 'dim'"):
        tx.profile_shapes(b, "denoiser")
    tx.profile_shapes(b, "ser")  # other graphs do not need it


def test_profile_rejects_bad_manifest(tmp_path):
    with pytest.raises(BundleError, match="min <= opt <= max"):
        tx.profile_shapes(make_bundle(tmp_path, frames=(300, 256, 2048)), "ser")
    with pytest.raises(BundleError, match="batch"):
        tx.profile_shapes(make_bundle(tmp_path, batch=(0, 2, 8)), "style")
    with pytest.raises(BundleError, match="unknown bundle graph"):
        tx.profile_shapes(make_bundle(tmp_path), "vocoder")
    b = make_bundle(tmp_path)
    b.centroids = {}
    with pytest.raises(BundleError, match="centroids"):
        tx.profile_shapes(b, "denoiser")
    b = make_bundle(tmp_path)
    b.models["denoiser"] = ModelSpec("denoiser.onnx", ["x", "t"], ["prediction"])
    with pytest.raises(BundleError, match="expected"):
        tx.profile_shapes(b, "denoiser")


# --- cache keys and folders ------------------------------------------------------------------


def test_cache_key_stable_and_sensitive(tmp_path):
    b = make_bundle(tmp_path)
    base = dict(gpu_name="NVIDIA H100", compute_capability="9.0", trt_version="10.9.0.34", precision="fp16")
    k = tx.engine_cache_key(b, **base)
    assert len(k) == 20 and all(c in "0123456789abcdef" for c in k)
    assert tx.engine_cache_key(make_bundle(tmp_path / "elsewhere"), **base) == k  # path does not matter
    assert tx.engine_cache_key(b, **{**base, "compute_capability": (9, 0)}) == k
    variants = [
        {**base, "gpu_name": "NVIDIA L4"},
        {**base, "compute_capability": "8.9"},
        {**base, "trt_version": "10.10.0.31"},
        {**base, "precision": "fp32"},
    ]
    keys = {tx.engine_cache_key(b, **v) for v in variants}
    assert len(keys) == 4 and k not in keys
    other_weights = make_bundle(tmp_path, files={"ser.onnx": "9" * 64, "style.onnx": "2" * 64, "denoiser.onnx": "3" * 64})
    assert tx.engine_cache_key(other_weights, **base) != k
    assert tx.engine_cache_key(make_bundle(tmp_path, frames=(8, 256, 4096)), **base) != k


def test_engine_dir_honours_emort_cache(tmp_path, monkeypatch):
    b = make_bundle(tmp_path)
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    assert tx.engine_dir(b) == tmp_path / "cache" / "engines" / b.content_hash
    assert rt.default_engine_dir(b) == tx.engine_dir(b)
    assert tx.engine_dir(b, tmp_path / "explicit") == tmp_path / "explicit" / "engines" / b.content_hash
    monkeypatch.delenv("EMORT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tx.engine_dir(b) == tmp_path / "home" / ".cache" / "emort" / "engines" / b.content_hash


def test_plan_filename_round_trip():
    key = "0123456789abcdef0123"
    assert rt.parse_plan_filename(rt.plan_filename("denoiser", key)) == ("denoiser", key)
    assert rt.parse_plan_filename("denoiser-xyz.plan") is None
    assert rt.parse_plan_filename(f"denoiser-{key}.onnx") is None


# --- choosing an engine ----------------------------------------------------------------------

H100 = rt.EngineFacts("NVIDIA H100", "9.0", "10.9.0.34")
L4 = rt.EngineFacts("NVIDIA L4", "8.9", "10.9.0.34")


def _plan(d: Path, name: str, key_seed: str, mtime: float, facts: rt.EngineFacts | None, onnx="a" * 64) -> Path:
    key = rt.engine_key(key_seed, "g", "1.0", "t")
    p = d / rt.plan_filename(name, key)
    p.write_bytes(b"plan")
    if facts is not None:
        meta = {"name": name, "onnx_sha256": onnx, "gpu_name": facts.gpu_name,
                "compute_capability": facts.compute_capability, "trt_version": facts.trt_version}
        rt.meta_path(p).write_text(json.dumps(meta))
    os.utime(p, (mtime, mtime))
    return p


def test_find_engine_prefers_matching_gpu(tmp_path):
    d = tmp_path
    mine_old = _plan(d, "ser", "a", 1000, H100)
    unknown = _plan(d, "ser", "b", 2000, None)
    other_gpu_new = _plan(d, "ser", "c", 3000, L4)
    _plan(d, "style", "d", 4000, H100)  # another graph
    (d / "ser-notakey.plan").write_bytes(b"x")
    (d / f"serx-{'0' * 20}.plan").write_bytes(b"x")
    assert rt.find_engine(d, "ser", facts=H100) == mine_old  # confirmed match beats newer unknowns
    assert rt.find_engine(d, "ser", facts=L4) == other_gpu_new
    assert rt.find_engine(d, "ser", facts=None) == other_gpu_new  # facts unknown: newest
    assert rt.find_engine(d, "ser", facts=rt.EngineFacts("NVIDIA H100", "9.0", "10.10.0.1")) == unknown
    assert rt.find_engine(d, "denoiser", facts=H100) is None
    assert rt.find_engine(tmp_path / "missing", "ser", facts=H100) is None


def test_find_engine_checks_source_onnx(tmp_path):
    d = tmp_path / "engines"
    d.mkdir()
    onnx = tmp_path / "ser.onnx"
    onnx.write_bytes(b"weights v2")
    from emort.runtime.bundle import sha256_file

    _plan(d, "ser", "old", 3000, H100, onnx="f" * 64)  # newer, built from other weights
    good = _plan(d, "ser", "new", 1000, H100, onnx=sha256_file(onnx))
    assert rt.find_engine(d, "ser", facts=H100, source=onnx) == good
    assert rt.find_engine(d, "ser", facts=L4, source=onnx) is None


def test_find_engine_detects_facts(tmp_path, monkeypatch):
    mine = _plan(tmp_path, "ser", "a", 1000, L4)
    _plan(tmp_path, "ser", "b", 2000, H100)
    monkeypatch.setattr(rt, "current_facts", lambda: L4)
    assert rt.find_engine(tmp_path, "ser") == mine


# --- pure execution helpers ------------------------------------------------------------------


def test_shape_signature_and_nbytes():
    a = {"x": np.zeros((2, 80, 64), np.float32), "t": np.zeros(2, np.float32)}
    assert rt.shape_signature(a, ["x", "t"]) == (("x", (2, 80, 64)), ("t", (2,)))
    assert rt.shape_signature(a, ["t", "x"]) != rt.shape_signature(a, ["x", "t"])
    assert rt.nbytes((2, 80, 64), 4) == 2 * 80 * 64 * 4
    assert rt.nbytes((), 4) == 4
    with pytest.raises(ValueError):
        rt.nbytes((2, -1), 4)


def test_grow_capacity_is_grow_only_and_aligned():
    assert rt.grow_capacity(0, 1) == 256
    assert rt.grow_capacity(1024, 1000) == 1024  # fits: keep
    assert rt.grow_capacity(1024, 1025) == 1536  # at least 1.5x
    assert rt.grow_capacity(1024, 5000) == 5120  # needed, aligned up
    cap = 0
    for need in [10, 300, 200, 5000, 100, 7000]:
        new = rt.grow_capacity(cap, need)
        assert new >= need and new >= cap and new % 256 == 0
        cap = new


def test_check_profile_and_prepare_inputs():
    prof = {"x": ((1, 80, 8), (2, 80, 256), (8, 80, 2048))}
    rt.check_profile("x", (8, 80, 2048), prof["x"])
    with pytest.raises(BackendError, match=r"8\.\.2048"):
        rt.check_profile("x", (1, 80, 4096), prof["x"])
    with pytest.raises(BackendError):
        rt.check_profile("x", (1, 80), prof["x"])
    out = rt.prepare_inputs({"x": np.zeros((1, 80, 16), np.float64)[..., ::1]}, ["x"], {"x": np.dtype(np.float32)}, prof)
    assert out["x"].dtype == np.float32 and out["x"].flags.c_contiguous
    with pytest.raises(ValueError, match="missing"):
        rt.prepare_inputs({}, ["x"], {"x": np.dtype(np.float32)})
    with pytest.raises(ValueError, match="unexpected"):
        rt.prepare_inputs({"x": np.zeros(1), "y": np.zeros(1)}, ["x"], {"x": np.dtype(np.float32)})


def test_plan_execution_schedule():
    a, b = (("x", (1, 4)),), (("x", (2, 4)),)
    graphs: dict = {}
    assert rt.plan_execution(a, None, graphs, set()) == "execute"
    assert rt.plan_execution(a, b, graphs, set()) == "execute"  # shapes changed since last enqueue
    assert rt.plan_execution(a, a, graphs, set()) == "capture"
    assert rt.plan_execution(a, a, graphs, {a}) == "execute"  # capture failed before
    graphs[a] = object()
    assert rt.plan_execution(a, b, graphs, set()) == "replay"
    assert rt.plan_execution(a, a, graphs, set(), enabled=False) == "execute"


def test_cuda_check():
    assert rt.cuda_check((0, 5), "f") == 5
    assert rt.cuda_check((0,), "f") is None
    assert rt.cuda_check((0, 1, 2), "f") == (1, 2)
    with pytest.raises(BackendError, match="cudaMalloc"):
        rt.cuda_check((2, None), "cudaMalloc")


# --- backend choice (session.py) -------------------------------------------------------------


def test_backend_choice_order():
    cpu = ["CPUExecutionProvider"]
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_ep = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session.available_devices(cpu, native_trt=False) == ["cpu"]
    assert session.available_devices(cuda, native_trt=False) == ["cuda", "cpu"]
    assert session.available_devices(trt_ep, native_trt=False) == ["tensorrt", "cuda", "cpu"]
    assert session.available_devices(cpu, native_trt=True) == ["tensorrt", "cpu"]
    assert session.resolve_device("auto", cpu, native_trt=False) == "cpu"
    assert session.resolve_device("auto", cuda, native_trt=False) == "cuda"
    # onnxruntime-gpu lists its TensorRT provider whether or not TensorRT is installed: auto takes
    # TensorRT where its Python package imports and sees a GPU, an explicit --device tensorrt either way
    assert session.resolve_device("auto", trt_ep, native_trt=False) == "cuda"
    assert session.resolve_device("auto", trt_ep, native_trt=True) == "tensorrt"
    assert session.resolve_device("tensorrt", trt_ep, native_trt=False) == "tensorrt"
    assert session.resolve_device("cpu", trt_ep, native_trt=False) == "cpu"
    assert session.resolve_device("cuda", trt_ep, native_trt=False) == "cuda"


def test_explicit_unavailable_device_is_a_clear_error():
    cpu = ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match=r"'cuda' is not available here \(available: cpu\).*emort\[cuda\]"):
        session.resolve_device("cuda", cpu, native_trt=False)
    with pytest.raises(BackendError, match=r"'tensorrt' is not available here \(available: cpu\).*emort\[tensorrt\]"):
        session.resolve_device("tensorrt", cpu, native_trt=False)
    with pytest.raises(BackendError, match="tensorrt"):
        session.resolve_device("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"], native_trt=False)
    with pytest.raises(BackendError, match="unknown device"):
        session.resolve_device("tpu", cpu, native_trt=False)


def test_provider_list(tmp_path):
    assert session.provider_list("cpu") == ["CPUExecutionProvider"]
    cuda = session.provider_list("cuda")
    assert cuda[0][0] == "CUDAExecutionProvider" and cuda[-1] == "CPUExecutionProvider"
    # measured on an H200 (docs/bench/0.33): no per-shape convolution search, float32 without TF32
    assert cuda[0][1] == {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"}
    assert session.provider_list("tensorrt")[1] == cuda[0]
    cuda[0][1]["use_tf32"] = "1"  # a caller's copy: the module's options stay
    assert session.provider_list("cuda")[0][1]["use_tf32"] == "0"
    trt_p = session.provider_list("tensorrt", tmp_path / "c")
    assert [p[0] if isinstance(p, tuple) else p for p in trt_p] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    opts = trt_p[0][1]
    # FP16 only where asked (until 0.26 always, while reports said fp32)
    assert not opts["trt_fp16_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "c")
    assert session.provider_list("tensorrt", fp16=True)[0][1]["trt_fp16_enable"] is True
    assert (tmp_path / "c").is_dir()
    with pytest.raises(BackendError):
        session.provider_list("auto")


def test_backend_of_reads_what_onnxruntime_started():
    assert session.backend_of(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]) == "tensorrt"
    assert session.backend_of(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert session.backend_of(["CPUExecutionProvider"]) == "cpu"


class _FallbackSession:
    """An onnxruntime session that, like onnxruntime without a usable GPU, drops the GPU providers
    it was given and runs on the CPU provider."""

    def __init__(self, path, sess_options=None, providers=()):
        self.asked = providers

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def get_inputs(self):
        return []

    def get_outputs(self):
        return []


def test_a_gpu_device_onnxruntime_cannot_start_is_named_or_reported(tmp_path, monkeypatch):
    """onnxruntime-gpu lists TensorRT and CUDA among its providers on a machine without a GPU (or
    without their libraries) and silently runs on the CPU: an explicit device is then one clear
    error, and `auto` records the device that runs instead of the one it asked for."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "InferenceSession", _FallbackSession)
    with pytest.raises(BackendError, match="could not run it on tensorrt here and fell back to cpu"):
        session.OrtModel(tmp_path / "ser.onnx", "tensorrt", threads=1)
    with pytest.raises(BackendError, match="--device cpu"):
        session.load_model(tmp_path / "ser.onnx", "cuda", threads=1)
    m = session.load_model(tmp_path / "ser.onnx", "tensorrt", threads=1, precision="fp16", strict=False)
    assert m.device == "cpu" and m.precision == "fp32"  # not the fp16 it asked for: TensorRT never ran
    assert session.OrtModel(tmp_path / "ser.onnx", "cpu", threads=1).device == "cpu"


def test_enhancer_and_scorer_on_auto_follow_the_fallback(monkeypatch):
    """`auto` resolved to tensorrt on a machine where onnxruntime falls back to the CPU: every model
    loads on the device the first one ran on, and device / precision say what runs."""
    import emort.runtime.enhancer as enh_mod
    import emort.runtime.scorer as sc_mod
    from emort.runtime.bundle import load_bundle

    calls = []

    def fake_load(path, dev, threads=None, engine_dir=None, name="", spin=None, precision="fp32", strict=True):
        calls.append((name, dev, precision, strict))
        ran = "cpu" if dev == "tensorrt" and not strict else dev
        if dev == "tensorrt" and strict:
            raise BackendError("could not run it on tensorrt")
        return types.SimpleNamespace(device=ran, precision="fp32")

    for mod in (enh_mod, sc_mod):
        monkeypatch.setattr(mod, "resolve_device", lambda device: "tensorrt")
        monkeypatch.setattr(mod, "load_model", fake_load)
        monkeypatch.setattr(mod, "announce_device", lambda dev: None)
    b = load_bundle()
    enh = enh_mod.Enhancer.load(b, device="auto")
    assert enh.device == "cpu" and enh.scorer.device == "cpu" and enh.precision == "fp32"
    assert [(n, d) for n, d, _, _ in calls] == [("ser", "tensorrt"), ("style", "cpu"), ("denoiser", "cpu")]
    calls.clear()
    with pytest.raises(BackendError, match="tensorrt"):
        enh_mod.Enhancer.load(b, device="tensorrt")
    calls.clear()
    assert sc_mod.Scorer.load(b, device="auto").device == "cpu"
    with pytest.raises(BackendError, match="tensorrt"):
        sc_mod.Scorer.load(b, device="tensorrt")


# --- without TensorRT ------------------------------------------------------------------------


def test_build_engines_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendError, match=r"emort\[tensorrt\]"):
        tx.build_engines(make_bundle(tmp_path), out_dir=tmp_path / "e")
    with pytest.raises(BackendError, match=r"emort\[tensorrt\]"):
        rt.TrtModel(tmp_path / "x.plan")
    assert not (tmp_path / "e").exists()


def test_runtime_trt_imports_nothing_heavy():
    code = ("import sys; sys.modules['tensorrt'] = None; import emort.runtime.trt; "
            "bad = [m for m in ('torch', 'librosa', 'cuda', 'emort.export', 'emort.training') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# --- fakes of tensorrt and cuda.bindings.runtime ---------------------------------------------


class FakeCuda:
    """Enough of ``cuda.bindings.runtime`` for TrtModel, backed by real host memory."""

    cudaStreamNonBlocking = 1
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1, cudaStreamCaptureModeGlobal=0)

    def __init__(self, fail_instantiate=False):
        self.mem: dict[int, ctypes.Array] = {}
        self.freed: set[int] = set()
        self.capturing: list | None = None
        self.fail_instantiate = fail_instantiate
        self.calls: dict[str, int] = {}

    def _n(self, what):
        self.calls[what] = self.calls.get(what, 0) + 1

    def cudaGetDeviceCount(self):
        return (0, 1)

    def cudaGetDevice(self):
        return (0, 0)

    def cudaGetDeviceProperties(self, dev):
        return (0, types.SimpleNamespace(name=b"Fake GPU 9000\0\0\0", major=9, minor=0))

    def cudaStreamCreateWithFlags(self, flags):
        return (0, 77)

    def cudaStreamDestroy(self, s):
        return (0,)

    def cudaStreamSynchronize(self, s):
        return (0,)

    def cudaMalloc(self, n):
        self._n("malloc")
        buf = ctypes.create_string_buffer(n)
        addr = ctypes.addressof(buf)
        self.mem[addr] = buf
        return (0, addr)

    def cudaFree(self, addr):
        self.freed.add(addr)  # keep the memory alive so a stale pointer is detected, not a crash
        return (0,)

    def check_live(self, addr):
        assert addr in self.mem and addr not in self.freed, "device pointer is freed or unknown"

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        if self.capturing is not None:
            return (900, )  # copies from pageable host memory must stay out of a graph
        self.check_live(dst if kind == 1 else src)
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamBeginCapture(self, s, mode):
        self.capturing = []
        return (0,)

    def cudaStreamEndCapture(self, s):
        ops, self.capturing = self.capturing, None
        return (0, ops)

    def cudaStreamIsCapturing(self, s):
        return (0, 0 if self.capturing is None else 1)

    def cudaGraphInstantiateWithFlags(self, graph, flags):
        if self.fail_instantiate:
            return (901, None)
        self._n("instantiate")
        return (0, list(graph))

    def cudaGraphLaunch(self, exe, s):
        self._n("launch")
        for op in exe:
            op()
        return (0,)

    def cudaGraphDestroy(self, g):
        return (0,)

    def cudaGraphExecDestroy(self, e):
        self._n("exec_destroy")
        return (0,)

    def cudaGetLastError(self):
        return (0,)


class FakeEngine:
    """Inputs ``x`` (b, c, f) and ``t`` (b,); outputs ``y = 2x + t`` and ``s = sum(x)`` (b,)."""

    def __init__(self, trt, cuda, spec):
        self.trt, self.cuda, self.spec = trt, cuda, spec
        self.names = ["x", "t", "y", "s"]
        self.num_io_tensors = 4

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, n):
        return self.trt.TensorIOMode.INPUT if n in ("x", "t") else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, n):
        return "float32"

    def get_tensor_profile_shape(self, n, k):
        return [tuple(s) for s in self.spec[n]]

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine):
        self.e = engine
        self.shapes: dict = {}
        self.addr: dict = {}
        self.enqueues = 0

    def set_input_shape(self, n, shape):
        self.shapes[n] = tuple(shape)
        return True

    def get_tensor_shape(self, n):
        b = self.shapes["x"][0]
        return self.shapes["x"] if n == "y" else (b,)

    def set_tensor_address(self, n, ptr):
        self.addr[n] = ptr

    def execute_async_v3(self, stream):
        cuda = self.e.cuda
        shape, addr = dict(self.shapes), dict(self.addr)  # a graph bakes in pointers and shapes

        def op():
            for p in addr.values():
                cuda.check_live(p)
            b = shape["x"][0]
            x = np.frombuffer((ctypes.c_float * int(np.prod(shape["x"]))).from_address(addr["x"]), np.float32).reshape(shape["x"])
            t = np.frombuffer((ctypes.c_float * b).from_address(addr["t"]), np.float32)
            y = np.frombuffer((ctypes.c_float * x.size).from_address(addr["y"]), np.float32).reshape(x.shape)
            s = np.frombuffer((ctypes.c_float * b).from_address(addr["s"]), np.float32)
            y[...] = 2 * x + t[:, None, None]
            s[...] = x.sum(axis=(1, 2))

        if cuda.capturing is not None:
            cuda.capturing.append(op)
        else:
            self.enqueues += 1
            op()
        return True


def make_fake_trt(cuda, fp16_flag=True, version="10.9.0.34"):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.built = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    trt.Logger = Logger
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dt: np.float32
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="ws")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", TF32="tf32") if fp16_flag else types.SimpleNamespace()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                spec = json.loads(data)
            except ValueError:
                return None
            return FakeEngine(trt, cuda, spec)

    trt.Runtime = Runtime

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):  # every build adds timings
            self.data += b"+"
            return self.data

    class Config:
        def __init__(self):
            self.flags, self.cleared, self.profiles, self.pool = [], [], [], {}

        def set_memory_pool_limit(self, k, v):
            self.pool[k] = v

        def set_flag(self, f):
            self.flags.append(f)

        def clear_flag(self, f):  # TensorRT turns TF32 on by default
            self.cleared.append(f)

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing = cache
            return True

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return 0

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, n, lo, mid, hi):
            self.shapes[n] = (tuple(lo), tuple(mid), tuple(hi))

    class Network:
        def __init__(self):
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return types.SimpleNamespace(name=self.inputs[i])

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            name = Path(path).stem
            self.network.inputs = {"ser": ["mel"], "ser_speaker": ["mel"], "style": ["mel"], "denoiser": DN_INPUTS}[name]
            self.network.name = name
            return Path(path).is_file()

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.built.append((network.name, config))
            return json.dumps({"graph": network.name, "profile": config.profiles[0].shapes,
                               "timing": config.timing.data.decode()}).encode()

    trt.OnnxParser = OnnxParser
    trt.Builder = Builder
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install fake ``tensorrt`` and ``cuda.bindings.runtime``; returns (trt, cuda)."""

    def install(fail_instantiate=False, fp16_flag=True, version="10.9.0.34"):
        cuda = FakeCuda(fail_instantiate)
        trt = make_fake_trt(cuda, fp16_flag, version)
        cuda_pkg = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cuda
        cuda_pkg.bindings = bindings
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
        return trt, cuda

    return install


PROFILE = {"x": [[1, 2, 4], [2, 2, 8], [4, 2, 32]], "t": [[1], [2], [4]]}


def _plan_file(tmp_path) -> Path:
    p = tmp_path / "toy.plan"
    p.write_text(json.dumps(PROFILE))
    return p


def _feeds(rng, b, f):
    return {"x": rng.standard_normal((b, 2, f)).astype(np.float32), "t": rng.standard_normal(b).astype(np.float32)}


def _check(outs, feeds):
    y, s = outs
    np.testing.assert_allclose(y, 2 * feeds["x"] + feeds["t"][:, None, None], rtol=1e-6)
    np.testing.assert_allclose(s, feeds["x"].sum(axis=(1, 2)), rtol=1e-5)


# --- TrtModel on the fakes -------------------------------------------------------------------


def test_trt_model_graphs_capture_replay_and_invalidate(tmp_path, fake_gpu):
    trt, cuda = fake_gpu()
    m = rt.TrtModel(_plan_file(tmp_path))
    assert m.input_names == ["x", "t"] and m.output_names == ["y", "s"]
    assert m.profiles["x"] == ((1, 2, 4), (2, 2, 8), (4, 2, 32))
    rng = np.random.default_rng(0)

    for _ in range(3):  # execute, capture + launch, replay
        f = _feeds(rng, 2, 8)
        _check(m(**f), f)
    assert m.context.enqueues == 1 and cuda.calls["instantiate"] == 1 and cuda.calls["launch"] == 2
    mallocs = cuda.calls["malloc"]

    f = _feeds(rng, 1, 8)  # smaller: buffers are reused, graph of (2, 8) kept
    _check(m(**f), f)
    assert cuda.calls["malloc"] == mallocs and len(m._graphs) == 1
    f = _feeds(rng, 2, 8)  # back: replay, even though the last enqueue had other shapes
    _check(m(**f), f)
    assert cuda.calls["launch"] == 3

    f = _feeds(rng, 4, 32)  # larger: buffers grow, stale graphs must go
    _check(m(**f), f)
    assert cuda.calls["malloc"] > mallocs and len(m._graphs) == 0 and cuda.calls["exec_destroy"] == 1
    for _ in range(2):
        f = _feeds(rng, 2, 8)  # re-executes (a replay would touch freed memory and fail)
        _check(m(**f), f)
    m.close()
    m.close()
    with pytest.raises(BackendError, match="closed"):
        m(**_feeds(rng, 2, 8))


def test_trt_model_errors_and_fallbacks(tmp_path, fake_gpu):
    trt, cuda = fake_gpu(fail_instantiate=True)
    m = rt.TrtModel(_plan_file(tmp_path))
    rng = np.random.default_rng(1)
    for _ in range(3):  # capture fails once, then plain execution without retrying
        f = _feeds(rng, 2, 8)
        _check(m(**f), f)
    assert m.context.enqueues == 3 and cuda.calls.get("launch", 0) == 0
    with pytest.raises(BackendError, match="outside the TensorRT engine's range"):
        m(**_feeds(rng, 2, 64))
    with pytest.raises(ValueError, match="missing"):
        m(x=np.zeros((1, 2, 8), np.float32))
    out = m(x=np.ones((1, 2, 4), np.float64), t=[0.5])  # cast and made contiguous
    assert out[0].dtype == np.float32 and np.allclose(out[0], 2.5)

    no_graph = rt.TrtModel(_plan_file(tmp_path), cuda_graphs=False)
    for _ in range(3):
        f = _feeds(rng, 1, 4)
        _check(no_graph(**f), f)
    assert no_graph.context.enqueues == 3

    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(BackendError, match="could not load"):
        rt.TrtModel(bad)


def test_trt_model_is_thread_safe(tmp_path, fake_gpu):
    fake_gpu()
    m = rt.TrtModel(_plan_file(tmp_path))
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for i in range(20):
                f = _feeds(rng, 1 + (seed + i) % 4, 4 * (1 + i % 3))
                _check(m(**f), f)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- build_engines on the fakes --------------------------------------------------------------


def test_build_engines_builds_caches_and_is_found(tmp_path, fake_gpu):
    trt, _ = fake_gpu()
    b = make_bundle(tmp_path / "bundle", stride=8, frames=(10, 250, 2050), write_files=True)
    out = tmp_path / "engines"
    seen = []
    paths = tx.build_engines(b, out_dir=out, progress=lambda n, s: seen.append((n, s)))
    facts = rt.EngineFacts("Fake GPU 9000", "9.0", "10.9.0.34")
    key = tx.engine_cache_key(b, facts.gpu_name, facts.compute_capability, facts.trt_version, "fp32")
    key16 = tx.engine_cache_key(b, facts.gpu_name, facts.compute_capability, facts.trt_version, "fp16")
    # FP32 engines of every graph, and an FP16 one of the denoiser (run only where asked or checked)
    assert paths == {**{n: out / f"{n}-{key}.plan" for n in ("ser", "style", "denoiser")}, "denoiser@fp16": out / f"denoiser-{key16}.plan"}
    assert seen == [(n, s) for n in ("ser", "style", "denoiser", "denoiser@fp16") for s in ("building", "built")]
    # each graph got its own profile from profile_shapes; only the FP16 denoiser the FP16 flag
    assert [(name, cfg.flags) for name, cfg in trt.built] == [("ser", []), ("style", []), ("denoiser", []), ("denoiser", ["fp16"])]
    # the FP32 engines are float32: TensorRT's default TF32 is turned off for them (0.33)
    assert [cfg.cleared for _, cfg in trt.built] == [["tf32"], ["tf32"], ["tf32"], []]
    for name, cfg in trt.built:
        assert cfg.profiles[0].shapes == tx.profile_shapes(b, name) and cfg.pool["ws"] == 4 << 30
    plan = json.loads(paths["denoiser"].read_bytes())
    assert plan["profile"]["x"][2] == [8, 80, 2056]
    meta = json.loads(rt.meta_path(paths["denoiser@fp16"]).read_text())
    assert meta["gpu_name"] == "Fake GPU 9000" and meta["precision"] == "fp16"
    assert meta["onnx_sha256"] == b.files["denoiser.onnx"] and meta["bundle_hash"] == b.content_hash
    assert json.loads(rt.meta_path(paths["ser"]).read_text())["precision"] == "fp32"
    assert (out / "timing.cache").read_bytes() == b"++++"  # one cache shared by the graphs, saved after each
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # find_engine (with this machine's facts, from the fakes) picks the built plan of the precision asked
    for n in ("ser", "style", "denoiser"):
        assert rt.find_engine(out, n, precision="fp32") == paths[n]
    assert rt.find_engine(out, "denoiser", precision="fp16") == paths["denoiser@fp16"]
    assert rt.find_engine(out, "ser", precision="fp16") is None

    trt.built.clear()
    seen.clear()
    again = tx.build_engines(b, out_dir=out, progress=lambda n, s: seen.append((n, s)))
    assert again == paths and trt.built == [] and seen == [(n, "cached") for n in paths]

    paths["style"].unlink()  # a rebuild starts from the saved timing cache
    tx.build_engines(b, out_dir=out)
    assert [n for n, _ in trt.built] == ["style"] and trt.built[0][1].timing.data == b"+++++"
    assert json.loads(paths["style"].read_bytes())["timing"] == "++++"
    rt.meta_path(paths["ser"]).unlink()  # a plan without its sidecar (a stop between the two) is rebuilt
    trt.built.clear()
    tx.build_engines(b, out_dir=out)
    assert [n for n, _ in trt.built] == ["ser"] and rt.meta_path(paths["ser"]).is_file()

    only = tx.build_engines(b, out_dir=tmp_path / "e2", fp16=False, names=["denoiser"])
    assert list(only) == ["denoiser"] and trt.built[-1][1].flags == []


def test_build_engines_covers_the_per_speaker_ser_when_shipped(tmp_path, fake_gpu):
    trt, _ = fake_gpu()
    b = make_bundle(tmp_path / "bundle", write_files=True, speaker=True)
    paths = tx.build_engines(b, out_dir=tmp_path / "e")
    assert list(paths) == ["ser", "style", "denoiser", "ser_speaker", "denoiser@fp16"]
    assert tx.profile_shapes(b, "ser_speaker") == tx.profile_shapes(b, "ser")
    assert dict(trt.built)["ser_speaker"].profiles[0].shapes == tx.profile_shapes(b, "ser")


def test_build_engines_on_tensorrt_without_fp16_flag(tmp_path, fake_gpu, monkeypatch):
    fake_gpu(fp16_flag=False, version="11.4.0")
    b = make_bundle(tmp_path / "bundle", write_files=True)
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    paths = tx.build_engines(b, names=["ser"])
    assert paths["ser"].parent == tmp_path / "cache" / "engines" / b.content_hash
    meta = json.loads(rt.meta_path(paths["ser"]).read_text())
    assert meta["precision"] == "fp32" and meta["trt_version"] == "11.4.0"


def test_build_engines_rejects_bad_input_before_gpu_work(tmp_path, fake_gpu):
    trt, _ = fake_gpu()
    b = make_bundle(tmp_path / "bundle", style_dim=None, write_files=True)
    with pytest.raises(BundleError, match="dim"):
        tx.build_engines(b, out_dir=tmp_path / "e")
    with pytest.raises(BundleError, match="unknown bundle graph"):
        tx.build_engines(b, out_dir=tmp_path / "e", names=["vocoder"])
    b2 = make_bundle(tmp_path / "b2")  # ONNX files missing: the parser fails
    with pytest.raises(BackendError, match="could not parse"):
        tx.build_engines(b2, out_dir=tmp_path / "e", names=["ser"])
    assert trt.built == []


def test_export_tensorrt_says_how_enhance_finds_engines_built_elsewhere(tmp_path, monkeypatch):
    """`export tensorrt --cache DIR` built engines that enhance and score never looked at (they read
    $EMORT_CACHE): the command now says how to use them, and says nothing for the default root."""
    from typer.testing import CliRunner

    from emort.cli.app import app

    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "default"))
    monkeypatch.setattr(tx, "build_engines", lambda b, out_dir=None, fp16=True: {"ser": Path(out_dir) / "ser-x.plan"})
    out = CliRunner().invoke(app, ["export", "tensorrt", "--cache", str(tmp_path / "mine")])
    assert out.exit_code == 0, out.output
    assert "EMORT_CACHE=" in out.output and str(tmp_path / "mine") in out.output.replace("\n", "")
    again = CliRunner().invoke(app, ["export", "tensorrt", "--cache", str(tmp_path / "default")])
    assert again.exit_code == 0 and "note" not in again.output


def test_find_engine_names_plans_of_another_precision(tmp_path, caplog):
    """emort before 0.26 built FP16 plans only: an FP32 run passes them over, and says how to get
    FP32 ones instead of falling back in silence."""
    import logging

    d = tmp_path / "e"
    d.mkdir()
    plan = d / rt.plan_filename("ser", "a" * rt.KEY_LEN)
    plan.write_bytes(b"x")
    rt.meta_path(plan).write_text(json.dumps({"precision": "fp16"}))
    with caplog.at_level(logging.WARNING, logger=rt.log.name):
        assert rt.find_engine(d, "ser", facts=None, precision="fp32") is None
    assert "are fp16, not fp32" in caplog.text and "emort export tensorrt" in caplog.text
    assert rt.find_engine(d, "ser", facts=None, precision="fp16") == plan
