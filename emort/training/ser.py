"""SER training loop (``emort train ser``): seeded, resumable, DDP-ready.

Defaults are chosen for accuracy on unseen speakers (random crops, SpecAugment,
mixup, class-balanced loss, early stopping on held-out speakers). Other recipes are
TOML files of ``SERTrainConfig`` fields (``load_recipe``; the repository's
``recipes/paper.toml`` is the paper's: Adam 1e-4, cross-entropy, random 8:2).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emort import __version__
from emort.runtime.atomic import write_json_atomic
from emort.runtime.errors import EmortError
from emort.runtime.settings import DEFAULT_MEL, EMOTIONS, MelSettings
from emort.training import corpora
from emort.training.augment import augment_batch
from emort.training.common import (
    Dist,
    all_reduce_mean,
    cleanup_distributed,
    init_distributed,
    load_weights,
    rank0_decides,
    resolve_device,
    save_checkpoint,
    seed_everything,
)
from emort.training.data import (
    FRONTEND_VERSION,
    NormStats,
    check_resume_frontend,
    class_weights,
    crop_or_pad,
    load_mels,
    per_speaker_stats,
    residual_std,
    utterance_stats,
)
from emort.training.metrics import classification_report
from emort.training.models.ser import SER_PRESETS, ResNetSER, SERConfig
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

log = logging.getLogger(__name__)


@dataclass
class SERTrainConfig:
    data: list[str]
    out: str
    preset: str = "small"
    split: str = "speakers"  # "speakers" (held-out test + val speakers) or "random" (paper 8:2)
    test_speakers: list[str] = field(default_factory=lambda: list(TEST_SPEAKERS))
    val_speakers: list[str] = field(default_factory=lambda: list(VAL_SPEAKERS))
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    optimizer: str = "adamw"
    crop_s: float = 3.0
    specaugment: bool = True
    # Speaker-style perturbations (emort.training.augment): VTLP warp, tempo, level.
    warp: float = 0.0
    stretch: float = 0.0
    gain_db: float = 0.0
    mixup_alpha: float = 0.2
    label_smoothing: float = 0.05
    # Exponential moving average of the weights (and BatchNorm statistics); 0 = off.
    # Validation, early stopping and the saved model then use the average.
    ema: float = 0.0
    # "global": one z-score for all clips (works on a single clip). "speaker": each clip
    # z-scored with its speaker's statistics (needs unlabelled clips of the speaker to score).
    # "utterance": each clip's own per-band mean removed, a fixed per-band scale (works on a
    # single clip; emort.training.data.utterance_stats).
    norm: str = "global"
    balance: bool = True
    # Draw each epoch's clips so every corpus x emotion cell weighs the same (instead of the
    # class-weighted loss): a small corpus (EmoDB, ~1/4 of the clips) then counts as much as RAVDESS.
    corpus_balance: bool = False
    # Train on the validation speakers too, for a fixed --epochs (no early stopping; the last
    # epoch is the model): more speakers once the recipe is settled. Test speakers stay unseen.
    fit_val: bool = False
    patience: int = 15
    seed: int = 0
    max_minutes: float | None = None
    # Stop after this many optimiser steps in all (smoke tests). A cut in mid-epoch leaves that epoch
    # unfinished: its part is validated and reported ("partial"), and a resumed run trains the rest of it.
    max_steps: int | None = None
    progress: bool = True
    # Where to train (emort.training.common.resolve_device): "auto" = a CUDA GPU when torch sees one.
    # Not a recipe option and not part of what a resumed run must repeat: a run may go on elsewhere.
    device: str = "auto"
    # Where the options came from, recorded with the run: {"files": [recipe paths], "values":
    # {what the files set}, "overridden": {what command-line flags then changed}}; None = no recipe.
    recipe: dict | None = None


# Fields a recipe may not set: what to train on and where to write are given per run,
# progress is the terminal's business, and ``recipe`` is the record of the files themselves.
NOT_RECIPE_KEYS = ("data", "out", "progress", "recipe", "device")
RECIPE_CHOICES = {"norm": ("global", "speaker", "utterance"), "split": ("speakers", "random"), "optimizer": ("adam", "adamw")}


def _recipe_value(path: Path, key: str, value, kind: str):
    """``value`` checked (and ints widened to float) against the field's annotation ``kind``."""
    kind = kind.replace(" | None", "")
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }.get(kind, False)
    if not ok:
        raise EmortError(f"{path}: recipe key {key!r} must be {'a list of strings' if kind == 'list[str]' else kind}; got {value!r}")
    if key in RECIPE_CHOICES and value not in RECIPE_CHOICES[key]:
        raise EmortError(f"{path}: recipe key {key!r} must be one of {', '.join(RECIPE_CHOICES[key])}; got {value!r}")
    if key == "ema" and not 0.0 <= value < 1.0:
        raise EmortError(f"{path}: recipe key 'ema' must be in [0, 1); got {value}")
    return float(value) if kind == "float" else value


