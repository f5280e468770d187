"""``python benchmarks/bundle_ab.py --old OLD_BUNDLE``: one bundle's denoiser graph against another's,
side by side in one process, and what the change does to the edit.

* **denoiser**: the two graphs' sessions (``Enhancer.load``'s settings: all graph optimisations,
  the process's threads, emort's thread waiting) on the same random inputs, alternating which runs first, for
  ``--runs`` pairs per shape: one step at a 3 s clip (batch 2 x 264 frames), the edit's call
  (batch 8 x 264) and a 1 s clip's step (batch 2 x 88); medians and their ratio.
* **edit**: ``Enhancer.enhance`` with each bundle at its defaults on validation speakers' clips
  (EmoDB 10, RAVDESS 19, nEMO MP0; ``--clips`` of each) toward two emotions: the largest
  absolute difference between the two outputs, against the largest change the edit makes.

Made for a graph rewrite that must keep the edit (0.14's 4-D denoiser): the old bundle is a copy
of the shipped one with the earlier graph, e.g.
``cp -r emort/assets/default_bundle /tmp/b013 && git show b3a0a73:emort/assets/default_bundle/denoiser.onnx > /tmp/b013/denoiser.onnx && git show b3a0a73:emort/assets/default_bundle/manifest.json > /tmp/b013/manifest.json``.
Prints a table, writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.runtime_rows import denoiser_feeds, edit_call_feeds  # noqa: E402
from benchmarks.timing import machine_info, print_and_write  # noqa: E402

#: (frames, what, the edit's call: its 4 noise levels batched with the unconditional rows; else one step)
SHAPES = ((264, "step, 3 s", False), (264, "edit call, 3 s", True), (88, "step, 1 s", False))


def denoiser_rows(old, new, runs: int) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for frames, what, edit in SHAPES:
        feeds = edit_call_feeds(new.bundle, frames, 4, None, rng) if edit else denoiser_feeds(new.bundle, frames, rng)
        batch = feeds["x"].shape[0]
        sessions = {"old": old.denoiser, "new": new.denoiser}
        for s in sessions.values():
            for _ in range(3):
                s(**feeds)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(runs):
            for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
                t0 = time.perf_counter()
                sessions[k](**feeds)
                times[k].append(time.perf_counter() - t0)
        o, n = (1e3 * statistics.median(times[k]) for k in ("old", "new"))
        rows.append({"call": what, "batch": batch, "frames": frames, "old_ms": o, "new_ms": n, "speed_up": o / n})
    return rows


def edit_rows(old, new, data: Path, clips: int) -> list[dict]:
    import soundfile as sf

    rows = []
    for corpus in ("emodb", "ravdess", "nemo"):
        for f in corpus_files(data, corpus, validation=True)[:clips]:
            wav, sr = sf.read(str(f), dtype="float32")
            for emotion in ("angry", "sad"):
                a, b = old.enhance(wav, sr, emotion), new.enhance(wav, sr, emotion)
                rows.append({"file": f.name, "emotion": emotion, "max_abs_diff": float(np.abs(a.wav - b.wav).max()),
                             "max_abs_edit": float(np.abs(a.wav - wav).max()), "change_db": [a.change_db, b.change_db]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the bundle to compare against")
    ap.add_argument("--new", type=Path, default=None, help="the bundle measured (default: the shipped one)")
    ap.add_argument("--runs", type=int, default=40, help="pairs of calls per shape")
    ap.add_argument("--clips", type=int, default=3, help="validation clips per corpus for the edit comparison")
    ap.add_argument("--data", type=Path, default=None, help="folder with the corpora (default: $EMORT_SHARED_DATA or ../shared/data)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from emort import Enhancer
    from emort.runtime.session import default_threads, limit_blas_threads

    limit_blas_threads(1)  # as the CLI runs
    old, new = Enhancer.load(args.old, device="cpu"), Enhancer.load(args.new, device="cpu")
    report = {"machine": machine_info(default_threads()), "old": str(args.old), "new": str(new.bundle.path),
              "denoiser": denoiser_rows(old, new, args.runs)}
    data = args.data or shared_data_dir()
    report["edit"] = edit_rows(old, new, data, args.clips) if data.is_dir() else []
    lines = [f"denoiser graphs, {args.runs} pairs of calls per shape, alternating (machine: {report['machine'].get('cpu_model', '?')}, load average {report['machine'].get('load_average', ['?'])[0]})", "",
             "| call | batch x frames | old ms | new ms | speed-up |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['call']} | {r['batch']} x {r['frames']} | {r['old_ms']:.2f} | {r['new_ms']:.2f} | {r['speed_up']:.3f}x |" for r in report["denoiser"]]
    if report["edit"]:
        worst = max(report["edit"], key=lambda r: r["max_abs_diff"] / max(r["max_abs_edit"], 1e-12))
        lines += ["", f"edit ({len(report['edit'])} enhancements of validation clips): outputs differ by at most "
                  f"{max(r['max_abs_diff'] for r in report['edit']):.2e} of full scale; worst against the edit's own largest change: "
                  f"{worst['max_abs_diff'] / worst['max_abs_edit']:.2e} ({worst['file']}, {worst['emotion']})"]
    print_and_write("\n".join(lines), report, args.json)


if __name__ == "__main__":
    main()
