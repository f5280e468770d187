"""PyTorch eager rows: the bundle's models run by torch, called like its onnxruntime sessions.

With the SER and diffusion run folders the bundle was exported from (``--ser-run``,
``--diffusion-run``), the training code's own modules on the runs' weights. Without them (a
fresh clone: the runs are not in the repository) the same modules are rebuilt from the
bundle itself by :func:`emort.export.to_torch.bundle_torch_models`: architecture from its
manifest, weights from its ONNX graphs, the SER's BatchNorms folded into its convolutions as
in the graph (so eager runs exactly the arithmetic onnxruntime runs), and the backend says
so. Without torch, without onnx (the ``[export]`` extra) for that rebuild, or with a bundle
whose graphs do not match the architecture its manifest records, the backend is skipped
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


def bundle_backend(bundle, why: str) -> Backend:
    """The ``torch`` backend on the training code's modules rebuilt from the bundle, or skipped."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.errors import EmortError
    from emort.runtime.scorer import Scorer

    try:
        from emort.export.to_torch import bundle_torch_models
    except ImportError as e:  # onnx (the [export] extra) reads the graphs' weights
        return Backend("torch", "skipped", f"{why}, and the bundle cannot be rebuilt in torch here ({type(e).__name__}: {e}; "
                       "pip install 'emort[export]')".splitlines()[0])
    try:
        mods = bundle_torch_models(bundle)
    except EmortError as e:  # a graph the manifest's architecture does not describe: report it, keep benchmarking the rest
        return Backend("torch", "skipped", f"{why}; {e}".splitlines()[0])
    except Exception as e:  # anything else while rebuilding: the same, with the exception's type
        return Backend("torch", "skipped", f"{why}; could not rebuild the bundle in torch: {type(e).__name__}: {e}".splitlines()[0])
    specs = bundle.models
    enh = Enhancer(bundle, Scorer(bundle, TorchModel(mods["ser"], specs["ser"].inputs), "torch"),
                   TorchModel(mods["style"], specs["style"].inputs), TorchModel(mods["denoiser"], specs["denoiser"].inputs), "torch")
    return Backend("torch", "ok", f"{why}: the training code's modules rebuilt from the bundle (architecture from its manifest, "
                   "weights from its ONNX graphs, BatchNorm folded as in them)", device="cpu", enhancer=enh)


def torch_backend(bundle, ser_run: Path | None, diffusion_run: Path | None) -> Backend:
    """The ``torch`` backend: the training runs' modules when their folders are given and found,
    else the same modules rebuilt from the bundle; skipped (reason in one line) without torch."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    if torch_or_none() is None:
        return Backend("torch", "skipped", "torch is not installed (pip install 'emort[train]')")
    for what, run, name in (("SER", ser_run, "ser"), ("diffusion", diffusion_run, "diffusion")):
        if run is None:
            return bundle_backend(bundle, f"no {what} run folder given (--{name}-run)")
        if not (Path(run) / f"{name}.json").exists():
            return bundle_backend(bundle, f"{what} run {run} not found")
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
