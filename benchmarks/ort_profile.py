"""Where onnxruntime spends the denoiser's time: its own profiler, summed per operator type.

One denoiser call as the edit makes it (a 3 s clip: 260 frames; batch 8: 4 noise levels,
conditional and unconditional, in one call; ``--batch 2`` for the bench's single step) on the
bundle's graph with the runtime's session settings (all graph optimisations, 2 intra-op threads,
threads spinning at most ``SPIN_US`` between operators), repeated; prints milliseconds per call, the share of each operator type and of
four groups (convolutions; NCHWc reorders; element-wise: Add, Mul, Div, Sub, QuickGelu, Sigmoid,
Softmax, InstanceNormalization, Gemm, FusedMatMul, MatMul; shape: Reshape, Squeeze, Unsqueeze,
Shape, Slice, Gather, Concat, Split, Transpose, Expand, Identity, Cast, ConstantOfShape) and
writes JSON. ``ReorderInput`` / ``ReorderOutput`` are the
conversions into and out of onnxruntime's blocked (NCHWc) layout around each convolution: the
operators between the convolutions (group norm, SiLU, FiLM) do not run in that layout. The
profiler adds its own overhead, so the total is above the bench's median.

    python benchmarks/ort_profile.py --json docs/bench/ort_profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


GROUPS = {
    "convolutions": ("Conv", "FusedConv"),
    "NCHWc reorders": ("ReorderInput", "ReorderOutput"),
    "element-wise, normalisation, attention": ("Add", "Mul", "Div", "Sub", "QuickGelu", "Sigmoid", "Softmax",
                                               "InstanceNormalization", "Gemm", "FusedMatMul", "MatMul"),
    "shape": ("Reshape", "Squeeze", "Unsqueeze", "Shape", "Slice", "Gather", "Concat", "Split", "Transpose", "Expand",
              "Identity", "Cast", "ConstantOfShape"),
}


def profile(bundle: str | None = None, batch: int = 8, frames: int = 260, runs: int = 30, threads: int = 2) -> dict:
    """Per operator type: milliseconds per call, share of the summed kernel time, nodes per call."""
    import onnxruntime as ort

    from emort.runtime.bundle import load_bundle
    from emort.runtime.session import session_options

    b = load_bundle(bundle)
    so, _ = session_options(threads)  # the runtime's sessions' settings (OrtModel)
    so.enable_profiling = True
    tmp = tempfile.mkdtemp(prefix="emort-ort-profile-")
    so.profile_file_prefix = os.path.join(tmp, "denoiser")
    s = ort.InferenceSession(str(b.model_path("denoiser")), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    emb, sty = b.models["ser"].dim, b.models["style"].dim
    feeds = {"x": rng.standard_normal((batch, b.mel.n_mels, frames)).astype(np.float32), "t": np.full(batch, 500.0, np.float32),
             "emotion": rng.standard_normal((batch, emb)).astype(np.float32), "emotion_mask": np.ones((batch, 1), np.float32),
             "style": rng.standard_normal((batch, sty)).astype(np.float32)}
    feeds = {i.name: feeds[i.name] for i in s.get_inputs()}
    warmup = 5
    for _ in range(warmup + runs):
        s.run(None, feeds)
    path = s.end_profiling()
    events = json.load(open(path))
    os.remove(path)
    os.rmdir(tmp)
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) != warmup + runs:
        raise RuntimeError(f"the profile holds {len(starts)} runs, expected {warmup + runs}")
    events = [e for e in events if e.get("ts", 0) >= starts[warmup]]  # the warm-up calls left out
    total: dict[str, float] = collections.defaultdict(float)
    nodes: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            total[op] += e["dur"]
            nodes[op] += 1
    summed = sum(total.values())
    rows = [{"op": op, "ms_per_call": d / runs / 1e3, "share": d / summed, "nodes_per_call": nodes[op] / runs}
            for op, d in sorted(total.items(), key=lambda x: -x[1])]
    groups = {g: sum(r["share"] for r in rows if r["op"] in ops) for g, ops in GROUPS.items()}
    groups["other"] = 1.0 - sum(groups.values())
    return {"bundle_hash": b.content_hash, "batch": batch, "frames": frames, "runs": runs, "threads": threads,
            "onnxruntime": ort.__version__, "kernel_ms_per_call": summed / runs / 1e3, "groups": groups, "ops": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8, help="rows per call (8: the edit's call for one clip; 2: one step)")
    ap.add_argument("--json", type=Path, help="write the report here")
    a = ap.parse_args(argv)
    rep = profile(a.bundle, batch=a.batch, runs=a.runs)
    print(f"denoiser, batch {rep['batch']} x {rep['frames']} frames, onnxruntime {rep['onnxruntime']}: "
          f"{rep['kernel_ms_per_call']:.2f} ms of kernels per call (profiler on)")
    print(f"{'operator':24s} {'ms/call':>8s} {'share':>7s} {'nodes':>6s}")
    for r in rep["ops"][:20]:
        print(f"{r['op']:24s} {r['ms_per_call']:8.3f} {100 * r['share']:6.1f}% {r['nodes_per_call']:6.0f}")
    print("; ".join(f"{g} {100 * v:.1f}%" for g, v in rep["groups"].items()))
    if a.json:
        from emort.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
