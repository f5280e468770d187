"""``emort eval``: SER runs and the enhancer, on held-out speakers with separate judges."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emort.cli.common import BundleOpt, console, err_console, need, positive, sub_app, user_errors

eval_app = sub_app("Evaluate models honestly (held-out speakers, separate judges).")


@eval_app.command("ser")
@user_errors
def eval_ser_cmd(
    run_dir: Path = typer.Argument(Path("runs/ser"), help="SER run folder."),
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH, repeatable (the corpora the run was trained on)."),
    out: Path = typer.Option(Path("reports/ser"), "--out", help="Report folder (Markdown, JSON, PNG)."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Statistics-classifier run (`emort train stats`, same split or "
                                         "--loso folds) to fuse with this per-speaker SER, as `emort score --per-speaker` does."),
) -> None:
    """WA / UA / P-R-F1 / confusion matrices of an SER run on its held-out test clips."""
    need("torch", "train")
    from rich.table import Table

    from emort.evaluation.ser_eval import evaluate_ser

    res = evaluate_ser(run_dir, list(data), out, progress=err_console.is_terminal, stats_run=stats)
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
        t.add_row("pooled", "", f"{pooled['wa']:.3f}", f"{pooled['ua']:.3f}", str(pooled["n"]))
        console.print(t)
        if res["missing_folds"]:
            console.print(f"[yellow]not finished, left out:[/] {', '.join(res['missing_folds'])}")
        if res["cut_short_folds"]:
            console.print(f"[yellow]stopped by a time/step limit (included):[/] {', '.join(res['cut_short_folds'])}")
        console.print(f"report: {out}/ser_eval.md")
        return
    t = Table(title=f"SER {res['protocol']} protocol: {run_dir}")
    for c in ("corpus", "WA", "UA", "macro-F1", "n"):
        t.add_column(c, justify="right")
    for corpus, r in res["corpora"].items():
        t.add_row(corpus, f"{r['wa']:.3f}", f"{r['ua']:.3f}", f"{r['macro_f1']:.3f}", str(r["n"]))
    console.print(t)
    console.print(f"report: {out}/ser_eval.md")


@eval_app.command("enhance")
@user_errors
def eval_enhance_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH, repeatable (test/validation speakers are taken from these)."),
    bundle: Optional[Path] = BundleOpt,
    judge_ser: Path = typer.Option(Path("runs/ser_judge"), "--judge-ser", help="Second SER run used as a judge (other seed/width)."),
    out: Path = typer.Option(Path("reports/enhance"), "--out", help="Report folder (report.md, report.json, PNGs, defaults.json)."),
    methods: str = typer.Option("dpmpp,direction", "--methods", help="Sweep: edit methods (samplers and/or direction)."),
    strengths: str = typer.Option("0.25,0.5", "--strengths", help="Sweep: strengths (comma-separated, each 0-1)."),
    guidances: str = typer.Option("1,3,8", "--guidances", help="Sweep: guidance scales."),
    steps_grid: str = typer.Option("4,8,16,32,50", "--steps-grid", help="Sweep: step counts (at the chosen strength/guidance)."),
    samplers: str = typer.Option("ddim,dpmpp", "--samplers", help="Sweep: samplers."),
    max_distance: float = typer.Option(0.35, "--max-distance", callback=positive, help="Fidelity bound for choosing defaults: median "
                                       "log-mel distance (> 0)."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1, show_default="all", help="Clips per split (quick runs)."),
    sweep_clips: Optional[int] = typer.Option(None, "--sweep-clips", min=1, show_default="all", help="Validation clips used by the sweeps (a seeded subset; "
                                              "test clips are all used)."),
    conversion: bool = typer.Option(True, "--conversion/--no-conversion", help="Measure the 6 x 6 conversion table."),
) -> None:
    """The paper's tables measured honestly: held-out speakers, separate judges, baselines, fidelity, sweep."""
    need("torch", "train")
    need("librosa", "train")
    from emort.evaluation.enhance_eval import EvalConfig, run

    fl = lambda s: [float(x) for x in s.split(",") if x.strip()]  # noqa: E731
    cfg = EvalConfig(data=list(data), bundle=str(bundle) if bundle else None, judge_ser_run=str(judge_ser), out=str(out),
                     methods=[x.strip() for x in methods.split(",")], strengths=fl(strengths),
                     guidances=fl(guidances), steps_grid=[int(x) for x in fl(steps_grid)], samplers=[x.strip() for x in samplers.split(",")],
                     max_distance=max_distance, max_clips=max_clips, sweep_clips=sweep_clips,
                     conversion=conversion)
    rep = run(cfg, progress=err_console.is_terminal, console=console)
    console.print(f"defaults chosen on validation speakers: {rep['chosen_defaults']}")
    console.print(f"report: {out}/report.md")
