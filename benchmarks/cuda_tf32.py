"""``python benchmarks/cuda_tf32.py``: how far onnxruntime's CUDA provider moves three of the shipped
bundle's graphs from the CPU, with TF32 matrix products (the provider's default) and without.

One random batch of 2 x 128 frames per graph; prints the largest difference relative to the CPU
output's peak (docs/bench/0.33/shapes/tf32.txt). Needs onnxruntime-gpu and a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import onnxruntime as ort

    from emort.runtime.bundle import load_bundle
    from emort.runtime.session import preload_cuda_libraries

    preload_cuda_libraries()
    b = load_bundle()
    for name in ("voice_encoder", "denoiser", "ser"):
        p = str(b.model_path(name))
        cpu = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(1)
        feeds = {}
        for i in cpu.get_inputs():
            dims = [d if isinstance(d, int) else (2 if k == 0 else 128) for k, d in enumerate(i.shape)]
            feeds[i.name] = (rng.uniform(1, 900, dims) if i.name == "t" else rng.standard_normal(dims)).astype(np.float32)
        want = cpu.run(None, feeds)[0]
        for tf32 in ("1", "0"):
            g = ort.InferenceSession(p, providers=[("CUDAExecutionProvider", {"use_tf32": tf32, "cudnn_conv_algo_search": "HEURISTIC"})])
            got = g.run(None, feeds)[0]
            print(name, "use_tf32", tf32, "rel max diff", float(np.abs(got - want).max() / np.abs(want).max()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
