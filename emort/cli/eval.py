"""``emort eval``: SER runs and the enhancer, on held-out speakers with separate judges."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emort.cli.common import (
    BundleOpt,
    Precision,
    console,
    err_console,
    fail,
    need,
    need_features,
    sub_app,
    user_errors,
)
from emort.runtime.openvino_cpu import DEFAULT_PRECISION

eval_app = sub_app("Evaluate models honestly (held-out speakers, separate judges).")


@eval_app.command("ser")
@user_errors
def eval_ser_cmd(
    run_dir: Path = typer.Argument(Path("runs/ser"), help="SER run folder."),
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH (emodb, ravdess, nemo, cremad, tess, folders, csv), repeatable: the corpora the run was trained on, or with --cross-corpus the corpus it never saw."),
    out: Path = typer.Option(Path("reports/ser"), "--out", help="Report folder (Markdown, JSON, PNG)."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Statistics-classifier run (`emort train stats`, same split or "
                                         "--loso folds) to fuse with this per-speaker SER, as `emort score --per-speaker` does."),
    cross_corpus: Optional[str] = typer.Option(None, "--cross-corpus", help="Leave-one-corpus-out: evaluate on every clip of this corpus "
                                               "(e.g. nemo), which the run (and --stats) must not have seen; its non-test speakers "
                                               "form the validation row, its test speakers the test row."),
    ser_weight: float = typer.Option(1.0, "--ser-weight", min=0.0, help="With --stats: the SER's weight w in the fusion "
                                     "p ~ p_ser^w * p_stats (1: the plain geometric mean; 0: statistics alone; a bundle records "
                                     "the weight it ships)."),
) -> None:
    """WA / UA / P-R-F1 / confusion matrices of an SER run on its held-out test clips (or on a corpus it never saw)."""
    need("torch", "train")
    from rich.table import Table

    from emort.evaluation.ser_eval import evaluate_ser, evaluate_ser_cross_corpus
    from emort.runtime.errors import EmortError

    if out.exists() and not out.is_dir():  # before the evaluation, not after it
        raise EmortError(f"{out}: --out is a file; give a folder for the report")

    if cross_corpus:
        res = evaluate_ser_cross_corpus(run_dir, list(data), cross_corpus, out, progress=err_console.is_terminal, stats_run=stats,
                                        ser_weight=ser_weight)
        t = Table(title=f"SER leave-one-corpus-out on {cross_corpus}: {run_dir}")
        for c in ("speakers", "WA", "UA", "n", *(("SER alone UA", "stats alone UA") if stats else ())):
            t.add_column(c, justify="right")
        for row, r in res["rows"].items():
            comp = r.get("components", {})
            who = ", ".join(r["speakers"]) if len(r["speakers"]) <= 3 else f"{len(r['speakers'])} speakers"
            t.add_row(f"{row}: {who}", f"{r['wa']:.3f}", f"{r['ua']:.3f}{_interval(r)}", str(r["n"]),
                      *((f"{comp['ser']['ua']:.3f}", f"{comp['stats']['ua']:.3f}") if comp else ()))
        console.print(t)
        console.print(f"report in {out}")
        return
    res = evaluate_ser(run_dir, list(data), out, progress=err_console.is_terminal, stats_run=stats, ser_weight=ser_weight)
    for k, v in res.get("components", {}).items():
        console.print(f"{k} alone: " + ", ".join(f"{c} WA {r['wa']:.3f} / UA {r['ua']:.3f}" for c, r in v.items()))
    if res["protocol"] == "loso":
        t = Table(title=f"SER leave-one-speaker-out over {res['corpus']}: {run_dir}")
        for c in ("fold", "speaker", "WA", "UA", "n"):
            t.add_column(c, justify="right")
        for name, f in res["folds"].items():
            t.add_row(name, f["speaker"], f"{f['wa']:.3f}", f"{f['ua']:.3f}", str(f["n"]))
        m = res["fold_mean"]
        t.add_row("mean", "", f"{m['wa']:.3f}", f"{m['ua']:.3f} ± {m['ua_std']:.3f}", "")
        pooled = res["corpora"][res["corpus"]]
        t.add_row("pooled", "", f"{pooled['wa']:.3f}", f"{pooled['ua']:.3f}{_interval(pooled)}", str(pooled["n"]))
        console.print(t)
        if res["missing_folds"]:
            console.print(f"[yellow]not finished, left out:[/] {', '.join(res['missing_folds'])}")
        if res["cut_short_folds"]:
            console.print(f"[yellow]stopped by a time/step limit (included):[/] {', '.join(res['cut_short_folds'])}")
        console.print(f"report: {out}/ser_eval.md")
        return
    t = Table(title=f"SER {res['protocol']} protocol: {run_dir}")
    for c in ("corpus", "WA", "UA [95%]", "macro-F1", "n"):
        t.add_column(c, justify="right")
    for corpus, r in res["corpora"].items():
        t.add_row(corpus, f"{r['wa']:.3f}", f"{r['ua']:.3f}{_interval(r)}", f"{r['macro_f1']:.3f}", str(r["n"]))
    console.print(t)
    console.print(f"report: {out}/ser_eval.md")


def _interval(report: dict) -> str:
    """`` [lo, hi]`` of a report dict's ``ua_ci95`` (emort 0.17 on), else ``""``."""
    ci = report.get("ua_ci95")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


