"""``python benchmarks/ov_static_shapes.py``: would compiling the bf16 denoiser per input shape pay?

OpenVINO compiles the denoiser once with dynamic shapes (``emort.runtime.openvino_cpu``). A copy
reshaped to one input shape and compiled for it alone runs that shape faster; this measures by
how much, for the shapes the edit makes (one step at batch 2, one clip's edit call at batch 8,
a long file's 2048-frame window), in alternating pairs of calls (the order flips every pair),
with the time one such compilation takes. Both copies are compiled as the runtime compiles the
dynamic one (bf16 inference precision, latency hint, the same threads). Needs OpenVINO and a
CPU with AMX-BF16 or AVX512-BF16.

    python benchmarks/ov_static_shapes.py --json docs/bench/0.23/ov_static_shapes.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable (benchmarks.*, emort)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.runtime_rows import denoiser_feeds  # noqa: E402
from benchmarks.timing import machine_info  # noqa: E402

#: (frames, batch): a 1 s and a 3 s clip's step, the 3 s and 10 s clips' edit calls, a long file's window.
SHAPES = ((87, 2), (259, 2), (259, 8), (862, 8), (2048, 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=40, help="alternating pairs per shape (a third of it for shapes over 800 frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    from emort.runtime.bundle import load_bundle
    from emort.runtime.openvino_cpu import bf16_status

    ok, why = bf16_status()
    if not ok:
        print(f"skipped: {why}")
        return 0
    import openvino as ov

    b = load_bundle()
    path = str(b.model_path("denoiser"))
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": a.threads}
    core = ov.Core()
    dynamic = core.compile_model(path, "CPU", config).create_infer_request()
    rng = np.random.default_rng(0)
    rows = []
    for frames, batch in SHAPES:
        one = denoiser_feeds(b, frames, rng)
        feeds = {k: np.concatenate([v] * (batch // 2)) for k, v in one.items()}
        model = core.read_model(path)
        model.reshape({k: ov.PartialShape(list(v.shape)) for k, v in feeds.items()})
        t0 = time.perf_counter()
        static = core.compile_model(model, "CPU", config).create_infer_request()
        compile_s = time.perf_counter() - t0
        for _ in range(3):
            dynamic.infer(feeds)
            static.infer(feeds)
        td, ts = [], []
        for i in range(a.pairs if frames < 800 else max(3, a.pairs // 3)):
            for req, out in ((dynamic, td), (static, ts)) if i % 2 == 0 else ((static, ts), (dynamic, td)):
                t1 = time.perf_counter()
                req.infer(feeds)
                out.append(time.perf_counter() - t1)
        td_a, ts_a = np.array(td) * 1e3, np.array(ts) * 1e3
        rows.append({"frames": int(feeds["x"].shape[2]), "batch": batch, "pairs": len(td), "dynamic_ms": float(np.median(td_a)),
                     "static_ms": float(np.median(ts_a)), "pair_ratio": float(np.median(td_a / ts_a)), "compile_static_s": compile_s})
        r = rows[-1]
        print(f"frames {r['frames']:5d} batch {batch}: dynamic {r['dynamic_ms']:7.2f} ms, static {r['static_ms']:7.2f} ms, "
              f"median ratio of pairs {r['pair_ratio']:.2f}x, compiling the static copy {compile_s:.2f} s", flush=True)
    report = {"machine": machine_info(a.threads), "openvino": ov.get_version(), "bf16": why, "rows": rows}
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
