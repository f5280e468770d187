"""``python benchmarks/prosody_speed.py``: what the prosody stage costs, in-process and whole-process.

In-process: ``Enhancer.enhance`` on one real clip per rate (EmoDB 16 kHz, nEMO 24 kHz, RAVDESS
48 kHz, cut or looped to ``--seconds``), at the defaults without prosody, with ``--prosody``
(the ``stretch`` renderer) and with ``--prosody --prosody-renderer world``; median of ``--repeats`` runs after a
warm-up, real-time factor = seconds / audio seconds; the renderers alone (Signalsmith Stretch
with the envelope restored, WORLD analysis-synthesis) timed beside. Whole-process: ``emort enhance FILE``
as a fresh process for the same three configurations (median of ``--process-repeats``), start-up
and file I/O included. Prints a table, writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info, measure  # noqa: E402

CONFIGS = {"spectral": {}, "prosody-stretch": {"prosody": True, "prosody_renderer": "stretch"},
           "prosody-world": {"prosody": True, "prosody_renderer": "world"}}
CLI_FLAGS = {"spectral": [], "prosody-stretch": ["--prosody", "--prosody-renderer", "stretch"],
             "prosody-world": ["--prosody", "--prosody-renderer", "world"]}


def clip(data: Path, corpus: str, seconds: float) -> tuple[np.ndarray, int]:
    from emort.runtime.audio import read_audio, to_mono

    a = read_audio(corpus_files(data, corpus)[0])
    x = to_mono(a.samples)
    n = int(seconds * a.sample_rate)
    return np.resize(x, n).astype(np.float32), int(a.sample_rate)  # np.resize loops a short clip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--process-repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from emort.runtime.enhancer import Enhancer
    from emort.runtime.prosody import ProsodyEdit, render_prosody

    data = shared_data_dir()
    enh = Enhancer.load(device="cpu")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="emort-prosody-bench-"))
    edit = ProsodyEdit(semitones=4.0, f0_range=1.3, tempo=0.95)
    for corpus in ("emodb", "nemo", "ravdess"):
        x, sr = clip(data, corpus, args.seconds)
        for name, over in CONFIGS.items():
            m = measure(lambda x=x, sr=sr, over=over: enh.enhance(x, sr, "angry", **over), warmup=1, repeats=args.repeats, budget_s=60)
            rows.append({"part": "enhance", "config": name, "corpus": corpus, "sample_rate": sr, "rtf": m["median_ms"] / 1e3 / args.seconds, **m})
        for r in ("world", "stretch"):
            m = measure(lambda x=x, sr=sr, r=r: render_prosody(x, sr, edit, r), warmup=1, repeats=args.repeats, budget_s=60)
            rows.append({"part": "render only", "config": r, "corpus": corpus, "sample_rate": sr, "rtf": m["median_ms"] / 1e3 / args.seconds, **m})
        import soundfile as sf

        wav = tmp / f"{corpus}.wav"
        sf.write(wav, x, sr, subtype="PCM_16")
        for name, flags in CLI_FLAGS.items():
            times = []
            for k in range(args.process_repeats):
                out = tmp / f"out_{corpus}_{name}_{k}.wav"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "emort.cli.app", "enhance", str(wav), "-e", "angry", "-o", str(out), *flags],
                               check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
            rows.append({"part": "whole process", "config": name, "corpus": corpus, "sample_rate": sr,
                         "median_ms": 1e3 * float(np.median(times)), "runs": len(times), "rtf": float(np.median(times)) / args.seconds})
    report = {"machine": machine_info(threads=0), "seconds": args.seconds, "rows": rows}
    print(f"CPU: {report['machine']['cpu_model']}; {args.seconds:g} s clips; medians\n")
    print(f"{'part':14s} {'config':16s} {'corpus':8s} {'rate':>6s} {'ms':>9s} {'RTF':>7s}")
    for r in rows:
        print(f"{r['part']:14s} {r['config']:16s} {r['corpus']:8s} {r['sample_rate']:6d} {r['median_ms']:9.1f} {r['rtf']:7.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
