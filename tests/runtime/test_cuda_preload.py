"""The CUDA and cuDNN libraries of pip's nvidia-* packages are loaded once, before a GPU session only,
and only where there is something to load: pip's CUDA packages present and torch not yet imported."""

from __future__ import annotations

import sys

import onnxruntime as ort
import pytest

from emort.runtime import session


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_preload_dlls():
        seen.append(1)

    monkeypatch.setattr(ort, "preload_dlls", fake_preload_dlls, raising=False)
    monkeypatch.setattr(session, "_preloaded", [])
    monkeypatch.setattr(session, "_warned", set())
    monkeypatch.setattr(session, "_pip_cuda_present", lambda: True)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored after the test
    return seen


def test_preload_once(calls):
    assert session.preload_cuda_libraries() is True
    assert session.preload_cuda_libraries() is True
    assert len(calls) == 1


@pytest.mark.parametrize("why", ["no pip CUDA", "torch imported", "old onnxruntime"])
def test_preload_skipped_where_there_is_nothing_to_load(calls, monkeypatch, why):
    if why == "no pip CUDA":
        monkeypatch.setattr(session, "_pip_cuda_present", lambda: False)
    elif why == "torch imported":
        monkeypatch.setitem(sys.modules, "torch", object())
    else:
        monkeypatch.delattr(ort, "preload_dlls")
    assert session.preload_cuda_libraries() is False
    assert calls == []


def test_preload_failure_is_not_fatal(calls, monkeypatch, caplog):
    def broken():
        raise RuntimeError("Invalid parameter of directory=None. The directory does not exist!")

    monkeypatch.setattr(ort, "preload_dlls", broken)
    assert session.preload_cuda_libraries() is False
    assert "preload_dlls() failed" in caplog.text


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_only_gpu_sessions_preload(calls):
    from emort.runtime.bundle import load_bundle

    path = load_bundle().model_path("style")
    session.OrtModel(path, "cpu")
    assert calls == []
    # a CUDA session on this host: onnxruntime falls back to the CPU (the CPU package lists no CUDA provider)
    m = session.OrtModel(path, "cuda", strict=False)
    assert calls == [1] and m.device == "cpu"
