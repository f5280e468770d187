"""``python benchmarks/quantize.py``: is an int8 denoiser fast enough, and faithful enough, to ship?

Statically quantises the bundle's ``denoiser.onnx`` with onnxruntime's QDQ tooling (int8
weights per output channel, uint8 activations), calibrated on the denoiser inputs that
``Enhancer.enhance`` feeds it for clips of TRAINING speakers (EmoDB 09, RAVDESS actor 01; the
inputs are captured from the fp32 runs), then on clips of VALIDATION speakers (EmoDB 10,
RAVDESS actor 19) measures, in one run:

* latency of one denoiser call as the edit makes it (median of repeated runs), fp32 vs int8;
* latency of ``Enhancer.enhance`` end to end, fp32 vs int8 denoiser;
* the edit's fidelity: the int8 edit (edited minus source log-mel) against the fp32 one,
  relative mean |difference| and correlation over all time-frequency cells, per clip.

Nothing is written into the repository; ``--json FILE`` writes the figures. Needs the
``[export]`` extra's onnx and onnxruntime's quantisation tools (part of onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable (benchmarks.*, emort)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import shared_data_dir  # noqa: E402
from benchmarks.timing import cpu_model, machine_info, measure  # noqa: E402


def _clips(data: Path, emodb: str, actor: str, n: int) -> list[Path]:
    e = sorted((data / "emodb" / "wav").glob(f"{emodb}*.flac"))[:n]
    r = sorted((data / "ravdess" / f"Actor_{actor}").glob("*.flac"))[: 2 * n : 2]
    return e + r


class _Tap:
    """Records every feed of a model, then calls it."""

    def __init__(self, model, store: list):
        self.model, self.store = model, store

    def __call__(self, **feeds):
        self.store.append({k: np.array(v) for k, v in feeds.items()})
        return self.model(**feeds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6, help="clips per corpus for calibration and for evaluation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.session import load_model

    data = shared_data_dir()
    enh = Enhancer.load(device="cpu", threads=args.threads)
    fp32 = enh.denoiser
    feeds: list[dict] = []
    enh.denoiser = _Tap(fp32, feeds)
    for f in _clips(data, "09", "01", args.clips):  # training speakers only
        a = read_audio(f)
        enh.enhance(a.samples, a.sample_rate, "angry", score_output=False)
    enh.denoiser = fp32

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "denoiser_int8.onnx"
        cwd = Path.cwd()
        os.chdir(tmp)  # onnxruntime's shape inference drops temporary files into the working directory
        try:
            quant_pre_process(str(enh.bundle.model_path("denoiser")), str(pre), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        int8 = load_model(q, "cpu", args.threads, name="denoiser")
        rows = []
        for f in _clips(data, "10", "19", args.clips):  # validation speakers
            a = read_audio(f)
            seen: list[dict] = []
            enh.denoiser = _Tap(fp32, seen)
            e32 = enh.enhance(a.samples, a.sample_rate, "angry", score_output=False)
            enh.denoiser = int8
            e8 = enh.enhance(a.samples, a.sample_rate, "angry", score_output=False)
            t8 = measure(lambda a=a: enh.enhance(a.samples, a.sample_rate, "angry", score_output=False), warmup=1, repeats=5, budget_s=3)
            enh.denoiser = fp32
            t32 = measure(lambda a=a: enh.enhance(a.samples, a.sample_rate, "angry", score_output=False), warmup=1, repeats=5, budget_s=3)
            call = seen[0]
            c32 = measure(lambda call=call: fp32(**call), warmup=2, repeats=10, budget_s=2)
            c8 = measure(lambda call=call: int8(**call), warmup=2, repeats=10, budget_s=2)
            d32, d8 = e32.mel - e32.source_mel, e8.mel - e8.source_mel
            rows.append({
                "clip": f.name, "seconds": round(len(a.samples) / a.sample_rate, 2), "denoiser_batch": int(call["x"].shape[0]),
                "denoiser_ms_fp32": c32["median_ms"], "denoiser_ms_int8": c8["median_ms"],
                "enhance_ms_fp32": t32["median_ms"], "enhance_ms_int8": t8["median_ms"],
                "edit_rel_diff": float(np.abs(d8 - d32).mean() / np.abs(d32).mean()),
                "edit_corr": float(np.corrcoef(d32.ravel(), d8.ravel())[0, 1]),
                "change_db_fp32": e32.change_db, "change_db_int8": e8.change_db,
            })
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k not in ("clip",)}
    print(f"# int8 (QDQ) denoiser vs fp32, {len(rows)} validation clips, CPU {cpu_model()}, {args.threads} threads\n")
    print("| clip | s | denoiser ms fp32 / int8 | enhance ms fp32 / int8 | edit rel. diff | edit corr. |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows + [{"clip": "**median**", **med}]:
        print(f"| {r['clip']} | {r['seconds']:.2f} | {r['denoiser_ms_fp32']:.1f} / {r['denoiser_ms_int8']:.1f} | "
              f"{r['enhance_ms_fp32']:.1f} / {r['enhance_ms_int8']:.1f} | {r['edit_rel_diff']:.3f} | {r['edit_corr']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(args.threads), "rows": rows, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
