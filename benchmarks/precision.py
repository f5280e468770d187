"""``python benchmarks/precision.py``: does a bf16 denoiser keep the edit, and the judges' verdicts?

The float32 edit (onnxruntime) against the same edit with the denoiser in bfloat16 (OpenVINO,
``Enhancer.load(precision="bf16")``), and, as the yardstick, against the float32 edit with
another noise seed (``seed=1``: the edit is an average over noised copies of the source, so the
seed is an arbitrary choice the user never sees). On clips of VALIDATION speakers of the three
corpora (EmoDB 10, RAVDESS 19 and 20, nEMO MP0), each clip toward its own emotion at the bundle's
defaults, per clip: the correlation of the two edits (edited minus source log-mel) over all
time-frequency cells, the relative mean |difference|, and the mean |difference| of the edited
log-mels in dB. Then, with ``--reports``, the three judges' UA gains from ``emort eval enhance``
reports of the same validation speakers (fp32, bf16, fp32 with ``--edit-seed 1``), per corpus
and judge, the differences side by side.

    python benchmarks/precision.py --json docs/bench/0.20/precision.json \\
        --reports fp32=reports/prec/fp32 bf16=reports/prec/bf16 seed1=reports/prec/fp32_seed1

Needs OpenVINO (``pip install 'emort[openvino]'``) and a CPU with AMX-BF16 or AVX512-BF16; nothing is written
into the repository unless ``--json`` says so. No timing here: the speeds are ``emort bench``'s
``ov-cpu-bf16`` rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable (benchmarks.*, emort)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info  # noqa: E402

NATS_TO_DB = 10 / np.log(10)


def validation_clips(data: Path, n: int) -> list[tuple[Path, str]]:
    """``n`` clips per corpus of the validation speakers, with their emotion (the corpora's readers)."""
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.splits import VAL_SPEAKERS

    specs = [f"emodb={data / 'emodb'}", f"ravdess={data / 'ravdess'}", f"nemo={data / 'nemo'}"]
    items = [i for i in only_canonical(list(read_specs(specs))) if i.speaker_key in set(VAL_SPEAKERS)]
    out = []
    for corpus in ("emodb", "ravdess", "nemo"):
        mine = sorted((i for i in items if i.corpus == corpus), key=lambda i: str(i.path))
        out += [(Path(i.path), i.emotion) for i in mine[:: max(1, len(mine) // n)][:n]]
    return out


def compare(a: np.ndarray, b: np.ndarray, src: np.ndarray) -> dict:
    da, db = a - src, b - src
    return {"edit_corr": float(np.corrcoef(da.ravel(), db.ravel())[0, 1]),
            "edit_rel_diff": float(np.abs(db - da).mean() / np.abs(da).mean()),
            "edited_mean_abs_diff_db": float(np.abs(b - a).mean() * NATS_TO_DB),
            "edit_mean_abs_db": float(np.abs(da).mean() * NATS_TO_DB)}


def judge_table(reports: dict[str, Path]) -> dict:
    """Per corpus x judge UA gain (emort row minus original) of each report, and bf16 / seed-1 minus fp32."""
    if "fp32" not in reports:
        raise SystemExit("--reports needs fp32=DIR (the float32 report the others are compared with)")
    gains = {}
    for name, d in reports.items():
        if not (Path(d) / "report.json").is_file():
            raise SystemExit(f"--reports {name}={d}: no report.json there (an `emort eval enhance --out` folder)")
        rep = json.loads((Path(d) / "report.json").read_text())
        ran = (rep.get("precision") or {}).get("ran", "fp32")  # reports before 0.20 ran float32
        if ran != ("bf16" if name == "bf16" else "fp32"):
            raise SystemExit(f"{d}: its denoiser ran in {ran}, not as its name {name!r} says")
        gains[name] = next(r for r in rep["rows"] if r["condition"] == "emort")["gain"]
    out = {"gain": gains, "diff": {}}
    base = gains["fp32"]
    for other in gains:
        if other != "fp32":
            out["diff"][other] = {c: {j: gains[other][c][j] - base[c][j] for j in base[c]} for c in base}
    return out


def fidelity(clips: int, threads: int, lines: list[str]) -> dict:
    """Per clip bf16-vs-fp32 and seed-1-vs-fp32 edit comparisons; appends the Markdown table to ``lines``."""
    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer

    fp32 = Enhancer.load(device="cpu", threads=threads, precision="fp32")
    bf16 = Enhancer.load(device="cpu", threads=threads, precision="bf16")
    rows = []
    for path, emotion in validation_clips(shared_data_dir(), clips):
        a = read_audio(path)
        e32 = fp32.enhance(a.samples, a.sample_rate, emotion, score_output=False)
        e16 = bf16.enhance(a.samples, a.sample_rate, emotion, score_output=False)
        s1 = fp32.enhance(a.samples, a.sample_rate, emotion, score_output=False, seed=1)
        rows.append({"clip": path.name, "emotion": emotion, "bf16": compare(e32.mel, e16.mel, e32.source_mel),
                     "seed1": compare(e32.mel, s1.mel, e32.source_mel)})
        print(f"{path.name:28s} {emotion:8s} bf16 corr {rows[-1]['bf16']['edit_corr']:.4f} rel {rows[-1]['bf16']['edit_rel_diff']:.3f} | "
              f"seed 1 corr {rows[-1]['seed1']['edit_corr']:.4f} rel {rows[-1]['seed1']['edit_rel_diff']:.3f}", flush=True)
    med = {k: {m: float(np.median([r[k][m] for r in rows])) for m in rows[0][k]} for k in ("bf16", "seed1")}
    worst = {k: {"edit_corr_min": float(min(r[k]["edit_corr"] for r in rows)), "edit_rel_diff_max": float(max(r[k]["edit_rel_diff"] for r in rows))}
             for k in ("bf16", "seed1")}
    lines += [f"\n# bf16 denoiser vs float32, {len(rows)} clips of validation speakers (own emotion, bundle defaults)\n",
             "| against the fp32 edit (seed 0) | edit corr. median (min) | edit rel. diff median (max) | edited log-mel mean abs diff, dB (median) |",
             "|---|---:|---:|---:|"]
    for k, label in (("bf16", "bf16 denoiser, seed 0"), ("seed1", "fp32, seed 1 (yardstick)")):
        lines.append(f"| {label} | {med[k]['edit_corr']:.4f} ({worst[k]['edit_corr_min']:.4f}) | {med[k]['edit_rel_diff']:.3f} "
                     f"({worst[k]['edit_rel_diff_max']:.3f}) | {med[k]['edited_mean_abs_diff_db']:.3f} |")
    lines.append(f"\nThe fp32 edit's own mean |change|: {med['bf16']['edit_mean_abs_db']:.3f} dB (median over clips).")
    return {"rows": rows, "median": med, "worst": worst}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8, help="clips per corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reports", nargs="*", default=[], metavar="NAME=DIR", help="emort eval enhance report folders: fp32= (seed 0), and any of bf16=, seed1=, seed2=, ...")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from emort.runtime.openvino_cpu import bf16_status

    ok, why = bf16_status()
    lines: list[str] = []
    out: dict = {"machine": machine_info(args.threads)}
    if ok:
        out.update(fidelity(args.clips, args.threads, lines))
    else:  # the judges' table can still be read from reports made on another machine
        print(f"bf16 fidelity cannot run here: {why}" + ("" if args.reports else
              "; --reports fp32=DIR seed1=DIR [bf16=DIR] still prints the judges' table"), file=sys.stderr)
        out["fidelity_skipped"] = why
        if not args.reports:
            return 2
    if args.reports:
        bad = [r for r in args.reports if "=" not in r]
        if bad:
            raise SystemExit(f"--reports {bad[0]}: give NAME=DIR (fp32=, bf16=, seed1=, seed2=, ...)")
        judges = judge_table({k: Path(v) for k, v in (r.split("=", 1) for r in args.reports)})
        out["judges"] = judges
        lines += ["\n# judges' UA gain over the original, validation speakers (emort eval enhance)\n",
                  "| corpus | judge | " + " | ".join(others := ["fp32", *sorted(n for n in judges["gain"] if n != "fp32")])
                  + " | " + " | ".join(f"{n} - fp32" for n in others[1:]) + " |", "|---|---|" + "---:|" * (2 * len(others) - 1)]
        g = judges["gain"]
        d = judges["diff"]
        for c in g["fp32"]:
            for j in g["fp32"][c]:
                cells = [f"{100 * g[n][c][j]:+.1f}" for n in others]
                cells += [f"{100 * d[n][c][j]:+.1f}" for n in others[1:]]
                lines.append(f"| {c} | {j} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        args.json.with_suffix(".md").write_text("\n".join(lines).lstrip() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
