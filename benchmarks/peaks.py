"""The cost model: the machine's float32 matmul peak against the denoiser's FLOPs per step.

FLOPs per frame come from the bundle (``ModelSpec.flops_per_frame``, written at export
from the architecture) and are cross-checked by counting the ONNX graph's Conv / MatMul /
Gemm work on real shapes (:func:`onnx_flops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.clips import TARGET_CLIP_S
from benchmarks.runtime_rows import Backend, denoiser_feeds
from benchmarks.timing import pinned_threads, timed


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """The machine's float32 matmul rate (numpy, ``n`` x ``n``), best of ``repeats``, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with pinned_threads(threads):
        a @ b  # warm-up: thread pool start, page faults
        best = min(timed(lambda: a @ b) for _ in range(repeats))
    return {"n": n, "repeats": repeats, "best_ms": best * 1e3, "gflops": 2 * n**3 / best / 1e9, "threads": threads}


def fp32_peak(numpy_peak: dict, precision_peaks: dict) -> dict:
    """The float32 peak the cost model divides by: the faster of numpy's matmul (``numpy_peak``,
    :func:`matmul_peak`) and onnxruntime's float32 MatMul (``precision_peaks["fp32"]``,
    :func:`ort_gemm_peaks`), both measured in the same run. numpy's BLAS is not always the
    machine's fastest float32 GEMM (on a 2-core AMD EPYC with AVX-512, OpenBLAS reached 210
    GFLOP/s and onnxruntime's MLAS 378: docs/bench/0.22/bench_amd_avx512bf16.md): a fraction of numpy's rate can exceed 100%.
    ``numpy_peak`` with ``gflops`` set to the faster rate, ``kernel`` naming it and
    ``numpy_gflops`` keeping numpy's."""
    ort_rate = (precision_peaks.get("fp32") or {}).get("rate")
    out = {**numpy_peak, "numpy_gflops": numpy_peak["gflops"], "kernel": "numpy matmul"}
    if ort_rate is not None and ort_rate > numpy_peak["gflops"]:
        out.update(gflops=ort_rate, best_ms=precision_peaks["fp32"]["best_ms"], kernel="onnxruntime MatMul")
    return out


