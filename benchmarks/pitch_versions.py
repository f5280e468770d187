"""``python benchmarks/pitch_versions.py``: what the F0 analysis of each pitch-statistics version
costs, and how close its F0 is to version 1's (emort 0.9's), on real clips.

The per-speaker scorer's statistics classifier reads 13 F0 statistics of each clip
(:func:`emort.runtime.ustats.clip_pitch_stats`); the F0 comes from WORLD DIO + StoneMask on the
clip resampled to the version's rate, DIO at the version's ``speed`` (it decimates the signal for
its F0 candidates). Rows: the shipped versions (:data:`emort.runtime.ustats.PITCH_ANALYSES`) and
two variants between them. Per row, on ``--emodb`` EmoDB and ``--ravdess`` RAVDESS clips (the
first files of the corpus and of RAVDESS actor 03: training speakers), one thread, in-process:

* milliseconds per clip of DIO and of StoneMask (resampling excluded);
* against version 1: the share of frames whose voiced / unvoiced decision agrees, and the
  absolute F0 difference in semitones over the frames both call voiced (median, 95th percentile).

Each file is resampled from its own rate straight to the analysis rate; the runtime goes through
the model-rate (22,050 Hz) signal with its DC removed first, so the agreement is measured on a
close, not identical, input.

Prints a table, writes JSON (``--json``). Docs: docs/ser/cross_corpus.md, section 4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info, print_and_write  # noqa: E402

#: (label, sample rate Hz, DIO speed); the first row is the reference.
VARIANTS = (("16 kHz, DIO speed 1 (pitch version 1)", 16_000, 1), ("16 kHz, DIO speed 2", 16_000, 2),
            ("8 kHz, DIO speed 1", 8_000, 1), ("8 kHz, DIO speed 2 (pitch version 2)", 8_000, 2))


def clips(data: Path, n_emodb: int, n_ravdess: int) -> list[Path]:
    ravdess = sorted((data / "ravdess" / "Actor_03").glob("*.flac"))[:n_ravdess]
    return corpus_files(data, "emodb")[:n_emodb] + ravdess


def run(files: list[Path]) -> dict:
    import pyworld as pw
    import soundfile as sf

    from emort.runtime.audio import resample
    from emort.runtime.prosody import F0_CEIL, F0_FLOOR, frame_period_ms
    from emort.runtime.settings import DEFAULT_MEL

    period = frame_period_ms(DEFAULT_MEL)
    audio = [sf.read(str(f), dtype="float32") for f in files]
    rows, ref = [], None
    for label, rate, speed in VARIANTS:
        dio_s = sm_s = 0.0
        f0s = []
        for x, sr in audio:
            y = resample(x if x.ndim == 1 else x.mean(axis=1), sr, rate).astype(np.float64)
            t0 = time.perf_counter()
            f0, t = pw.dio(y, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=period, speed=speed)
            t1 = time.perf_counter()
            f0s.append(pw.stonemask(y, f0, t, rate))
            dio_s += t1 - t0
            sm_s += time.perf_counter() - t1
        row = {"analysis": label, "sample_rate": rate, "dio_speed": speed, "dio_ms": 1e3 * dio_s / len(audio),
               "stonemask_ms": 1e3 * sm_s / len(audio)}
        if ref is None:
            ref = f0s
        else:
            pairs = [(a[: min(len(a), len(b))], b[: min(len(a), len(b))]) for a, b in zip(ref, f0s)]
            row["voicing_agreement"] = float(np.mean(np.concatenate([(a > 0) == (b > 0) for a, b in pairs])))
            diff = np.concatenate([np.abs(12 * np.log2(b[(a > 0) & (b > 0)] / a[(a > 0) & (b > 0)])) for a, b in pairs])
            row["f0_diff_st_median"], row["f0_diff_st_p95"] = float(np.median(diff)), float(np.percentile(diff, 95))
        rows.append(row)
    return {"clips": [str(f) for f in files], "rows": rows}


def table(rep: dict) -> str:
    lines = [f"# F0 analysis per pitch-statistics version ({len(rep['clips'])} clips; {rep['machine']['cpu_model']}, one thread)", "",
             "| analysis | DIO ms per clip | StoneMask ms per clip | voicing agreement with version 1 | abs F0 difference, median / p95 (semitones) |",
             "|---|---:|---:|---:|---|"]
    for r in rep["rows"]:
        agree = f"{r['voicing_agreement']:.3f}" if "voicing_agreement" in r else "1"
        diff = f"{r['f0_diff_st_median']:.3f} / {r['f0_diff_st_p95']:.3f}" if "f0_diff_st_median" in r else "0 / 0"
        lines.append(f"| {r['analysis']} | {r['dio_ms']:.1f} | {r['stonemask_ms']:.1f} | {agree} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder holding emodb/ and ravdess/ (default: ../shared/data)")
    ap.add_argument("--emodb", type=int, default=40, help="EmoDB clips (default 40)")
    ap.add_argument("--ravdess", type=int, default=20, help="RAVDESS actor-03 clips (default 20)")
    ap.add_argument("--json", type=Path, help="write the report here (and the table beside it as .md)")
    a = ap.parse_args(argv)
    from emort.runtime.session import limit_blas_threads

    limit_blas_threads(1)
    data = a.data or shared_data_dir()
    files = clips(Path(data), a.emodb, a.ravdess)
    if not files:
        raise SystemExit(f"no clips under {data}")
    rep = {"machine": machine_info(1), **run(files)}
    print_and_write(table(rep), rep, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
