"""``--device`` for the trainers, without a GPU: the choice, its errors, and the process-group
backend that follows it (nccl takes CUDA tensors only; 0.31 chose it whenever a GPU existed, so
a CPU run under torchrun on a GPU host failed)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.runtime.errors import EmortError  # noqa: E402
from emort.training import common  # noqa: E402
from emort.training.common import init_distributed, resolve_device  # noqa: E402


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu") == resolve_device(" CPU ")


@pytest.mark.parametrize("name", ["gpu", "cpu:0", "cuda:x", "cuda:", "mps", ""])
def test_unknown_devices_are_refused(name):
    with pytest.raises(EmortError, match="choose auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.parametrize(("build", "advice"), [(None, "install a CUDA build"), ("13.0", "CUDA_VISIBLE_DEVICES")])
def test_cuda_without_a_gpu_is_one_line(monkeypatch, build, advice):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    with pytest.raises(EmortError) as e:
        resolve_device("cuda")
    assert "--device cpu" in str(e.value) and advice in str(e.value) and "\n" not in str(e.value)


def test_gpu_choice(two_gpus, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0) == resolve_device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(EmortError, match="sees 2 GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cpu").type == "cpu"


def test_under_torchrun_each_rank_takes_its_local_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1) == resolve_device("auto")
    with pytest.raises(EmortError, match="LOCAL_RANK"):
        resolve_device("cuda:0")
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("cuda:1", "nccl")])
def test_the_backend_follows_the_training_device(two_gpus, monkeypatch, device, backend):
    """A GPU is present in both cases: the backend is chosen by where the tensors are."""
    got = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(common.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(common.dist, "init_process_group", lambda backend: got.setdefault("backend", backend))
    monkeypatch.setattr(common.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(common.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: got.setdefault("set_device", str(d)))
    monkeypatch.setattr(common, "_OWN_GROUP", False)
    monkeypatch.setattr(common, "_USERS", 0)
    d = init_distributed(torch.device(device))
    assert got["backend"] == backend and d.device == device and (d.rank, d.world_size) == (1, 2)
    assert got.get("set_device") == (device if backend == "nccl" else None)


def test_one_process_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = init_distributed("cpu")
    assert (d.rank, d.world_size, d.device) == (0, 1, "cpu")


def test_a_recipe_cannot_set_the_device(tmp_path):
    from emort.training.ser import load_recipe

    r = tmp_path / "r.toml"
    r.write_text('device = "cuda"\n')
    with pytest.raises(EmortError, match="device"):
        load_recipe(r)