def load_recipe(path: str | os.PathLike) -> dict:
    """A recipe file: a TOML table of ``SERTrainConfig`` field names -> values, checked.

    Every key must be a field (not one of ``NOT_RECIPE_KEYS``) and every value of the
    field's type (ints are accepted for floats); ``norm``, ``split`` and ``optimizer``
    must name a known choice and ``ema`` lie in [0, 1). Raises ``EmortError`` with one line
    naming the file and the key: a missing or unreadable file, invalid TOML, an unknown
    key, a wrongly typed value.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, published separately before 3.11
        import tomli as tomllib

    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise EmortError(f"{p}: cannot read the recipe ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EmortError(f"{p}: not a valid TOML recipe ({e})") from None
    kinds = {f.name: str(f.type) for f in dataclasses.fields(SERTrainConfig) if f.name not in NOT_RECIPE_KEYS}
    values = {}
    for key, value in raw.items():
        if key not in kinds:
            why = "is set on the command line" if key in NOT_RECIPE_KEYS else "is not an SERTrainConfig field"
            raise EmortError(f"{p}: unknown recipe key {key!r} ({why}); recipe keys: {', '.join(kinds)}")
        values[key] = _recipe_value(p, key, value, kinds[key])
    return values


def config_from_recipes(data: list[str], out: str, recipes: list[str | os.PathLike], **flags) -> SERTrainConfig:
    """``SERTrainConfig`` from the dataclass defaults, then each recipe file in order, then ``flags``.

    ``flags`` are the options given explicitly on the command line: they override the
    recipes. The files, their merged values and the overrides are kept in ``cfg.recipe``
    (saved with the run as ``train.recipe``). Errors: those of ``load_recipe``.
    """
    values: dict = {}
    for r in recipes:
        values.update(load_recipe(r))
    record = None
    if recipes:
        record = {"files": [str(r) for r in recipes], "values": dict(values),
                  "overridden": {k: v for k, v in flags.items() if k in values and values[k] != v}}
    return SERTrainConfig(data=list(data), out=str(out), **{**values, **flags}, recipe=record)


def epoch_permutation_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of an epoch's clip order (the same on every rank): seeded by ``[seed, epoch]``, a
    SeedSequence of both. ``seed + epoch`` (0.24.0 and earlier) gave seed 1's epoch k the order of seed 0's
    epoch k + 1, so runs of two seeds shared their data orders."""
    return np.random.default_rng([seed, epoch])


def spec_augment(x: torch.Tensor, gen: torch.Generator, n_freq: int = 2, f_max: int = 10, n_time: int = 2, t_max: int = 25) -> torch.Tensor:
    """SpecAugment masks on normalised mels ``(B, 1, n_mels, frames)`` (mask value 0 = mean)."""
    b, _, nm, nt = x.shape
    x = x.clone()
    for i in range(b):
        for _ in range(n_freq):
            w = int(torch.randint(0, f_max + 1, (1,), generator=gen))
            s = int(torch.randint(0, max(1, nm - w), (1,), generator=gen))
            x[i, :, s : s + w, :] = 0
        for _ in range(n_time):
            w = int(torch.randint(0, t_max + 1, (1,), generator=gen))
            s = int(torch.randint(0, max(1, nt - w), (1,), generator=gen))
            x[i, :, :, s : s + w] = 0
    return x


