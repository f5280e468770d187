"""PyTorch eager rows: the training runs' weights called like the bundle's onnxruntime sessions.

They need the SER and diffusion run folders the bundle was exported from (``--ser-run``,
``--diffusion-run``) and torch (``[train]``); without them the torch backend is skipped
with a one-line reason and every other row still runs.
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


def torch_backend(bundle, ser_run: Path | None, diffusion_run: Path | None) -> Backend:
    """The ``torch`` backend on the training runs' weights, or skipped with the reason in one line."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    if torch_or_none() is None:
        return Backend("torch", "skipped", "torch is not installed (pip install 'emort[train]')")
    for what, run, name in (("SER", ser_run, "ser"), ("diffusion", diffusion_run, "diffusion")):
        if run is None:
            return Backend("torch", "skipped", f"no {what} run folder given (--{name}-run)")
        if not (Path(run) / f"{name}.json").exists():
            return Backend("torch", "skipped", f"{what} run {run} not found (no {name}.json); eager rows need the training run folders")
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
