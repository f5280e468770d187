"""PyTorch eager rows: the bundle's models run by torch, called like its onnxruntime sessions.

With the SER and diffusion run folders the bundle was exported from (``--ser-run``,
``--diffusion-run``), the training code's own modules on the runs' weights. Without them (a
fresh clone: the runs are not in the repository) each ONNX graph of the bundle is converted
to a ``torch.fx`` module by ``onnx2torch`` when it is installed (same weights and operators,
run op by op in torch eager), and the backend says so. onnx2torch imports torchvision, which
must be built for the installed torch: with this project's CPU pin (torch 2.13.0+cpu) PyPI's
torchvision wheels do not load, so it is not in any extra; install a matching pair yourself.
Without torch, or without either source of weights, the backend is skipped with a one-line
reason and every other row still runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.runtime_rows import Backend
from benchmarks.timing import torch_or_none


class TorchModel:
    """A torch module called like an onnxruntime session: ``(**numpy inputs) -> list of numpy outputs``."""

    def __init__(self, module, input_names: Sequence[str], device: str = "cpu"):
        self.module = module
        self.input_names = list(input_names)
        self.device = device

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(inputs[k])).to(self.device) for k in self.input_names])
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().cpu().numpy() for o in out]


def converted_backend(bundle, why: str) -> Backend:
    """The ``torch`` backend on the bundle's own graphs converted by onnx2torch, or skipped."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    try:
        import onnx
        from onnx2torch import convert
    except Exception as e:  # not installed, or its torchvision built for another torch
        return Backend("torch", "skipped", f"{why}, and onnx2torch cannot convert the bundle here "
                       f"({type(e).__name__}: {e}; it needs a torchvision built for the installed torch)".splitlines()[0])
    specs = bundle.models
    try:
        mods = {n: convert(onnx.load(str(bundle.model_path(n)))).eval() for n in ("ser", "style", "denoiser")}
    except Exception as e:  # an operator onnx2torch does not know: report it, keep benchmarking the rest
        return Backend("torch", "skipped", f"{why}; onnx2torch could not convert the bundle: {type(e).__name__}: {e}".splitlines()[0])
    enh = Enhancer(bundle, Scorer(bundle, TorchModel(mods["ser"], specs["ser"].inputs), "torch"),
                   TorchModel(mods["style"], specs["style"].inputs), TorchModel(mods["denoiser"], specs["denoiser"].inputs), "torch")
    return Backend("torch", "ok", f"{why}: the bundle's ONNX graphs converted to torch.fx by onnx2torch (same weights and operators)",
                   device="cpu", enhancer=enh)


def torch_backend(bundle, ser_run: Path | None, diffusion_run: Path | None) -> Backend:
    """The ``torch`` backend: the training runs' modules when their folders are given and found,
    else the bundle's graphs converted by onnx2torch; skipped (reason in one line) without torch."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    if torch_or_none() is None:
        return Backend("torch", "skipped", "torch is not installed (pip install 'emort[train]')")
    for what, run, name in (("SER", ser_run, "ser"), ("diffusion", diffusion_run, "diffusion")):
        if run is None:
            return converted_backend(bundle, f"no {what} run folder given (--{name}-run)")
        if not (Path(run) / f"{name}.json").exists():
            return converted_backend(bundle, f"{what} run {run} not found")
    try:
        from emort.training.diffusion import load_diffusion
        from emort.training.ser import input_norm, load_ser

        ser, ser_cfg = load_ser(ser_run)
        diff, _ = load_diffusion(diffusion_run)
    except Exception as e:  # a broken or incompatible run folder: report it, keep benchmarking the rest
        return Backend("torch", "skipped", f"could not load the runs: {type(e).__name__}: {e}".splitlines()[0])
    if input_norm(ser_cfg) != "global":  # the bundle's "ser" graph is the global SER; this one would be fed the wrong input
        return Backend("torch", "skipped", f"SER run {ser_run} is speaker-normalised (--norm speaker); give the global SER run the bundle was exported from")
    specs = bundle.models
    enh = Enhancer(bundle, Scorer(bundle, TorchModel(ser, specs["ser"].inputs), "torch"), TorchModel(diff.style, specs["style"].inputs),
                   TorchModel(diff.denoiser, specs["denoiser"].inputs), "torch")
    return Backend("torch", "ok", device="cpu", enhancer=enh)
