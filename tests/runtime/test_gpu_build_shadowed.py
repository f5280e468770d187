"""The CPU package ``onnxruntime`` installed over ``onnxruntime-gpu`` (emort's core dependency and its
``[cuda]`` extra install both, and they share one module): the GPU providers vanish, and a GPU
user's ``--device cuda`` used to read only "pip install 'emort[cuda]'", which they had done."""

from __future__ import annotations

import logging

import pytest

from emort.runtime import session
from emort.runtime.errors import BackendError
from emort.runtime.session import GPU_BUILD_FIX, gpu_build_shadowed, resolve_device

CPU = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def capi(tmp_path):
    return tmp_path


def test_only_the_mix_up_counts(capi):
    assert not gpu_build_shadowed(CPU, capi)  # a plain CPU install
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    assert gpu_build_shadowed(CPU, capi)  # the GPU build's library, the CPU build's module
    assert not gpu_build_shadowed(GPU, capi)  # the GPU build's module: fine, GPU or not


def test_a_callers_own_provider_list_is_not_judged_by_the_installed_files():
    """Only the imported module's providers are compared with its files (a list from elsewhere, as in
    tests or a caller's probe, says nothing of them)."""
    assert not gpu_build_shadowed(CPU)


def test_an_explicit_gpu_device_names_the_repair(capi):
    with pytest.raises(BackendError, match="pip install 'emort\\[cuda\\]'"):
        resolve_device("cuda", CPU, False, capi)
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    for device in ("cuda", "tensorrt"):
        with pytest.raises(BackendError) as e:
            resolve_device(device, CPU, False, capi)
        assert GPU_BUILD_FIX in str(e.value) and "\n" not in str(e.value)


def test_auto_warns_once_and_runs_on_the_cpu(capi, caplog, monkeypatch):
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    monkeypatch.setattr(session, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="emort.runtime.session"):
        assert resolve_device("auto", CPU, False, capi) == "cpu"
        assert resolve_device("auto", CPU, False, capi) == "cpu"
    assert [r.getMessage() for r in caplog.records].count(f"running on cpu: {session.shadowed_hint()}") == 1


@pytest.mark.parametrize(("asked", "running", "says"), [
    ("cuda", "cpu", "could not start cuda here (it needs the CUDA and cuDNN libraries onnxruntime-gpu was built for; "),
    ("tensorrt", "cpu", "could not start tensorrt or cuda here"),
    ("tensorrt", "cuda", "could not start tensorrt here (it needs the TensorRT libraries;"),
])
def test_a_gpu_that_cannot_start_under_auto_is_one_warning_with_a_way_out(caplog, monkeypatch, asked, running, says):
    """onnxruntime drops a provider it cannot start and runs on the next; under ``auto`` emort says so
    once per process and fallback (not once per graph), naming what failed, what it needs, and how
    to skip it. onnxruntime's session is stubbed to report the fallback, as on a GPU host."""
    import onnxruntime

    from emort.runtime.session import OrtModel

    real = onnxruntime.InferenceSession
    reported = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}[running]

    class Fallen(real):
        def __init__(self, path, sess_options=None, providers=None):
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return reported

    monkeypatch.setattr(onnxruntime, "InferenceSession", Fallen)
    monkeypatch.setattr(session, "_warned", set())
    graph = sorted(session.Path(__file__).resolve().parents[2].joinpath("emort/assets/default_bundle").glob("*.onnx"),
                   key=lambda p: p.stat().st_size)[0]
    with caplog.at_level(logging.WARNING, logger="emort.runtime.session"):
        for _ in range(2):
            assert OrtModel(graph, device=asked, strict=False).device == running
    lines = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    skip = "skips the GPU" if running == "cpu" else f"--device cuda skips {asked}"
    assert len(lines) == 1 and says in lines[0] and f"running on {running}." in lines[0] and skip in lines[0], lines
    with pytest.raises(BackendError, match=f"fell back to {running}"):
        OrtModel(graph, device=asked, strict=True)
