"""``python benchmarks/device_cli.py CLIPS --devices cpu,cuda``: `emort enhance` and `emort score` as
whole processes on each device, in turn, and what the devices' outputs differ by.

Each run is a fresh process (``python -m emort``), the devices alternating for ``--pairs`` rounds
after one uncounted round; medians of wall and CPU seconds (user + system of the child). The first
counted round's outputs are compared with the first device's, file by file: `enhance`'s 16-bit
samples (largest difference in steps of the last bit, and the RMS of the difference relative to
the output's) and the applied change in dB and the multiplier that reached it; `score`'s predictions and largest probability
difference. Prints a table, writes JSON (``--json``, and the table beside it as ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli_throughput import audio_seconds  # noqa: E402
from benchmarks.paired_cli import compare_reports  # noqa: E402
from benchmarks.timing import machine_info, print_and_write, run_timed  # noqa: E402

JOBS = {
    "enhance": lambda clips, out, dev: ["enhance", str(clips), "-e", "angry", "--device", dev, "-o", str(out),
                                        "--json", str(out) + ".json"],
    "score": lambda clips, out, dev: ["score", str(clips), "--device", dev, "--json", str(out) + ".json"],
}


def _compare_enhance(ref: Path, other: Path) -> dict:
    import soundfile as sf

    lsb, rel, dchange, dguide = [], [], [], []
    for p in sorted(ref.rglob("*.wav")):
        a, _ = sf.read(str(p), dtype="int16")
        b, _ = sf.read(str(other / p.relative_to(ref)), dtype="int16")
        d = a.astype(np.int64) - b.astype(np.int64)
        lsb.append(int(np.abs(d).max()))
        rel.append(float(np.sqrt(np.mean(d.astype(float) ** 2)) / max(np.sqrt(np.mean(a.astype(float) ** 2)), 1e-9)))
    ra = {r["output"]: r for r in json.loads(Path(str(ref) + ".json").read_text())["results"] if r.get("output")}
    rb = {r["output"].replace(str(other), str(ref)): r
          for r in json.loads(Path(str(other) + ".json").read_text())["results"] if r.get("output")}
    for k, r in ra.items():
        if "change_db" in r and k in rb:
            dchange.append(abs(r["change_db"] - rb[k]["change_db"]))
            dguide.append(abs(r["guidance"] - rb[k]["guidance"]) / max(abs(r["guidance"]), 1e-9))
    return {"files": len(lsb), "max_lsb": max(lsb, default=None), "median_max_lsb": statistics.median(lsb) if lsb else None,
            "max_rel_rms": max(rel, default=None), "max_change_db_diff": max(dchange, default=None),
            "max_guidance_rel_diff": max(dguide, default=None)}


def _compare_score(ref: Path, other: Path) -> dict:
    c = compare_reports(Path(str(ref) + ".json"), Path(str(other) + ".json"))  # the same files, scored twice
    return {"files": c["files"], "same_prediction": c["files"] - c["predictions_differ"], "max_probability_diff": c["max_abs_diff"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", type=Path, help="folder of audio clips")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated emort --device values (default cpu,cuda)")
    ap.add_argument("--jobs", default="enhance,score", help="comma-separated: enhance, score")
    ap.add_argument("--pairs", type=int, default=3, help="counted rounds (default 3)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d]
    jobs = [j for j in args.jobs.split(",") if j]
    if not args.clips.is_dir() or args.pairs < 1 or not devices or any(j not in JOBS for j in jobs):
        ap.error("CLIPS must be a folder, --pairs >= 1, --jobs among enhance, score")
    files = sorted(p for p in args.clips.rglob("*") if p.is_file() and not p.name.startswith("."))
    seconds = audio_seconds(files)
    work = Path(tempfile.mkdtemp(prefix="emort-device-cli-"))
    rows, report = [], {"machine": machine_info(os.cpu_count() or 1), "clips": str(args.clips),
                        "audio_seconds": round(seconds, 2), "pairs": args.pairs, "jobs": {}}
    try:
        for job in jobs:
            times: dict[str, list[tuple[float, float]]] = {d: [] for d in devices}
            first: dict[str, Path] = {}
            for rnd in range(args.pairs + 1):
                order = devices if rnd % 2 == 0 else devices[::-1]
                for dev in order:
                    out = work / f"{job}-{dev}-{rnd}"
                    r, wall, cpu = run_timed([sys.executable, "-m", "emort", *JOBS[job](args.clips, out, dev)])
                    if r.returncode != 0:
                        print(r.stdout[-2000:], r.stderr[-2000:], sep="\n")
                        raise SystemExit(f"{job} on {dev} exited {r.returncode}")
                    if rnd == 0:
                        continue  # warm-up round: file caches, bytecode
                    times[dev].append((wall, cpu))
                    first.setdefault(dev, out)
            entry = {}
            for dev in devices:
                wall = statistics.median(w for w, _ in times[dev])
                cpu = statistics.median(c for _, c in times[dev])
                cmp = None
                if dev != devices[0]:
                    cmp = (_compare_enhance if job == "enhance" else _compare_score)(first[devices[0]], first[dev])
                entry[dev] = {"wall_s": [round(w, 3) for w, _ in times[dev]], "median_wall_s": round(wall, 3),
                              "median_cpu_s": round(cpu, 3), "rtf": round(wall / seconds, 4), f"vs_{devices[0]}": cmp}
                rows.append((job, dev, wall, cpu, wall / seconds, cmp))
            report["jobs"][job] = entry
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = report["machine"]
    lines = [f"`emort` whole process on {len(files)} files ({seconds:.0f} s of audio), "
             f"{m['cpu_model']}, {m['cores']} cores{', ' + m['gpu'] if m.get('gpu') else ''}; median of {args.pairs} runs",
             "", "| job | device | wall s | CPU s | RTF | outputs vs the first device |", "|---|---|---:|---:|---:|---|"]
    for job, dev, wall, cpu, rtf, cmp in rows:
        what = "" if cmp is None else ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in cmp.items())
        lines.append(f"| {job} | {dev} | {wall:.2f} | {cpu:.2f} | {rtf:.4f} | {what} |")
    print_and_write("\n".join(lines), report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
