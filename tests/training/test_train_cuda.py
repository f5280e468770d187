"""Training on a CUDA GPU (``--device cuda``): the trainers run there, draw the batches a CPU run
draws, write checkpoints that load and resume on a CPU.

Marked ``gpu``; every test skips with its reason where torch sees no CUDA GPU (always, on the
CPU machines this project is developed and tested on).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.training.common import resolve_device  # noqa: E402
from emort.training.data import NormStats  # noqa: E402
from emort.training.diffusion import DiffusionTrainConfig, load_diffusion, train_diffusion  # noqa: E402
from emort.training.ser import SERTrainConfig, load_ser, predict, train_ser  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    """The real ``torch.cuda.is_available`` for this module (tests/conftest.py hides the GPU from the others)."""
    real = getattr(torch.cuda, "_emort_real_is_available", torch.cuda.is_available)
    if not real():
        pytest.skip(f"needs a CUDA GPU visible to torch (torch {torch.__version__}: CUDA {torch.version.cuda}); "
                    "run on a GPU host with a CUDA build of torch")
    hidden = torch.cuda.is_available
    torch.cuda.is_available = real
    yield torch.device("cuda", 0)
    torch.cuda.is_available = hidden


def _ser_cfg(csv: Path, out: Path, **kw) -> SERTrainConfig:
    base = dict(preset="tiny", batch_size=12, test_speakers=[], val_speakers=["tiny/10"], crop_s=2.0, progress=False, patience=100,
                lr=3e-3, specaugment=False, mixup_alpha=0.0, label_smoothing=0.0)
    return SERTrainConfig(data=[f"csv={csv}"], out=str(out), **{**base, **kw})


def _diff_cfg(csv: Path, ser: Path, out: Path, **kw) -> DiffusionTrainConfig:
    base = dict(channels=[16, 32], blocks_per_level=1, batch_size=8, crop_s=0.5, sample_every=0, checkpoint_every=1, progress=False,
                lr=3e-3)
    return DiffusionTrainConfig(data=[f"csv={csv}"], ser=str(ser), out=str(out), **{**base, **kw})


def test_auto_takes_the_gpu(cuda):
    assert resolve_device("auto") == cuda
    assert resolve_device("cuda") == cuda and resolve_device("cpu").type == "cpu"


def test_ser_learns_on_the_gpu_and_its_run_loads_and_resumes_on_the_cpu(cuda, tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "ser"
    res = train_ser(_ser_cfg(tiny_csv, out, epochs=10, max_steps=30, device="cuda"))
    conf = json.loads((out / "ser.json").read_text())
    assert conf["device"] == "cuda:0" and conf["train"]["device"] == "cuda"
    hist = [h["loss"] for h in res["history"]]
    assert all(np.isfinite(hist)) and hist[-1] < 0.9 * hist[0], hist
    model, _ = load_ser(out)  # weights saved from the GPU load into a CPU model
    assert next(model.parameters()).device.type == "cpu"
    probs, _ = predict(model, [np.zeros((80, 200), np.float32)], NormStats.from_dict(conf["norm"]))
    assert np.all(np.isfinite(probs)) and probs.sum() == pytest.approx(1.0, abs=1e-4)

    # a GPU run cut after one epoch goes on on the CPU (optimiser state moved, the first epoch kept)
    cut = tmp_path / "cut"
    first = train_ser(_ser_cfg(tiny_csv, cut, epochs=1, device="cuda"))
    second = train_ser(_ser_cfg(tiny_csv, cut, epochs=2, device="cpu"))
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]
    assert json.loads((cut / "ser_last.json").read_text())["device"] == "cpu"


def test_diffusion_on_the_gpu_follows_the_cpu_run(cuda, tiny_csv: Path, tmp_path: Path):
    """Batches and noise are drawn on the CPU: the GPU run's losses are the CPU run's, up to the GPU's
    arithmetic (cuDNN convolutions in TF32 by default: relative differences near 1e-3)."""
    ser = tmp_path / "ser"
    train_ser(_ser_cfg(tiny_csv, ser, epochs=1, device="cpu"))
    runs = {dev: train_diffusion(_diff_cfg(tiny_csv, ser, tmp_path / dev, steps=4, device=dev)) for dev in ("cpu", "cuda")}
    cpu, gpu = ([h["loss"] for h in runs[d]["history"]] for d in ("cpu", "cuda"))
    assert len(cpu) == len(gpu) == 4
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2)
    assert json.loads((tmp_path / "cuda" / "diffusion.json").read_text())["device"] == "cuda:0"
    model, _ = load_diffusion(tmp_path / "cuda")
    assert next(model.parameters()).device.type == "cpu"
    # a GPU run resumes on the CPU, and a CPU run on the GPU
    more = train_diffusion(_diff_cfg(tiny_csv, ser, tmp_path / "cuda", steps=6, device="cpu"))
    assert [h["step"] for h in more["history"]] == [1, 2, 3, 4, 5, 6]
    more = train_diffusion(_diff_cfg(tiny_csv, ser, tmp_path / "cpu", steps=6, device="cuda"))
    assert [h["step"] for h in more["history"]] == [1, 2, 3, 4, 5, 6] and all(np.isfinite([h["loss"] for h in more["history"]]))


def test_ser_with_every_augmentation_and_ema_moves_between_devices(cuda, tiny_csv: Path, tmp_path: Path):
    """SpecAugment, mixup, speaker-style perturbations and the weight average on the GPU, in a run
    begun on the CPU and finished there again (the GPU's saved dropout generator is then unused)."""
    out = tmp_path / "aug"
    aug = dict(ema=0.9, warp=0.1, stretch=0.1, gain_db=6.0, specaugment=True, mixup_alpha=0.2)
    first = train_ser(_ser_cfg(tiny_csv, out, epochs=1, device="cpu", **aug))
    second = train_ser(_ser_cfg(tiny_csv, out, epochs=2, device="cuda", **aug))
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]
    assert np.isfinite(second["history"][1]["loss"]) and json.loads((out / "ser_last.json").read_text())["device"] == "cuda:0"
    third = train_ser(_ser_cfg(tiny_csv, out, epochs=3, device="cpu", **aug))
    assert [h["epoch"] for h in third["history"]] == [1, 2, 3] and third["history"][1] == second["history"][1]