@eval_app.command("stats")
@user_errors
def eval_stats_cmd(
    run_dir: Path = typer.Argument(..., help="Statistics-classifier run (`emort train stats`), or its --loso folds."),
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH, repeatable: corpora holding the run's test speakers."),
    out: Path = typer.Option(Path("reports/stats"), "--out", help="Report folder (Markdown, JSON)."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="A classifier run on GE2E voice embeddings alone (`emort train stats "
                                         "--features ge2e`, the same test speakers or --loso folds) fused with RUN_DIR "
                                         "(geometric mean), as `emort score --per-speaker` fuses a 0.12 bundle's stats and "
                                         "stats_voice. A --features ustats+pitch+ge2e run (0.13's) is evaluated alone, as RUN_DIR."),
) -> None:
    """WA / UA of the statistics classifier alone on its held-out test speakers (or, for --loso
    folds, each fold's held-out speaker, pooled): what `emort score --per-speaker` gives with a bundle
    whose statistics classifier scores alone (SER weight 0, as shipped since 0.9); a run on the
    statistics and GE2E embeddings together (--features ustats+pitch+ge2e) is the per-speaker
    scorer shipped since 0.13; with --voice, fused with a classifier on the embeddings alone, as
    shipped in 0.12."""
    need("sklearn", "train")
    need("librosa", "train")
    from emort.evaluation.ser_eval import evaluate_stats

    res = evaluate_stats(run_dir, list(data), out, voice_run=voice)
    fe = res["frontend_version"]
    if fe["fitted"] != fe["evaluated"]:
        from emort.training.data import describe_frontend

        console.print(f"note: {run_dir} was fitted on log-mels of {describe_frontend(fe['fitted'])} "
                      f"and is evaluated on front end {fe['evaluated']}'s; refit it to measure what the runtime reads")
    for name, f in (res["folds"] or {}).items():
        console.print(f"{name}: UA {f['ua']:.3f} (n = {f['n']})")
    for corpus, r in res["corpora"].items():
        own = r.get("own_labels")
        extra = f"; over its {len(own['labels'])} labels: WA {own['wa']:.3f} / UA {own['ua']:.3f}" if own else ""
        console.print(f"{corpus}: WA {r['wa']:.3f} / UA {r['ua']:.3f}{_interval(r)} (n = {r['n']}{extra})")
    console.print(f"report: {out}/stats_eval.md ({res['protocol']})")


