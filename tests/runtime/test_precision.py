"""The denoiser's precision: which one runs where (emort.runtime.openvino_cpu), and the OpenVINO
path's edit against onnxruntime's. The bf16 parity test runs only on a CPU with AMX-BF16 or
AVX512-BF16 and OpenVINO installed; the rest runs anywhere."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from emort.runtime import openvino_cpu
from emort.runtime.errors import BackendError
from emort.runtime.openvino_cpu import bf16_status, cpu_flags, resolve_precision

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
bugs\t\t: spectre_v1
"""


def test_cpu_flags_read_the_flags_line():
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(CPUINFO)
    assert "spectre_v1" not in cpu_flags(CPUINFO)
    assert cpu_flags("processor : 0\n") == set()


def test_bf16_needs_a_bf16_unit_and_openvino(monkeypatch):
    ok, why = bf16_status({"avx512f", "avx2"})
    assert not ok and "AMX-BF16 or AVX512-BF16" in why and "has neither" in why
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    for flags in ({"avx512f", "avx512_bf16"}, cpu_flags(CPUINFO)):
        ok, why = bf16_status(flags)  # the CPU would do: OpenVINO is what is missing
        assert not ok and "pip install 'emort[openvino]'" in why

    class Core:  # an OpenVINO whose CPU plugin offers no BF16 (a virtual machine hiding the unit)
        def get_property(self, device, name):
            return ["FP32", "INT8"]

    monkeypatch.setitem(sys.modules, "openvino", type(sys)("openvino"))
    sys.modules["openvino"].Core = Core
    for flags, unit in (({"avx512f", "avx512_bf16"}, "AVX512-BF16"), (cpu_flags(CPUINFO), "AMX-BF16")):
        ok, why = bf16_status(flags)
        assert not ok and why.endswith(f"may hide the CPU's {unit})")
    Core.get_property = lambda self, device, name: ["BF16", "FP32"]  # now it offers BF16
    assert bf16_status({"avx512f", "avx512_bf16"}) == (True, "AVX512-BF16 and OpenVINO")
    assert bf16_status(cpu_flags(CPUINFO)) == (True, "AMX-BF16 and OpenVINO")  # both units: named by the larger
    monkeypatch.undo()
    monkeypatch.setattr(openvino_cpu, "cpu_flags", lambda cpuinfo=None: set())  # a system that reports no CPU features
    ok, why = bf16_status()
    assert not ok and "does not report" in why



OK = (True, "AMX-BF16 and OpenVINO")
NO = (False, "this CPU has no AMX-BF16 matrix unit")


@pytest.mark.parametrize(("precision", "device", "measured", "status", "want"), [
    ("fp32", "cpu", True, OK, "fp32"),
    ("auto", "cpu", True, OK, "bf16"),
    ("auto", "cpu", False, OK, "fp32"),  # the bundle never checked a bf16 edit
    ("auto", "cpu", True, NO, "fp32"),
    ("auto", "cuda", True, OK, "fp32"),
    ("bf16", "cpu", False, OK, "bf16"),  # asked for explicitly: the user's choice
])
def test_resolve_precision(precision, device, measured, status, want):
    got, why = resolve_precision(precision, device, measured, status)
    assert got == want and why


@pytest.mark.parametrize(("precision", "checked_fp16", "want"), [
    ("auto", False, "fp32"),  # TensorRT ran FP16 unasked until 0.26 (and reports said fp32)
    ("auto", True, "fp16"),
    ("fp32", True, "fp32"),
    ("fp16", False, "fp16"),  # asked for explicitly
])
def test_resolve_precision_on_tensorrt_follows_bf16s_rule(precision, checked_fp16, want):
    got, why = resolve_precision(precision, "tensorrt", True, OK, measured_fp16=checked_fp16)
    assert got == want and why


def test_fp16_runs_on_tensorrt_only():
    for device in ("cpu", "cuda"):
        with pytest.raises(BackendError, match="TensorRT only"):
            resolve_precision("fp16", device, True, OK, measured_fp16=True)
    assert resolve_precision("auto", "cuda", True, OK, measured_fp16=True)[0] == "fp32"
    with pytest.raises(BackendError, match="CPU only"):
        resolve_precision("bf16", "tensorrt", True, OK)


def test_an_explicit_bf16_that_cannot_run_names_the_cause():
    with pytest.raises(BackendError, match="no AMX-BF16"):
        resolve_precision("bf16", "cpu", True, NO)
    with pytest.raises(BackendError, match="CPU only"):
        resolve_precision("bf16", "cuda", True, OK)
    with pytest.raises(BackendError, match="unknown precision"):
        resolve_precision("int4", "cpu", True, OK)


