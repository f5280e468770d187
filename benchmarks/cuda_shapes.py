"""``python benchmarks/cuda_shapes.py CLIPS``: what a clip of a new length costs on onnxruntime's CUDA
provider, under its cuDNN convolution-search settings, against the CPU.

Clips of natural lengths give every graph a new input shape; onnxruntime's CUDA provider then
chooses the convolution algorithms for that shape again (``cudnn_conv_algo_search``:
``EXHAUSTIVE`` times every algorithm, onnxruntime's own default; ``HEURISTIC`` asks cuDNN's
heuristics, emort's choice until 0.32; ``DEFAULT`` takes implicit-precomputed GEMM without a
search; emort's since 0.33, with TF32 off) and grows its memory arena. Each variant runs in a fresh process: ``Enhancer.enhance`` and
``Scorer.score`` on every clip of CLIPS once (pass 1: each length new) and again (pass 2: every
length seen), per-clip medians and totals; outputs are compared with the CPU's (largest
difference relative to the output's peak). Prints a table, writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {
    "cpu": ("cpu", None),
    "cuda-heuristic": ("cuda", {"cudnn_conv_algo_search": "HEURISTIC"}),
    "cuda-default": ("cuda", {"cudnn_conv_algo_search": "DEFAULT"}),
    "cuda-exhaustive": ("cuda", {"cudnn_conv_algo_search": "EXHAUSTIVE"}),
    "cuda-heuristic-same-arena": ("cuda", {"cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested"}),
    "cuda-default-same-arena": ("cuda", {"cudnn_conv_algo_search": "DEFAULT", "arena_extend_strategy": "kSameAsRequested"}),
    "cuda-default-no-tf32": ("cuda", {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"}),  # emort's since 0.33
}


def _one(variant: str, clips: Path, out: Path) -> dict:
    import soundfile as sf

    from emort.runtime import session
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer

    device, opts = VARIANTS[variant]
    if opts is not None:
        def provider_list(dev, trt_cache_dir=None, fp16=False):
            return [("CUDAExecutionProvider", dict(opts)), "CPUExecutionProvider"] if dev == "cuda" else ["CPUExecutionProvider"]
        session.provider_list = provider_list
    t0 = time.perf_counter()
    enh = Enhancer.load(device=device)
    sc = Scorer.load(device=device)
    load_s = time.perf_counter() - t0
    files = sorted(p for p in clips.rglob("*") if p.is_file() and not p.name.startswith("."))
    audio = [sf.read(str(p), dtype="float32") for p in files]
    res: dict = {"variant": variant, "load_s": round(load_s, 3), "clips": len(files),
                 "audio_s": round(sum(len(w) / sr for w, sr in audio), 2)}
    outs = {}
    for rnd in (1, 2):
        e_ms, s_ms = [], []
        for p, (w, sr) in zip(files, audio):
            t = time.perf_counter()
            r = enh.enhance(w, sr, "angry")
            e_ms.append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            s = sc.score(w, sr)
            s_ms.append(1e3 * (time.perf_counter() - t))
            if rnd == 1:
                outs[p.name] = r.wav
                outs[p.name + ":scores"] = np.array([s.scores[k] for k in sorted(s.scores)])
        res[f"pass{rnd}"] = {"enhance_median_ms": round(statistics.median(e_ms), 2), "enhance_total_s": round(sum(e_ms) / 1e3, 3),
                             "score_median_ms": round(statistics.median(s_ms), 2), "score_total_s": round(sum(s_ms) / 1e3, 3)}
    np.savez(out / f"{variant}.npz", **outs)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", type=Path)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._one:
        print(json.dumps(_one(args._one, args.clips, args._out)))
        return 0
    from benchmarks.timing import machine_info, print_and_write

    work = Path(tempfile.mkdtemp(prefix="emort-cuda-shapes-"))
    rows = []
    for v in args.variants.split(","):
        r = subprocess.run([sys.executable, __file__, str(args.clips), "--_one", v, "--_out", str(work)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{v}: failed\n{r.stderr[-1500:]}")
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    ref = np.load(work / "cpu.npz") if (work / "cpu.npz").exists() else None
    for row in rows:
        if ref is None or row["variant"] == "cpu":
            continue
        got = np.load(work / f"{row['variant']}.npz")
        wav = [float(np.abs(got[k] - ref[k]).max() / (np.abs(ref[k]).max() + 1e-9)) for k in ref.files if not k.endswith(":scores")]
        prob = [float(np.abs(got[k] - ref[k]).max()) for k in ref.files if k.endswith(":scores")]
        row["vs_cpu"] = {"max_rel_wav_diff": max(wav), "max_prob_diff": max(prob)}
    lines = ["| variant | load s | enhance ms/clip, new lengths | total s | same lengths again | score ms/clip, new | again | output vs CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        p1, p2 = r["pass1"], r["pass2"]
        vs = r.get("vs_cpu")
        lines.append(f"| {r['variant']} | {r['load_s']:.2f} | {p1['enhance_median_ms']:.1f} | {p1['enhance_total_s']:.2f} | "
                     f"{p2['enhance_median_ms']:.1f} | {p1['score_median_ms']:.1f} | {p2['score_median_ms']:.1f} | "
                     + (f"wav {vs['max_rel_wav_diff']:.1e}, P {vs['max_prob_diff']:.1e}" if vs else "") + " |")
    m = machine_info(0)
    head = (f"{rows[0]['clips'] if rows else 0} clips ({rows[0]['audio_s'] if rows else 0} s of audio), {m['cpu_model']}, "
            f"{m['cores']} cores{', ' + m['gpu'] if m.get('gpu') else ''}, onnxruntime {m['onnxruntime']}; medians per clip")
    print_and_write(head + "\n\n" + "\n".join(lines), {"machine": m, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