@eval_app.command("enhance")
@user_errors
def eval_enhance_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH, repeatable (judges train on the training speakers; clips come from --split)."),
    bundle: Optional[Path] = BundleOpt,
    split: str = typer.Option("val", "--split", help="val: sweep --amounts/--smooths on the validation speakers and choose the default "
                              "(worst corpus x judge gain); test: report the test speakers at the first amount and smoothing."),
    amounts: Optional[str] = typer.Option(None, "--amounts", show_default="1,1.5,2 with --split val; the bundle's with --split test",
                                          help="Edit amounts in dB (comma-separated, each 0-20)."),
    smooths: Optional[str] = typer.Option(None, "--smooths", show_default="0 with --split val; the bundle's with --split test",
                                          help="Time smoothing of the edit in seconds (comma-separated; inf = one gain per band)."),
    band_smooths: Optional[str] = typer.Option(None, "--band-smooths", show_default="0 with --split val; the bundle's with --split test",
                                               help="Smoothing of the edit over neighbouring mel bands (comma-separated integers; 0 = none)."),
    contrasts: Optional[str] = typer.Option(None, "--contrasts", show_default="uncond with --split val; the bundle's with --split test",
                                            help="The direction's reference (comma-separated): uncond (classifier-free "
                                  "guidance's) | mean (the mean of the emotion centroids)."),
    parts: Optional[str] = typer.Option(None, "--parts", show_default="full with --split val; the bundle's with --split test",
                                        help="The part of the edit applied (comma-separated): full | dynamic (without each band's fixed "
                                        "offset over the clip) | level (each frame's mean over the bands)."),
    strength: Optional[float] = typer.Option(None, "--strength", min=0.0, max=1.0, show_default="the bundle's", help="Noise level the direction is read at."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, show_default="the bundle's", help="Noise levels the direction is averaged over."),
    edit_seed: Optional[int] = typer.Option(None, "--edit-seed", show_default="the bundle's", help="Seed of the edit's noise (the spread between seeds is the yardstick for a change of --steps)."),
    precision: Precision = typer.Option(Precision(DEFAULT_PRECISION), "--precision", case_sensitive=False, help="The denoiser's arithmetic: fp32 (onnxruntime) | "
                                        "bf16 (OpenVINO, a CPU with AMX-BF16 or AVX512-BF16) | auto (fp16 is TensorRT's; this evaluation runs on the CPU); "
                                        "report.json's 'precision' says which ran."),
    out: Path = typer.Option(Path("reports/enhance"), "--out", help="Report folder (report.md, report.json; defaults.json for --split val)."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1, show_default="all", help="Clips per corpus (a seeded subset; quick runs)."),
    conversion: bool = typer.Option(True, "--conversion/--no-conversion", help="Also convert the neutral clips to every other emotion."),
    speakers: Optional[str] = typer.Option(None, "--speakers", show_default="the split's", help="Evaluate these speakers instead "
                                           "(comma-separated corpus/speaker keys, e.g. a second validation group held out of --bundle's "
                                           "diffusion model); the judges and the fixed EQ are trained without them."),
    rule: str = typer.Option("ua", "--rule", help="Statistic of each corpus x judge cell that --split val chooses by (its worst cell): "
                             "ua (UA gain) | soft (soft UA gain: each clip's hit replaced by the judge's probability of its own emotion)."),
) -> None:
    """Three independent judges (statistics, eGeMAPS, voice-encoder embedding) on held-out speakers:
    original / identity / fixed EQ / emort, with fidelity."""
    need("torch", "train")
    need("librosa", "train")
    need("opensmile", "eval")
    from emort.evaluation.enhance_eval import EvalConfig, run
    from emort.runtime.errors import EmortError

    if split not in ("val", "test"):
        raise EmortError(f"--split must be val or test, got {split!r}")
    if amounts is None or contrasts is None or parts is None or smooths is None or band_smooths is None:
        from emort.runtime.bundle import load_bundle

        d = load_bundle(bundle, verify=False).defaults if split == "test" else None
        if smooths is None:
            smooths = "0" if d is None else f"{d.smooth_s:g}"
        if band_smooths is None:
            band_smooths = "0" if d is None else str(d.smooth_bands)
        if amounts is None:
            amounts = "1,1.5,2" if d is None or d.amount_db is None else f"{d.amount_db:g}"
        if contrasts is None:
            contrasts = "uncond" if d is None else d.contrast
        if parts is None:
            parts = "full" if d is None else d.part
    try:
        fl = lambda s: [float(x) for x in s.split(",") if x.strip()]  # noqa: E731
        am, sm = fl(amounts), fl(smooths)
        bs = [int(x) for x in band_smooths.split(",") if x.strip()]
    except ValueError as e:
        raise EmortError(f"--amounts/--smooths: {e}") from None
    if not am or not sm or not bs:
        raise EmortError("give at least one amount and one smoothing")
    cts = [c.strip() for c in contrasts.split(",") if c.strip()]
    pts = [c.strip().lower() for c in parts.split(",") if c.strip()]
    # every grid cell's options are checked by run (enhance_eval.check_grid) before the judges are fitted
    if out.exists() and not out.is_dir():  # before the evaluation, not after it
        raise EmortError(f"{out}: --out is a file; give a folder for the report")
    cfg = EvalConfig(data=list(data), bundle=str(bundle) if bundle else None, out=str(out), split=split, amounts=am, smooths=sm, band_smooths=bs,
                     contrasts=cts, parts=pts, strength=strength, steps=steps, edit_seed=edit_seed, max_clips=max_clips, conversion=conversion,
                     precision=Precision(precision).value, rule=rule,
                     speakers=[x.strip() for x in speakers.split(",") if x.strip()] if speakers else None)
    rep = run(cfg, progress=err_console.is_terminal, console=console)
    if rep.get("chosen"):
        console.print(f"chosen on the validation speakers: {rep['chosen']}")
    console.print(f"report: {out}/report.md")


@eval_app.command("augment")
@user_errors
def eval_augment_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH of the original corpora, repeatable."),
    aug: list[str] = typer.Option(..., "--aug", help="KIND:SEED=MANIFEST of `emort augment` output (KIND classic or emort), "
                                  "repeatable; every seed needs both kinds."),
    out: Path = typer.Option(Path("reports/augment"), "--out", help="Report folder (augment_ablation.md / .json)."),
    features: str = typer.Option("ustats", "--features", help="Statistics-classifier features (as `emort train stats --features`): "
                                 "ustats (0.8's reports), ustats+pitch+ge2e (the shipped per-speaker classifier's; needs resemblyzer), ..."),
    model: str = typer.Option("svm", "--model", help="svm (RBF SVM, C 10: the default here, as the reports of 0.8-0.18 "
                              "ran it) or logreg (logistic regression, C 0.01: the shipped per-speaker classifiers since 0.19)."),
) -> None:
    """Augmentation ablation (none / classic / emort / both) of the statistics classifier, on held-out speakers and corpora."""
    need("sklearn", "train")
    need("librosa", "train")
    need_features(features)
    from rich.markup import escape

    from emort.evaluation.augment_ablation import MODELS, AugSpec, run_ablation

    if model not in MODELS:
        fail(f"--model: {' or '.join(MODELS)}")

    res = run_ablation(list(data), [AugSpec.parse(a) for a in aug], out, features=features, model=model)
    console.print(escape((Path(out) / "augment_ablation.md").read_text()), soft_wrap=True)
    console.print(f"{len(res['rows'])} fits x 4 protocols; report in {escape(str(out))}")