def test_the_shipped_bundle_lists_its_bf16_edit_as_checked(monkeypatch):
    """0.26's check (docs/bench/0.26/bf16_parity_16seeds/) held: the shipped denoiser's bf16 edit
    is listed, so auto takes bf16 where it can run; where it cannot, float32 and why."""
    from emort.runtime.bundle import load_bundle
    from emort.runtime.enhancer import Enhancer

    b = load_bundle()
    entry = b.precisions["denoiser"]["bf16"]
    assert b.checked_precision("denoiser", "bf16") and entry["source"].startswith("docs/bench/0.26/")
    assert len(entry["checked_on"]["seeds"]) == 16 and max(abs(v) for v in entry["per_judge_ua_mean"].values()) <= 1.0
    assert resolve_precision("auto", "cpu", b.checked_precision("denoiser", "bf16"), OK)[0] == "bf16"
    monkeypatch.setattr(openvino_cpu, "bf16_status", lambda flags=None: NO)
    enh = Enhancer.load(device="cpu", precision="auto", threads=1)
    assert enh.precision == "fp32" and "no AMX-BF16" in enh.precision_reason
    assert type(enh.denoiser).__name__ == "OrtModel"


def _bundle_listing_bf16(tmp_path, sha256: str | None = None):
    import json
    import shutil

    from emort.runtime.bundle import DEFAULT_BUNDLE, MANIFEST, load_bundle

    dst = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE, dst)
    m = json.loads((dst / MANIFEST).read_text())
    den = m["models"]["denoiser"]["file"]
    m["precisions"] = {"denoiser": {"bf16": {"clips": 6, "corr_min": 0.96, "sha256": sha256 or m["files"][den]}}}
    (dst / MANIFEST).write_text(json.dumps(m))
    return load_bundle(dst)


def test_a_bundle_lists_bf16_only_for_the_graph_it_was_checked_on(tmp_path):
    b = _bundle_listing_bf16(tmp_path)
    assert b.precisions["denoiser"]["bf16"]["corr_min"] == 0.96 and b.checked_precision("denoiser", "bf16")
    assert not b.checked_precision("denoiser", "int8") and not b.checked_precision("ser", "bf16")
    stale = _bundle_listing_bf16(tmp_path / "stale", sha256="0" * 64)  # the graph was replaced since
    assert not stale.checked_precision("denoiser", "bf16")


def test_a_malformed_precisions_entry_is_a_bundle_error(tmp_path):
    import json
    import shutil

    from emort.runtime.bundle import DEFAULT_BUNDLE, MANIFEST, load_bundle
    from emort.runtime.errors import BundleError

    shutil.copytree(DEFAULT_BUNDLE, tmp_path / "b")
    m = json.loads((tmp_path / "b" / MANIFEST).read_text())
    m["precisions"] = ["bf16"]
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="'precisions' must map"):
        load_bundle(tmp_path / "b", verify=False)


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'emort[openvino]')")
def test_auto_with_a_checked_bundle_runs_bf16_or_says_why_not(tmp_path, monkeypatch):
    """Where OpenVINO compiles the graph in float32 (no bf16 on this CPU), auto keeps onnxruntime's fp32 and says so."""
    from emort.runtime.enhancer import Enhancer

    real_ok = bf16_status()[0]
    monkeypatch.setattr(openvino_cpu, "bf16_status", lambda flags=None: OK)  # as if the flags said AMX
    enh = Enhancer.load(_bundle_listing_bf16(tmp_path), device="cpu", precision="auto", threads=1)
    if real_ok:
        assert enh.precision == "bf16" and type(enh.denoiser).__name__ == "OpenVinoModel"
    else:
        assert enh.precision == "fp32" and "not bf16" in enh.precision_reason
        assert type(enh.denoiser).__name__ == "OrtModel"


@pytest.mark.skipif(not HAS_OPENVINO or bf16_status()[0], reason="needs OpenVINO on a CPU without bf16")
def test_openvino_falling_back_to_fp32_is_refused_not_reported_as_bf16():
    from emort.runtime.bundle import load_bundle
    from emort.runtime.openvino_cpu import OpenVinoModel

    with pytest.raises(BackendError, match="not bf16"):
        OpenVinoModel(load_bundle().model_path("denoiser"), "bf16", threads=1)


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'emort[openvino]')")
def test_a_graph_openvino_cannot_compile_is_one_line(tmp_path):
    from emort.runtime.openvino_cpu import OpenVinoModel

    bad = tmp_path / "denoiser.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(BackendError) as e:
        OpenVinoModel(bad, "fp32", threads=1)
    assert "cannot compile" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'emort[openvino]')")