def _gemm_graph(op: str, ta: int, tb: int, ty: int, n: int) -> bytes:
    """A serialised one-node ONNX graph ``y = op(a, b)`` on ``n`` x ``n`` operands of the given tensor types."""
    from onnx import helper

    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", ta, [n, n]), helper.make_tensor_value_info("b", tb, [n, n])],
                              [helper.make_tensor_value_info("y", ty, [n, n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def ort_gemm_peaks(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """onnxruntime's CPU GEMM rate per precision on ``n`` x ``n`` operands, best of ``repeats``:
    float32 ``MatMul`` (GFLOP/s) and int8 ``MatMulInteger`` (uint8 x int8 -> int32, GOP/s: the
    kernel a quantised model's convolutions and products run on; VNNI where the CPU has it).
    Each entry is ``{"rate", "best_ms"}``, or ``{"skipped": why}``. Needs the ``onnx`` package
    to build the one-node graphs; onnxruntime's x86 CPU provider has no bfloat16 GEMM, so
    the bf16 row is OpenVINO's (:func:`openvino_bf16_peak`)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto
    except ImportError as e:
        return {"skipped": f"{e.name} is not installed (pip install 'emort[export]')"}
    rng = np.random.default_rng(0)
    cases = {
        "fp32": ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT,
                 rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)),
        "int8": ("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32,
                 rng.integers(0, 255, (n, n), dtype=np.uint8), rng.integers(-127, 127, (n, n), dtype=np.int8)),
    }
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    out: dict = {"n": n, "threads": threads, "repeats": repeats}
    for name, (op, ta, tb, ty, a, b) in cases.items():
        try:
            sess = ort.InferenceSession(_gemm_graph(op, ta, tb, ty, n), so, providers=["CPUExecutionProvider"])
            feeds = {"a": a, "b": b}
            sess.run(None, feeds)  # warm-up
            best = min(timed(lambda sess=sess, feeds=feeds: sess.run(None, feeds)) for _ in range(repeats))
        except Exception as e:  # an operator this build lacks: say so, keep the others
            out[name] = {"skipped": f"{type(e).__name__}: {e}".splitlines()[0]}
            continue
        out[name] = {"rate": 2 * n**3 / best / 1e9, "best_ms": best * 1e3}
    return out


def openvino_bf16_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """OpenVINO's CPU bfloat16 GEMM rate (GFLOP/s) on ``n`` x ``n`` float32 operands compiled with
    ``INFERENCE_PRECISION_HINT=bf16`` (AMX or AVX512-BF16, whichever the CPU has), best of ``repeats``: the peak
    of the precision the ``ov-cpu-bf16`` rows run in. ``{"rate", "best_ms"}`` or ``{"skipped": why}``."""
    from emort.runtime.openvino_cpu import bf16_status

    ok, why = bf16_status()
    if not ok:
        return {"skipped": why}
    try:
        import openvino as ov
        from onnx import TensorProto
    except ImportError as e:
        return {"skipped": f"{e.name} is not installed"}
    f32 = TensorProto.FLOAT
    core = ov.Core()
    compiled = core.compile_model(core.read_model(_gemm_graph("MatMul", f32, f32, f32, n), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    if compiled.get_property("INFERENCE_PRECISION_HINT") != ov.Type.bf16:  # OpenVINO falls back to f32 silently
        return {"skipped": f"OpenVINO compiled the GEMM in {compiled.get_property('INFERENCE_PRECISION_HINT').get_type_name()}, not bf16"}
    req = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    req.infer(feeds)  # warm-up
    best = min(timed(lambda: req.infer(feeds)) for _ in range(repeats))
    return {"rate": 2 * n**3 / best / 1e9, "best_ms": best * 1e3}


def onnx_flops(path: Path, feeds: dict[str, np.ndarray]) -> dict:
    """Conv / MatMul / Gemm FLOPs (2 x multiply-adds) of one run of an ONNX graph on ``feeds``.

    Shapes come from one onnxruntime CPU run with those operators' tensors exposed
    as outputs, so symbolic and computed shapes are exact. Needs the ``onnx`` package.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    ops = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    existing = {o.name for o in model.graph.output}
    wanted: list[str] = []
    for n in ops:
        for name in (n.input[0], n.input[1], n.output[0]):
            if name not in inits and name not in existing and name not in wanted:
                wanted.append(name)
    model.graph.output.extend([onnx.ValueInfoProto(name=name) for name in wanted])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = dict(inits)
    shapes.update({k: list(v.shape) for k, v in zip(names, sess.run(names, feeds), strict=True)})
    shapes.update({k: list(v.shape) for k, v in feeds.items()})
    by_op: dict[str, float] = {}
    for n in ops:
        w, y = shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "Conv":
            f = 2.0 * np.prod(y) * np.prod(w[1:])  # w: (Cout, Cin/groups, *kernel)
        else:
            a = shapes[n.input[0]]
            trans_a = n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute)
            f = 2.0 * np.prod(y) * (a[0] if trans_a else a[-1])
        by_op[n.op_type] = by_op.get(n.op_type, 0.0) + float(f)
    return {"flops": sum(by_op.values()), "by_op": by_op, "nodes": len(ops)}


def cost_model(b, rows: list[dict], peak: dict, live: list[Backend], lengths: Sequence[float], rng: np.random.Generator,
               bf16_peak: dict | None = None) -> dict:
    """Each denoiser row's (one step at batch 2, and one call as the edit makes it) achieved
    GFLOP/s and its fraction of the peak of its precision: the CPU float32 matmul ``peak``, or
    for the ``ov-cpu-bf16`` rows ``bf16_peak`` (:func:`openvino_bf16_peak`)."""
    fpf = b.models["denoiser"].flops_per_frame
    cost: dict = {"matmul_peak": peak, "flops_per_frame_manifest": fpf, "denoiser": []}
    steps = [r for r in rows if r["component"] == "denoiser_step"]
    calls = [r for r in rows if r["component"] == "denoiser_call"]
    frames3 = next((r["frames_padded"] for r in steps if r["clip_s"] == TARGET_CLIP_S), None)
    if frames3 is not None:
        try:
            feeds = denoiser_feeds(b, frames3, rng)
            fl = onnx_flops(b.model_path("denoiser"), feeds)
            per_frame = fl["flops"] / (2 * frames3)
            cost["onnx_graph"] = {"clip_s": TARGET_CLIP_S, "frames": frames3, "batch": 2, "flops": fl["flops"], "by_op": fl["by_op"],
                                  "flops_per_frame": per_frame, "manifest_ratio": per_frame / fpf if fpf else None}
        except ImportError:
            cost["onnx_graph"] = {"skipped": "the onnx package is not installed (pip install 'emort[export]')"}
        except Exception as e:  # the cross-check is optional; never lose the run for it
            cost["onnx_graph"] = {"skipped": f"could not count graph FLOPs: {e}"}
    per_frame = fpf or cost.get("onnx_graph", {}).get("flops_per_frame")
    cost["flops_source"] = "manifest" if fpf else ("onnx graph" if per_frame else None)
    if not per_frame:
        return cost
    gpu = {be.name for be in live if be.device in ("cuda", "tensorrt")}
    for r in steps + calls:
        flops = per_frame * r["frames_padded"] * r["batch"]
        achieved = flops / (r["median_ms"] / 1e3) / 1e9
        bf16 = r["backend"] == "ov-cpu-bf16"
        own = (bf16_peak or {}).get("rate") if bf16 else peak["gflops"]
        cost["denoiser"].append({"backend": r["backend"], "call": "edit" if r["component"] == "denoiser_call" else "step",
                                 "clip_s": r["clip_s"], "frames_padded": r["frames_padded"], "batch": r["batch"],
                                 "gflop": flops / 1e9, "gflops_achieved": achieved, "peak_precision": "bf16" if bf16 else "fp32",
                                 "fraction_of_peak": None if r["backend"] in gpu or not own else achieved / own})
    return cost