def loso_folds(items: list[corpora.Item], corpus: str, base_test: list[str], base_val: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """Leave-one-speaker-out folds over ``corpus``: ``(fold name, test speakers, val speakers)``.

    Fold *i* tests speaker *i* and stops early on speaker *i+1* (cyclic) of the same corpus;
    the other corpora keep their places in the base split (their test speakers stay unseen).
    """
    speakers = sorted({i.speaker_key for i in items if i.corpus == corpus})
    if len(speakers) < 3:
        raise EmortError(f"leave-one-speaker-out over {corpus!r} needs at least 3 speakers in --data; found {len(speakers)}")
    others_test = [s for s in base_test if not s.startswith(f"{corpus}/")]
    others_val = [s for s in base_val if not s.startswith(f"{corpus}/")]
    return [
        (f"fold_{s.replace('/', '-')}", [s, *others_test], [speakers[(k + 1) % len(speakers)], *others_val])
        for k, s in enumerate(speakers)
    ]


def _check_preset(cfg: SERTrainConfig) -> None:
    if cfg.norm not in RECIPE_CHOICES["norm"]:
        raise EmortError(f"unknown normalisation {cfg.norm!r}; choose {', '.join(RECIPE_CHOICES['norm'])}")
    if cfg.preset not in SER_PRESETS:
        raise EmortError(f"unknown SER preset {cfg.preset!r}; choose one of {', '.join(SER_PRESETS)}")


def _best_record(cfg: SERTrainConfig, entry: dict, selection: str) -> dict:
    """``ser.json``'s "best": the epoch of the saved model and its validation scores (--fit-val: on seen speakers)."""
    pre = "seen_val" if cfg.fit_val else "val"
    return {"epoch": entry["epoch"], "selection": selection, f"{pre}_ua": entry["val_ua"], f"{pre}_wa": entry["val_wa"]}


def fold_finished(fold_dir: Path) -> bool:
    """A fold that ran to its end (epochs or early stopping), not one cut by a time/step limit."""
    f = fold_dir / "ser_history.json"
    return f.exists() and json.loads(f.read_text()).get("stopped", "epochs") in ("epochs", "early_stopping")


def train_ser_loso(cfg: SERTrainConfig, corpus: str, settings: MelSettings = DEFAULT_MEL) -> dict:
    """One run per fold in ``cfg.out/fold_*``. Finished folds are skipped and a fold cut by
    ``max_minutes``/``max_steps`` (limits per fold) resumes, so re-running continues."""
    _check_preset(cfg)
    out = Path(cfg.out)
    if (out / "ser.json").exists() or (out / "ser_last.state.pt").exists():
        raise EmortError(f"{out} holds a single SER run; give leave-one-speaker-out folds their own --out")
    if (out / "loso.json").exists():
        meta = json.loads((out / "loso.json").read_text())
        if meta.get("kind", "ser") != "ser":
            raise EmortError(f"{out} holds leave-one-speaker-out folds of a {meta.get('kind')} classifier; use another --out")
        if meta["corpus"] != corpus:
            raise EmortError(f"{out} holds leave-one-speaker-out folds over another corpus; use another --out")
    items = corpora.only_canonical(corpora.read_specs(cfg.data), EMOTIONS)
    folds = loso_folds(items, corpus, cfg.test_speakers, cfg.val_speakers)
    # One process group for all folds: re-creating it per fold is unreliable with gloo.
    d = init_distributed(resolve_device(cfg.device))
    results = {}
    try:
        if d.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "loso.json", {"corpus": corpus, "folds": [f[0] for f in folds], "kind": "ser"})
        for name, test, val in folds:
            fold_dir = out / name
            fcfg = dataclasses.replace(cfg, out=str(fold_dir), split="speakers", test_speakers=test, val_speakers=val)
            if rank0_decides(fold_finished(fold_dir), d):
                check_same_recipe(json.loads((fold_dir / "ser.json").read_text()).get("train", {}), fcfg, fold_dir)
                log.info("%s: finished already, skipped", name)
                results[name] = json.loads((fold_dir / "ser_history.json").read_text())
                continue
            log.info("%s: test %s, validation %s", name, test, val)
            results[name] = train_ser(fcfg, settings)
    finally:
        cleanup_distributed()
    return results


# Options that define what a run trains on and how; a resumed run (or a finished LOSO fold
# that is skipped) must have been started with the same ones. (The optimiser's settings were
# taken silently before 0.24: AdamW's state loaded into Adam, and the run's record rewritten.)
RECIPE_FIELDS = ("norm", "corpus_balance", "fit_val", "warp", "stretch", "gain_db", "crop_s", "mixup_alpha", "specaugment",
                 "optimizer", "lr", "weight_decay", "batch_size", "label_smoothing", "ema", "patience")
#: ... and what it trains on (0.23: a resumed run with other data or held-out speakers mixed two runs,
#: and could train on the speakers it had kept for testing).
RUN_FIELDS = RECIPE_FIELDS + ("data", "split", "test_speakers", "val_speakers", "seed", "balance")


