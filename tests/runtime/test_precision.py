"""The denoiser's precision: which one runs where (emort.runtime.openvino_cpu), and the OpenVINO
path's edit against onnxruntime's. The bf16 parity test runs only on a CPU with AMX-BF16 and
OpenVINO installed; the rest runs anywhere."""

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


def test_bf16_needs_amx_and_openvino(monkeypatch):
    ok, why = bf16_status({"avx512f", "avx512_bf16"})
    assert not ok and "AMX-BF16" in why
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    ok, why = bf16_status(cpu_flags(CPUINFO))
    assert not ok and "pip install 'emort[openvino]'" in why


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


def test_an_explicit_bf16_that_cannot_run_names_the_cause():
    with pytest.raises(BackendError, match="no AMX-BF16"):
        resolve_precision("bf16", "cpu", True, NO)
    with pytest.raises(BackendError, match="CPU only"):
        resolve_precision("bf16", "cuda", True, OK)
    with pytest.raises(BackendError, match="unknown precision"):
        resolve_precision("int4", "cpu", True, OK)


def test_the_shipped_bundle_lists_no_bf16_so_auto_loads_fp32():
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load(device="cpu", precision="auto", threads=1)
    assert enh.bundle.precisions == {} and enh.precision == "fp32"
    assert type(enh.denoiser).__name__ == "OrtModel"


def test_a_bundle_that_lists_bf16_is_read(tmp_path):
    import json
    import shutil

    from emort.runtime.bundle import DEFAULT_BUNDLE, MANIFEST, load_bundle

    dst = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE, dst)
    m = json.loads((dst / MANIFEST).read_text())
    m["precisions"] = {"denoiser": {"bf16": {"clips": 6, "corr_min": 0.96}}}
    (dst / MANIFEST).write_text(json.dumps(m))
    b = load_bundle(dst, verify=False)
    assert b.precisions == {"denoiser": {"bf16": {"clips": 6, "corr_min": 0.96}}}


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