def test_one_openvino_model_serves_several_threads():
    """One model called from four threads: concurrent calls of different shapes give onnxruntime's outputs."""
    from concurrent.futures import ThreadPoolExecutor

    from emort.runtime.bundle import load_bundle
    from emort.runtime.openvino_cpu import OpenVinoModel
    from emort.runtime.session import load_model

    b = load_bundle()
    ov_model = OpenVinoModel(b.model_path("denoiser"), "fp32", threads=2)
    ort_model = load_model(b.model_path("denoiser"), "cpu", 1)
    rng = np.random.default_rng(0)
    emb, style = len(next(iter(b.centroids.values()))), b.models["style"].dim or 128
    feeds = [{"x": rng.standard_normal((2, b.mel.n_mels, frames)).astype(np.float32), "t": np.array([500.0, 200.0], np.float32),
              "emotion": rng.standard_normal((2, emb)).astype(np.float32), "emotion_mask": np.array([[1.0], [0.0]], np.float32),
              "style": rng.standard_normal((2, style)).astype(np.float32)}
             for frames in (b.stride * k for k in (5, 8, 11, 15, 5, 8))]
    want = [ort_model(**f)[0] for f in feeds]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda f: ov_model(**f)[0], feeds))
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g - w).max() < 1e-3 * np.abs(w).max()


def test_enhance_bf16_where_it_cannot_run_is_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from emort.cli.app import app
    from tests.cli.test_enhance_score import one_line_error, put

    monkeypatch.setattr(openvino_cpu, "bf16_status", lambda flags=None: NO)
    put(tmp_path / "a.wav")
    r = CliRunner().invoke(app, ["enhance", str(tmp_path / "a.wav"), "-e", "sad", "--precision", "bf16", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "bf16 is not available" in one_line_error(r)
    assert not (tmp_path / "o").exists()


def _edit_change(enh, wav):
    out = enh.enhance(wav, 16000, "angry", enh.options(amount_db=0.5, seed=0))
    return out.mel - out.source_mel


@pytest.fixture(scope="module")
def clip():
    from tests.cli.test_enhance_score import speechy

    return speechy(seconds=2.0, sr=16000, seed=3)


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'emort[openvino]')")
def test_openvino_fp32_makes_onnxruntimes_edit(clip):
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.openvino_cpu import OpenVinoModel

    enh = Enhancer.load(device="cpu", threads=2)
    ref = _edit_change(enh, clip)
    enh.denoiser = OpenVinoModel(enh.bundle.model_path("denoiser"), "fp32", threads=2)
    got = _edit_change(enh, clip)
    assert np.abs(got - ref).max() < 1e-3 * max(np.abs(ref).max(), 1e-6) + 1e-4


@pytest.mark.skipif(not bf16_status()[0], reason=f"bf16 denoiser unavailable here: {bf16_status()[1]}")
def test_bf16_edit_stays_within_the_seed_yardstick(clip):
    """bf16 against fp32 differs less than fp32 between two noise seeds (docs/bench/0.20/precision.md)."""
    from emort.runtime.enhancer import Enhancer

    fp = Enhancer.load(device="cpu", threads=2)
    bf = Enhancer.load(device="cpu", threads=2, precision="bf16")
    assert bf.precision == "bf16"
    ref, low = _edit_change(fp, clip), _edit_change(bf, clip)
    other_seed = fp.enhance(clip, 16000, "angry", fp.options(amount_db=0.5, seed=1))
    seed_gap = np.linalg.norm(other_seed.mel - other_seed.source_mel - ref)
    assert np.linalg.norm(low - ref) < seed_gap


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'emort[openvino]')")
def test_openvino_keeps_the_compiled_model_in_its_cache_and_loads_the_same_model(tmp_path):
    from emort.runtime.bundle import load_bundle
    from emort.runtime.openvino_cpu import OpenVinoModel

    path = load_bundle().model_path("denoiser")
    first = OpenVinoModel(path, "fp32", threads=1, cache_dir=tmp_path / "ov")
    assert first.cache_dir == tmp_path / "ov" and any((tmp_path / "ov").iterdir())  # a compiled blob written
    again = OpenVinoModel(path, "fp32", threads=1, cache_dir=tmp_path / "ov")  # loaded from the cache
    x = {"x": np.random.default_rng(0).standard_normal((2, 80, 64)).astype(np.float32), "t": np.full(2, 100, np.float32),
         "emotion": np.zeros((2, 128), np.float32), "emotion_mask": np.array([[1], [0]], np.float32), "style": np.zeros((2, 128), np.float32)}
    np.testing.assert_array_equal(first(**x)[0], again(**x)[0])
    blocked = tmp_path / "file"
    blocked.write_text("")  # a cache "folder" that is a file: no cache, not an error
    assert OpenVinoModel(path, "fp32", threads=1, cache_dir=blocked / "ov").cache_dir is None
    assert OpenVinoModel(path, "fp32", threads=1, cache_dir=False).cache_dir is None