def check_same_recipe(prev_train: dict, cfg: SERTrainConfig, where: Path) -> None:
    """Refuse to continue ``where`` (started with ``prev_train``, a saved ``asdict(cfg)``) under other
    options (:data:`RUN_FIELDS`; one line naming each difference)."""
    from emort.training.common import check_same_run

    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(SERTrainConfig)}
    check_same_run(prev_train, dataclasses.asdict(cfg), RUN_FIELDS, where, defaults)


def cell_balanced_probs(items: list[corpora.Item]) -> np.ndarray:
    """Sampling probabilities that give every (corpus, emotion) cell the same total mass. An
    augmented copy counts in its source speaker's corpus (every ``emort augment`` manifest reads as
    corpus ``manifest``: before 0.24 all copies made one corpus as heavy as each real one)."""
    key = lambda i: (i.source_speaker_key.split("/")[0], i.emotion)  # noqa: E731
    cells = Counter(key(i) for i in items)
    w = np.array([1.0 / cells[key(i)] for i in items])
    return w / w.sum()


def make_splits(items: list[corpora.Item], cfg: SERTrainConfig):
    """(train, val, test) item lists for the configured protocol."""
    if cfg.split == "random":
        copies = sorted({i.speaker_key for i in items if i.source_speaker_key != i.speaker_key})
        if copies:  # the split draws clips, not speakers: a clip and its own copy would land on both sides
            raise EmortError(f"--split random cannot keep augmented copies ({', '.join(copies[:3])}{', ...' if len(copies) > 3 else ''}) "
                             "on the side of their source clips; use --split speakers with augmented data")
        trainval, test = corpora.random_split(items, 0.8, seed=cfg.seed)
        train, val = corpora.random_split(trainval, 0.9, seed=cfg.seed + 1)
        return train, val, test
    rest, test = corpora.split_by_speakers(items, cfg.test_speakers)
    train, val = corpora.split_by_speakers(rest, cfg.val_speakers)
    return train, val, test


@torch.no_grad()
def predict(model: ResNetSER, mels: list[np.ndarray], stats: NormStats | list[NormStats]) -> tuple[np.ndarray, np.ndarray]:
    """Full-length clips one at a time -> (probabilities ``(N, C)``, embeddings ``(N, D)``).

    ``stats``: one normalisation for all clips, or one per clip (speaker normalisation).
    """
    model.eval()
    device = next(model.parameters()).device  # the model's, CPU or GPU; results come back as numpy
    per_clip = stats if isinstance(stats, list) else [stats] * len(mels)
    probs, embs = [], []
    with torch.no_grad():
        for m, st in zip(mels, per_clip):
            x = torch.from_numpy(st.apply(m))[None, None].to(device)
            logits, emb = model(x)
            probs.append(torch.softmax(logits, -1)[0].cpu().numpy())
            embs.append(emb[0].cpu().numpy())
    return np.stack(probs), np.stack(embs)


