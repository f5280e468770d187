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


def test_this_install_is_not_mixed_up():
    assert not gpu_build_shadowed()


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
    monkeypatch.setattr(session, "_warned_shadowed", session.threading.Event())
    with caplog.at_level(logging.WARNING, logger="emort.runtime.session"):
        assert resolve_device("auto", CPU, False, capi) == "cpu"
        assert resolve_device("auto", CPU, False, capi) == "cpu"
    assert [r.getMessage() for r in caplog.records].count(f"running on cpu: {session.shadowed_hint()}") == 1


def test_a_gpu_that_cannot_start_under_auto_is_one_warning_with_a_way_out(caplog, monkeypatch):
    """onnxruntime drops a GPU provider it cannot start and runs on the CPU; under ``auto`` emort says
    so once per process (not once per graph), naming what to check and how to skip the GPU."""
    from emort.runtime.session import OrtModel

    graph = sorted(session.Path(__file__).resolve().parents[2].joinpath("emort/assets/default_bundle").glob("*.onnx"),
                   key=lambda p: p.stat().st_size)[0]
    monkeypatch.setattr(session, "_warned_fallback", session.threading.Event())
    with caplog.at_level(logging.WARNING, logger="emort.runtime.session"):
        for _ in range(2):
            assert OrtModel(graph, device="cuda", strict=False).device == "cpu"
    lines = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    assert len(lines) == 1 and "could not start cuda here" in lines[0] and "--device cpu skips the GPU" in lines[0]
    with pytest.raises(BackendError, match="fell back to cpu"):
        OrtModel(graph, device="cuda", strict=True)
