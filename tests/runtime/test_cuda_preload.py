"""The CUDA and cuDNN libraries of pip's nvidia-* packages are loaded once, before a GPU session only,
and what onnxruntime prints while loading them stays off stdout (where the CLI's JSON may go)."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from emort.runtime import session


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_preload_dlls():
        seen.append(1)
        print("Failed to load libcudnn.so.9: not found")  # what onnxruntime prints for a missing library

    monkeypatch.setattr(ort, "preload_dlls", fake_preload_dlls, raising=False)
    monkeypatch.setattr(session, "_preloaded", [])
    return seen


def test_preload_once_and_quiet(calls, capsys):
    assert session.preload_cuda_libraries() is True
    assert session.preload_cuda_libraries() is True
    assert len(calls) == 1
    assert capsys.readouterr().out == ""


def test_preload_without_the_function(monkeypatch):
    monkeypatch.delattr(ort, "preload_dlls", raising=False)
    monkeypatch.setattr(session, "_preloaded", [])
    assert session.preload_cuda_libraries() is False


def test_preload_failure_is_not_fatal(monkeypatch):
    def broken():
        raise RuntimeError("Invalid parameter of directory=None. The directory does not exist!")

    monkeypatch.setattr(ort, "preload_dlls", broken, raising=False)
    monkeypatch.setattr(session, "_preloaded", [])
    assert session.preload_cuda_libraries() is False


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_only_gpu_sessions_preload(calls, monkeypatch):
    from emort.runtime.bundle import load_bundle

    path = load_bundle().model_path("style")
    session.OrtModel(path, "cpu")
    assert calls == []
    # a CUDA session on this host: onnxruntime falls back to the CPU (the CPU package lists no CUDA provider)
    m = session.OrtModel(path, "cuda", strict=False)
    assert calls == [1] and m.device == "cpu"