def train_ser(cfg: SERTrainConfig, settings: MelSettings = DEFAULT_MEL) -> dict:
    """Train; write ``ser.safetensors`` / ``ser.json`` (best on validation) into ``cfg.out``."""
    _check_preset(cfg)
    out = Path(cfg.out)
    if (out / "loso.json").exists():
        raise EmortError(f"{out} holds leave-one-speaker-out folds; give this run its own --out")
    device = resolve_device(cfg.device)
    d: Dist = init_distributed(device)
    seed_everything(cfg.seed, d.rank)
    labels = list(EMOTIONS)
    items = corpora.only_canonical(corpora.read_specs(cfg.data), tuple(labels))
    train, val, test = make_splits(items, cfg)
    if cfg.fit_val:
        # Validation is still computed (and logged) but on speakers now seen in training.
        train = train + val
    if cfg.split == "speakers" and not test and cfg.test_speakers:
        log.warning("none of the test speakers %s are in the data: no clips are held out for testing", cfg.test_speakers)
    if not train or not val:
        raise EmortError("the split left no training or validation clips; check --data and the speaker lists")
    log.info("SER split: %d train / %d val / %d test clips", len(train), len(val), len(test))

    mels_tr = load_mels(train, settings, progress=cfg.progress and d.is_main)
    mels_va = load_mels(val, settings, progress=False)
    stats = NormStats.fit(mels_tr)
    if cfg.norm == "speaker":
        stats_tr = per_speaker_stats(mels_tr, [i.speaker_key for i in train])
        stats_va: NormStats | list[NormStats] = per_speaker_stats(mels_va, [i.speaker_key for i in val])
    elif cfg.norm == "utterance":  # the recorded "norm" is then the scale (and a zero mean)
        stats = NormStats(np.zeros_like(stats.mean), residual_std(mels_tr))
        stats_tr, stats_va = utterance_stats(mels_tr, stats.std), utterance_stats(mels_va, stats.std)
    else:
        stats_tr, stats_va = [stats] * len(train), stats
    y_tr = np.array([labels.index(i.emotion) for i in train])
    y_va = np.array([labels.index(i.emotion) for i in val])
    norm_tr = [st.apply(m) for st, m in zip(stats_tr, mels_tr)]

    preset = SER_PRESETS[cfg.preset]
    mcfg = SERConfig(**{**preset.to_dict(), "num_classes": len(labels), "n_mels": settings.n_mels})
    model = ResNetSER(mcfg).to(device)  # built on the CPU first: the same initial weights on every device
    ddp_model: torch.nn.Module = model
    if d.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / (cfg.batch_size * d.world_size)))
    total_steps = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15) if cfg.optimizer == "adamw" else None
    weights = torch.from_numpy(class_weights(y_tr, len(labels))).to(device) if cfg.balance and not cfg.corpus_balance else None
    draw_p = cell_balanced_probs(train) if cfg.corpus_balance else None
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    eval_model = ema.module if ema is not None else model

    state = {"epoch": 0, "step": 0, "best_ua": -1.0, "best_epoch": -1, "history": [], "bad_epochs": 0}
    resumed_rngs = None
    resume = out / "ser_last.state.pt"
    if resume.exists():
        from emort.training.common import load_config

        prev_cfg = load_config(out, "ser_last")
        check_resume_frontend(prev_cfg, out)
        check_same_recipe(prev_cfg.get("train", {}), cfg, out)
        prev = SERConfig.from_dict(prev_cfg["model"])
        if prev != mcfg:  # equal shapes can hide another architecture (e.g. the stem's stride)
            raise EmortError(f"{out} was started with another architecture ({prev}); resume it with the preset it was "
                             "started with (0.1.0's `small` is now `small-v0.1`) or use a new --out")
        ck = torch.load(resume, weights_only=False, map_location="cpu")  # a GPU run's checkpoint resumes on any device
        load_weights(out, "ser_last", model)
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler"):
            # Keep this run's horizon: --epochs may have grown since the checkpoint.
            horizon = {k: v for k, v in sched.state_dict().items() if k in ("total_steps", "_schedule_phases")}
            sched.load_state_dict({**ck["scheduler"], **horizon})
        state = ck["state"]
        resumed_rngs = ck.get("rngs")
        if (ema is None) != (ck.get("ema") is None):  # the saved best model is the average iff EMA is on
            raise EmortError(f"{out} was trained {'without' if ema is not None else 'with'} --ema; resume it the same way, or use a new --out")
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        log.info("resumed from epoch %d%s", state["epoch"], f", batch {state['batch']}" if state.get("batch") else "")

    frames = int(round(cfg.crop_s * settings.frames_per_second))
    run_config = {
        "kind": "ser",
        "emort_version": __version__,
        "frontend_version": FRONTEND_VERSION,
        "model": mcfg.to_dict(),
        "preset": cfg.preset,
        "mel": settings.to_dict(),
        "labels": labels,
        "norm": stats.to_dict(),
        "train": asdict(cfg),
        "device": str(device),
        "split": {"train": len(train), "val": len(val), "test": len(test),
                  "train_speakers": sorted({i.speaker_key for i in train}),
                  "val_speakers": sorted({i.speaker_key for i in val}),
                  "val_in_train": cfg.fit_val,
                  "test_speakers": sorted({i.speaker_key for i in test})},
    }
    t0 = time.time()
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank)
    rng = np.random.default_rng(cfg.seed * 1000 + d.rank + 7)
    started = state["epoch"] or state.get("batch")  # a run cut by --max-steps may stop within its first epoch
    if started and resumed_rngs is not None and d.world_size == 1:
        # crops, SpecAugment, mixup and dropout draw on from where the run stopped (0.23 re-seeded them,
        # replaying the first epochs' draws): cut at an epoch's end and resumed, the run ends as one run straight through
        gen.set_state(resumed_rngs["torch"])
        rng.bit_generator.state = resumed_rngs["numpy"]
        torch.set_rng_state(resumed_rngs["torch_global"])
        if device.type == "cuda" and resumed_rngs.get("cuda") is not None:  # dropout on a GPU draws from its own generator
            torch.cuda.set_rng_state(resumed_rngs["cuda"], device)
    elif started:  # a checkpoint of 0.23 or earlier, or several ranks: at least not the first steps' draws again
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + 7919 * state["step"])
        rng = np.random.default_rng([cfg.seed, d.rank, state["step"]])

    progress = None
    if cfg.progress and d.is_main:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]SER[/] {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
        progress.start()
        task = progress.add_task("epochs", total=cfg.epochs, completed=state["epoch"])

    def save_last(st: dict) -> None:
        save_checkpoint(out, "ser_last", model, run_config, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else None, "state": st,
                                                           "ema": ema.state_dict() if ema is not None else None,
                                                           "rngs": {"torch": gen.get_state(), "numpy": rng.bit_generator.state,
                                                                    "torch_global": torch.get_rng_state(),
                                                                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}})

    stopped = "early_stopping" if state["bad_epochs"] >= cfg.patience else "epochs"
    stop = stopped == "early_stopping"  # re-running an early-stopped run trains no further
    cut = 0  # batches done when --max-steps stops the run before an epoch's end
    while state["epoch"] < cfg.epochs and not stop:
        model.train()
        # Every rank draws the same permutation and takes its own shard.
        epoch_rng = epoch_permutation_rng(cfg.seed, state["epoch"])
        perm = epoch_rng.choice(len(train), size=len(train), p=draw_p) if draw_p is not None else epoch_rng.permutation(len(train))
        perm = perm[d.rank :: d.world_size]
        # An epoch cut by --max-steps goes on at its next batch, with the losses of its first part.
        first, losses = state.pop("batch", 0), state.pop("epoch_losses", [])
        for b in range(first, steps_per_epoch):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            if len(idx) == 0:
                idx = perm[: cfg.batch_size]
            if cfg.warp or cfg.stretch or cfg.gain_db:
                raw = augment_batch([mels_tr[i] for i in idx], frames, rng, settings, cfg.warp, cfg.stretch, cfg.gain_db)
                # utterance normalisation takes the augmented clip's own mean (a gain must not survive it)
                st = utterance_stats(raw, stats.std) if cfg.norm == "utterance" else [stats_tr[i] for i in idx]
                x = torch.from_numpy(np.stack([crop_or_pad(s.apply(m), frames, rng) for s, m in zip(st, raw)]))[:, None]
            else:
                x = torch.from_numpy(np.stack([crop_or_pad(norm_tr[i], frames, rng) for i in idx]))[:, None]
            y = torch.from_numpy(y_tr[idx])
            if cfg.specaugment:
                x = spec_augment(x, gen)
            # every draw above is made on the CPU, so a GPU run sees the batches of a CPU run
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.mixup_alpha > 0:
                lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                j = torch.from_numpy(rng.permutation(len(idx))).to(device)
                x = lam * x + (1 - lam) * x[j]
                logits, _ = ddp_model(x)
                loss = lam * F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing) + (1 - lam) * F.cross_entropy(
                    logits, y[j], weight=weights, label_smoothing=cfg.label_smoothing
                )
            else:
                logits, _ = ddp_model(x)
                loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None and state["step"] < total_steps - 1:
                sched.step()
            if ema is not None:
                ema.update_parameters(model)
            state["step"] += 1
            losses.append(loss.item())
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                stop, stopped = True, "step_limit"
                cut = b + 1 if b + 1 < steps_per_epoch else 0
                break
        probs, _ = predict(eval_model, mels_va, stats_va)
        rep = classification_report(y_va, probs.argmax(1), labels)
        train_loss = all_reduce_mean(float(np.mean(losses)), d)
        entry = {"epoch": state["epoch"] + 1, "loss": train_loss, "val_wa": rep.wa, "val_ua": rep.ua, "minutes": (time.time() - t0) / 60}
        if cut:
            # The epoch is not finished: the checkpoint resumes at its next batch, with the selection
            # (best, patience) as it was, so the resumed run is the run made straight through. Its part
            # is reported, and is the model only while there is none (a cut within the first epoch).
            partial = {**entry, "partial": True}
            if d.is_main:
                log.info("epoch %d cut after %d of %d batches by --max-steps: loss %.3f val WA %.3f UA %.3f", entry["epoch"], cut,
                         steps_per_epoch, train_loss, rep.wa, rep.ua)
                if state["best_epoch"] < 0:
                    save_checkpoint(out, "ser", eval_model, {**run_config, "best": _best_record(cfg, entry, "part of the first epoch (cut by --max-steps)")})
                save_last({**state, "batch": cut, "epoch_losses": losses})
            break
        state["epoch"] += 1
        state["history"].append(entry)
        improved = rep.ua > state["best_ua"] or cfg.fit_val  # fit_val: the last epoch is the model
        if improved:
            state["best_ua"], state["best_epoch"], state["bad_epochs"] = rep.ua, state["epoch"], 0
        else:
            state["bad_epochs"] += 1
        if d.is_main:
            log.info("epoch %d loss %.3f val WA %.3f UA %.3f%s", state["epoch"], train_loss, rep.wa, rep.ua, " *" if improved else "")
            if progress is not None:
                progress.update(task, advance=1, description=f"loss {train_loss:.3f} val UA {rep.ua:.3f} (best {state['best_ua']:.3f})")
            if improved:
                selection = "last epoch (--fit-val: the validation speakers were trained on)" if cfg.fit_val else "best validation UA"
                save_checkpoint(out, "ser", eval_model, {**run_config, "best": _best_record(cfg, entry, selection)})
            save_last(state)
        if state["bad_epochs"] >= cfg.patience:
            stop, stopped = True, "early_stopping"
        elif cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes and state["epoch"] < cfg.epochs:
            stop, stopped = True, "time_limit"
        stop = rank0_decides(stop, d)  # every rank leaves the loop together
    if progress is not None:
        progress.stop()

    # Why it stopped: a LOSO re-run resumes folds cut by a time or step limit.
    result = {"history": state["history"], "best_epoch": state["best_epoch"], "best_val_ua": state["best_ua"], "stopped": stopped,
              "fit_val": cfg.fit_val, "device": str(device)}
    if cut:
        result["history"] = state["history"] + [partial]
        if state["best_epoch"] < 0:  # the part is the model
            result["best_epoch"], result["best_val_ua"] = partial["epoch"], partial["val_ua"]
    if d.is_main:
        load_weights(out, "ser", model)
        finalize_ser(out, model, train, settings, stats_tr, labels)
        write_json_atomic(out / "ser_history.json", result)
    cleanup_distributed()
    return result


