"""``emort train``: the SER, the utterance-statistics classifier and the diffusion model."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer

from emort.cli.common import (
    console,
    explicit,
    fail,
    log_when_no_tty,
    need,
    need_features,
    positive,
    sub_app,
    user_errors,
)

train_app = sub_app("Train models (needs the [train] extra).")

# emort.training.models.ser.SER_PRESETS, listed here so that `--help` does not import torch
# (a test keeps the two equal).
SER_PRESETS = ("tiny", "small", "small-stats", "resnet18", "resnet34", "resnet50", "small-v0.1")
Preset = enum.Enum("Preset", {p: p for p in SER_PRESETS}, type=str)

# The flags of `train ser` that are also SERTrainConfig fields, with the dataclass's defaults
# (a test keeps them equal): given explicitly, they override a recipe.
SER_FLAG_DEFAULTS = {"preset": "small", "epochs": 60, "seed": 0}

DEVICE_HELP = ("Where to train: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; under torchrun "
               "each process takes GPU LOCAL_RANK. Batches and noise are drawn on the CPU either way, and a run may "
               "resume on another device. cuda needs a CUDA build of torch (the README's pin installs the CPU build).")


def _checked_device(device: str) -> str:
    """``--device`` as the trainers record it (lower case), refused (one line) before any clip or
    bundle is read where it cannot run. Needs torch (after ``need("torch", ...)``)."""
    from emort.training.common import resolve_device

    device = device.strip().lower()
    resolve_device(device)
    return device


def _on(res: dict) -> str:
    """`` on cuda:0`` / `` on cpu``: where a trainer ran (``--device auto`` decides by itself)."""
    return f" on {res['device']}" if res.get("device") else ""


def _val_line(res: dict) -> str:
    if res.get("fit_val"):
        return f"kept the last epoch ({res['best_epoch']}); validation speakers were trained on (UA {res['best_val_ua']:.3f} is not a held-out score)"
    return f"best validation UA {res['best_val_ua']:.3f} at epoch {res['best_epoch']}"


@train_app.command("ser")
@user_errors
def train_ser_cmd(
    ctx: typer.Context,
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH (emodb, ravdess, nemo, cremad, tess, folders, csv), repeatable."),
    out: Path = typer.Option(Path("runs/ser"), "--out", help="Run folder (checkpoints). An unfinished run there resumes: give the options it was started with (data, speakers, seed, recipe; a difference is refused, naming it)."),
    recipe: list[Path] = typer.Option([], "--recipe", help="TOML file of training options (SERTrainConfig field = value), repeatable: later "
                                      "files override earlier ones, flags given here override both. The repository's recipes/ "
                                      "holds the documented ones (paper.toml, ser_speaker.toml, ...)."),
    preset: Preset = typer.Option(Preset(SER_FLAG_DEFAULTS["preset"]), "--preset", help="Network: small-stats = small + utterance statistics "
                                  "of the log-mel; resnet50 = the paper's; small-v0.1 = 0.1.0's small."),
    epochs: int = typer.Option(SER_FLAG_DEFAULTS["epochs"], "--epochs", min=1, help="Training epochs (at most; early stopping may end sooner)."),
    seed: int = typer.Option(SER_FLAG_DEFAULTS["seed"], "--seed", min=0, help="Seed of the split, the initial weights and the batches."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, show_default="all cores", help="torch intra-op threads."),
    loso: Optional[str] = typer.Option(None, "--loso", help="Leave-one-speaker-out over this corpus (e.g. emodb): one run per "
                                       "speaker in OUT/fold_*, resumable; evaluate with `emort eval ser OUT`."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", callback=positive, help="Stop after this many minutes (> 0; keeps "
                                                "the best checkpoint, and the run resumes; per fold with --loso)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimiser steps in all (smoke tests); an epoch cut in its middle is reported as partial and finished by a resumed run."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda|cuda:N", help=DEVICE_HELP),
) -> None:
    """Train the speech-emotion-recognition ResNet (works under torchrun).

    Rarely changed options (split, normalisation, augmentation, learning rate, ...) come from
    --recipe files; the run records the files and the values it used in its ser.json.
    """
    need("torch", "train")
    need("librosa", "train")
    import torch

    from emort.training.ser import config_from_recipes, train_ser, train_ser_loso

    log_when_no_tty()
    if threads:
        torch.set_num_threads(threads)
    flags = {k: v for k, v in (("preset", preset.value), ("epochs", epochs), ("seed", seed)) if explicit(ctx, k)}
    flags.update({k: v for k, v in (("max_minutes", max_minutes), ("max_steps", max_steps)) if v is not None})
    cfg = config_from_recipes(list(data), str(out), list(recipe), progress=sys.stderr.isatty(), device=_checked_device(device), **flags)
    if loso:
        if cfg.split == "random":
            fail("--loso is a speaker protocol; it does not combine with split = \"random\" (from " + ", ".join(map(str, recipe)) + ")")
        folds = train_ser_loso(cfg, loso)
        for name, r in folds.items():
            console.print(f"{name}: {_val_line(r)}")
        console.print(f"{len(folds)} folds in {out}; evaluate with: emort eval ser {out} --data ...")
        return
    res = train_ser(cfg)
    console.print(f"{_val_line(res)}{_on(res)}; checkpoint in {out}")


@train_app.command("stats")
@user_errors
def train_stats_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH (emodb, ravdess, nemo, cremad, tess, folders, csv), repeatable."),
    out: Path = typer.Option(Path("runs/stats"), "--out", help="Run folder (stats.joblib + stats.json)."),
    c: Optional[float] = typer.Option(None, "--C", callback=positive, show_default="logreg 0.01, svm 10",
                                      help="Regularisation of the classifier: inverse strength, > 0 (lda sets its own shrinkage)."),
    model: str = typer.Option("logreg", "--model", help="logreg (multinomial logistic regression: the shipped "
                              "per-speaker classifiers since 0.19), svm (RBF SVM, Platt-scaled: 0.4-0.18) or lda (shrinkage "
                              "LDA); docs/ser/classifier/report.md compares them across corpora."),
    fit_val: bool = typer.Option(True, "--fit-val/--no-fit-val", help="Fit the validation speakers too (nothing "
                                 "early-stops). --no-fit-val reports their UA as a held-out validation score instead."),
    test_speaker: list[str] = typer.Option([], "--test-speaker", show_default="the project split", help="Held-out test speaker (corpus/id), repeatable."),
    val_speaker: list[str] = typer.Option([], "--val-speaker", show_default="the project split", help="Validation speaker (corpus/id), repeatable."),
    loso: Optional[str] = typer.Option(None, "--loso", help="Leave-one-speaker-out over this corpus: one run per speaker in "
                                       "OUT/fold_*, the folds of `train ser --loso`; fuse with `emort eval ser SER_RUN --stats OUT`."),
    features: str = typer.Option("ustats", "--features", help="ustats (log-mel statistics), ustats+pitch (adds F0 "
                                 "statistics from WORLD; both computed by the runtime and exportable), ge2e (the GE2E voice embedding of "
                                 "the speaker encoder resemblyzer ships: `pip install --no-deps resemblyzer==0.1.4`), ustats+pitch+ge2e "
                                 "(both in one classifier; these two are exported beside the statistics classifier by "
                                 "`emort export voice`) or ustats+egemaps "
                                 "(adds openSMILE eGeMAPSv02 functionals; [eval] extra; evaluation only) or ustats+pitch+ge2e+egemaps (the "
                                 "third with eGeMAPS: exported by `emort export voice` as the classifier `emort score --egemaps` reads)."),
    ref_mix: int = typer.Option(0, "--ref-mix", min=0, max=20, help="Also fit each training speaker's rows z-scored over this many "
                                "random pools of its clips (random emotion mixes), so that a speaker whose clips lean to some "
                                "emotions is read as well (docs/ser/ref_mix/report.md: chosen by its rule for the --egemaps "
                                "classifier, not shipped; the shipped classifiers use 0)."),
    norm: str = typer.Option("speaker", "--norm", help="speaker (each speaker z-scored over its clips: fused into "
                             "`score --per-speaker`) or global (no speaker normalisation: a single-clip classifier; a "
                             "ustats+pitch+ge2e one goes into a bundle with `emort export voice`, read by `emort score --clip-stats`)."),
) -> None:
    """Fit the utterance-statistics classifier (logistic regression, or an RBF SVM, over per-speaker z-scored features; seconds to minutes).

    Put it in a bundle with `emort export stats --bundle B --stats OUT` (or ship it with a new one: `emort export onnx
    --speaker-ser RUN --stats OUT`): `emort score --per-speaker` then scores with it. Evaluate it with `emort eval stats OUT`.
    A `--norm global` run (no speaker normalisation, for single clips) of `--features ustats+pitch+ge2e` goes into a
    bundle with `emort export voice --stats OUT` and is fused with the single-clip SER by `emort score --clip-stats`
    (docs/ser/single_v2/report.md); other global runs are for measurement (`python -m emort.evaluation.scorer_compare`).
    """
    need("sklearn", "train")
    need("librosa", "train")
    from emort.training.ustats import StatsTrainConfig, train_stats, train_stats_loso

    log_when_no_tty()
    need_features(features)
    from emort.training.stats_classifier import MODELS, NORMS

    if norm not in NORMS:
        fail(f"--norm: choose from {', '.join(NORMS)}")
    if model not in MODELS:
        fail(f"--model: choose from {', '.join(MODELS)}")
    if model == "lda" and c is not None:
        fail("--C: lda sets its own shrinkage; leave --C out")
    if loso and norm != "speaker":
        fail("--loso fits folds fused with per-speaker SER folds: --norm speaker")
    if ref_mix and norm != "speaker":
        fail("--ref-mix varies the per-speaker normalisation pools: it needs --norm speaker")
    kw: dict = dict(C=c, model=model, fit_val=fit_val, features=features, norm=norm, ref_mix=ref_mix)
    if test_speaker:
        kw["test_speakers"] = list(test_speaker)
    if val_speaker:
        kw["val_speakers"] = list(val_speaker)
    cfg = StatsTrainConfig(data=list(data), out=str(out), **kw)
    if loso:
        folds = train_stats_loso(cfg, loso)
        console.print(f"{len(folds)} folds in {out}; evaluate: emort eval stats {out} --data ... (alone), or "
                      f"emort eval ser SER_LOSO_RUN --stats {out} --data ... (fused with SER folds)")
        return
    res = train_stats(cfg)
    val = f"validation UA {res['val_ua']:.3f}" if "val_ua" in res else "validation speakers fitted"
    console.print(f"fitted on {res['train_clips']} clips ({val}); run in {out}")


@train_app.command("diffusion")
@user_errors
def train_diffusion_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH, repeatable (same corpora as the SER run)."),
    ser: Path = typer.Option(Path("runs/ser"), "--ser", help="SER run folder (embeddings, normalisation, held-out speakers), "
                             "or a bundle, whose SER is then written to OUT/ser_from_bundle (export with --ser OUT/ser_from_bundle)."),
    out: Path = typer.Option(Path("runs/diffusion"), "--out", help="Run folder (resumes if present)."),
    steps: int = typer.Option(4000, "--steps", min=1, help="Optimiser steps."),
    batch_size: int = typer.Option(24, "--batch-size", min=1, help="Clips per optimiser step (per process under torchrun)."),
    lr: float = typer.Option(3e-4, "--lr", callback=positive, help="Peak learning rate (> 0)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the initial weights, batches and noise."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", callback=positive, help="Stop after this many minutes (> 0; the run resumes)."),
    sample_every: int = typer.Option(500, "--sample-every", min=0, help="Write sample mels/audio every N steps (0 = never)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, show_default="all cores", help="torch intra-op threads."),
    centroid_mix: bool = typer.Option(True, "--centroid-mix/--no-centroid-mix",
                                      help="Condition on a random mix of the clip's SER embedding and its label centroid, or on the embedding alone."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from another diffusion run's weights (same architecture), "
                                             "or a bundle's (a folder with manifest.json: its denoiser and style encoder), "
                                             "e.g. after retraining the SER or to add a corpus; ignored when OUT already holds a run to resume."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda|cuda:N", help=DEVICE_HELP),
) -> None:
    """Train the emotion-conditioned mel diffusion model (works under torchrun)."""
    need("torch", "train")
    need("librosa", "train")
    import torch

    from emort.training.diffusion import DiffusionTrainConfig, train_diffusion

    log_when_no_tty()
    device = _checked_device(device)
    if threads:
        torch.set_num_threads(threads)
    if (ser / "manifest.json").exists() or (init_from is not None and (init_from / "manifest.json").exists()):
        # A bundle: its graphs' weights become run folders inside OUT (kept: provenance; and
        # `emort export onnx --ser OUT/ser_from_bundle` pairs the new model with that SER).
        need("onnx", "export")
        from emort.export.to_torch import (
            holds_ser,
            ser_run_key,
            ser_run_record,
            write_diffusion_run,
            write_ser_run,
        )
        from emort.runtime.bundle import load_bundle

        resuming = (out / "diffusion_last.state.pt").exists()
        bundles: dict = {}  # --ser and --init-from are often the same bundle: load (and verify) it once

        def bundle_at(path: Path):
            key = path.resolve()
            if key not in bundles:
                bundles[key] = load_bundle(path)
            return bundles[key]

        if (ser / "manifest.json").exists():
            bundle = bundle_at(ser)
            ser_run = out / "ser_from_bundle"
            # The SER the run was trained on, not the whole bundle: a bundle whose statistics
            # classifier or denoiser changed since still resumes.
            rec = ser_run_record(ser_run)  # ser.json is written last: its presence means the folder is whole
            if not holds_ser(bundle, ser_run, rec):
                if resuming:
                    was = (f"SER key {rec['bundle_ser_key']}" if rec.get("bundle_ser_key")
                           else f"a bundle with content hash {rec.get('bundle_content_hash')}")
                    fail(f"{out} was trained on another SER ({was}) than the one in {ser} (SER key {ser_run_key(bundle)}); "
                         "resume it with the bundle it began with, or start a new --out")
                write_ser_run(bundle, ser_run)
            ser = ser_run
        if init_from is not None and (init_from / "manifest.json").exists():
            # on resume the run's own weights count and its record keeps the folder it began from
            init_dir = out / "init_from_bundle"
            init_from = init_dir if resuming else write_diffusion_run(bundle_at(init_from), init_dir)
    cfg = DiffusionTrainConfig(data=list(data), ser=str(ser), out=str(out), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                               max_minutes=max_minutes, sample_every=sample_every, progress=sys.stderr.isatty(), centroid_mix=centroid_mix,
                               init_from=str(init_from) if init_from else None, device=device)
    res = train_diffusion(cfg)
    done = res["steps"] - res.get("started_at", 0)
    if not done:
        console.print(f"{out} is at step {res['steps']} already: nothing to train (give a larger --steps to go on)")
    elif res.get("started_at"):
        console.print(f"trained {done} steps ({res['started_at']} -> {res['steps']}){_on(res)}; checkpoint in {out}")
    else:
        console.print(f"trained {res['steps']} steps{_on(res)}; checkpoint in {out}")