def input_norm(run_cfg: dict) -> str:
    """A run's input normalisation: "global", "speaker" or "utterance" (runs before 0.3.0 are global)."""
    return run_cfg.get("train", {}).get("norm", "global")


def eval_stats(run_cfg: dict, mels: list[np.ndarray], items: list[corpora.Item]) -> NormStats | list[NormStats]:
    """The normalisation a run's model expects for these clips: its global statistics, or
    (speaker-normalised runs) each test speaker's own, fitted on its unlabelled clips."""
    if input_norm(run_cfg) == "speaker":
        return per_speaker_stats(mels, [i.speaker_key for i in items])
    if input_norm(run_cfg) == "utterance":
        return utterance_stats(mels, NormStats.from_dict(run_cfg["norm"]).std)
    return NormStats.from_dict(run_cfg["norm"])


def finalize_ser(out: Path, model: ResNetSER, train: list[corpora.Item], settings: MelSettings, stats: NormStats | list[NormStats],
                 labels: list[str]) -> None:
    """Per-emotion centroid embeddings over the training clips (the diffusion model's targets)."""
    mels = load_mels(train, settings, progress=False)
    _, emb = predict(model, mels, stats)
    y = np.array([labels.index(i.emotion) for i in train])
    centroids = {lab: emb[y == k].mean(axis=0).tolist() for k, lab in enumerate(labels) if (y == k).any()}
    cfg = json.loads((out / "ser.json").read_text())
    cfg["centroids"] = centroids
    write_json_atomic(out / "ser.json", cfg)


def load_ser(run_dir: str | Path) -> tuple[ResNetSER, dict]:
    """Model (eval mode) + its config from a run folder."""
    from emort.training.common import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir, "ser")
    model = ResNetSER(SERConfig.from_dict(cfg["model"]))
    load_weights(run_dir, "ser", model)
    model.eval()
    return model, cfg
