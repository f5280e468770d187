"""Diffusion training loop (``emort train diffusion``): v-prediction DDPM over normalised mels.

We predict v (Salimans & Ho 2022) rather than epsilon: its x0 estimate stays
well-conditioned at high noise, which matters for few-step image-to-image
editing. Classifier-free-guidance dropout replaces the emotion embedding with
a learned null embedding. The style reference is a *different* clip of the
same speaker, so style carries who speaks but not this clip's emotion, and the
emotion embedding remains the only emotion signal the model can rely on.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from emort import __version__
from emort.runtime.atomic import write_json_atomic
from emort.runtime.bundle import sha256_file
from emort.runtime.errors import EmortError
from emort.runtime.samplers import NoiseSchedule
from emort.runtime.settings import MelSettings
from emort.training import corpora
from emort.training.common import (
    Dist,
    all_reduce_mean,
    cleanup_distributed,
    init_distributed,
    load_config,
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
    crop_or_pad,
    load_mels,
    model_rate_audio,
)
from emort.training.models.denoiser import Denoiser, DenoiserConfig
from emort.training.models.style import StyleConfig, StyleEncoder
from emort.training.ser import input_norm, load_ser, predict

log = logging.getLogger(__name__)


@dataclass
class DiffusionTrainConfig:
    data: list[str]
    ser: str
    out: str
    channels: list[int] = field(default_factory=lambda: [96, 144, 192])
    blocks_per_level: int = 2
    steps: int = 4000
    batch_size: int = 24
    lr: float = 3e-4
    crop_s: float = 2.0
    p_uncond: float = 0.15
    # Condition on a random mix of the clip's own SER embedding and its label's centroid
    # (lambda ~ U(0, 1)): the SER embedding alone is a weak emotion signal that the model
    # learned to ignore; the mix keeps every intensity (own -> centroid) in distribution.
    centroid_mix: bool = True
    ema_decay: float = 0.999
    schedule: str = "cosine"
    prediction: str = "v"
    sample_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True
    # Warm start from another diffusion run's EMA weights (same architecture), e.g. after the
    # SER was retrained: denoising carries over, the emotion conditioning re-adapts.
    init_from: str | None = None
    # Where to train (emort.training.common.resolve_device): "auto" = a CUDA GPU when torch sees one.
    # A resumed run may go on on another device (the batches and noise are drawn on the CPU either way).
    device: str = "auto"


def warmup_cosine_lr(base: float, step: int, steps: int) -> float:
    """The learning rate at ``step`` of ``steps``: linear warm-up over 200 steps, then a cosine
    decay to a tenth of ``base``."""
    return base * min(1.0, (step + 1) / 200) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        pairs = list(zip(self.shadow.state_dict().values(), model.state_dict().values()))
        floats = [(s, p.detach()) for s, p in pairs if s.dtype.is_floating_point]
        if floats:  # the per-tensor s * d + p * (1 - d) of 0.31, as two multi-tensor kernels (a GPU launches ~400 fewer)
            shadow, params = map(list, zip(*floats))
            torch._foreach_mul_(shadow, d)
            torch._foreach_add_(shadow, params, alpha=1 - d)
        for s, p in pairs:
            if not s.dtype.is_floating_point:
                s.copy_(p)


class DiffusionModel(torch.nn.Module):
    """Denoiser + style encoder, trained end to end; exported as two ONNX graphs."""

    def __init__(self, dcfg: DenoiserConfig, scfg: StyleConfig):
        super().__init__()
        self.denoiser = Denoiser(dcfg)
        self.style = StyleEncoder(scfg)


def torch_model_fn(model: DiffusionModel):
    """Adapter: the runtime's ``ModelFn`` signature (numpy in/out) over a torch denoiser."""

    @torch.no_grad()
    def fn(x, t, emotion, mask, style):
        dev = next(model.parameters()).device
        args = [torch.from_numpy(a).to(dev) for a in (x, t, emotion, mask, style)]
        return model.denoiser(*args).cpu().numpy()

    return fn


def held_out_speakers(ser_cfg: dict) -> tuple[set[str], set[str]]:
    """``(held out, validation)`` speakers of a diffusion run conditioned on the SER run ``ser_cfg``:
    the SER run's test and validation speakers and the project's (:mod:`emort.training.splits`).
    The SER run records only those of the corpora it read, so a corpus it did not read would
    otherwise give its test speakers to the diffusion model (0.23 did)."""
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    val = set(ser_cfg["split"]["val_speakers"]) | set(VAL_SPEAKERS)
    return set(ser_cfg["split"]["test_speakers"]) | set(TEST_SPEAKERS) | val, val


def train_diffusion(cfg: DiffusionTrainConfig) -> dict:
    device = resolve_device(cfg.device)
    d: Dist = init_distributed(device)
    seed_everything(cfg.seed, d.rank)
    out = Path(cfg.out)
    ser_model, ser_cfg = load_ser(cfg.ser)
    if input_norm(ser_cfg) != "global":
        # The denoiser works on globally normalised mels of single clips; so must its conditioning SER.
        what = "is a per-speaker SER (--norm speaker)" if input_norm(ser_cfg) == "speaker" else f"was trained with norm = {input_norm(ser_cfg)!r}"
        raise EmortError(f"{cfg.ser} {what}; condition the diffusion model on a global one")
    ser_sha = sha256_file(Path(cfg.ser) / "ser.safetensors")
    settings = MelSettings.from_dict(ser_cfg["mel"])
    labels = ser_cfg["labels"]
    stats = NormStats.from_dict(ser_cfg["norm"])
    held_out, val_speakers = held_out_speakers(ser_cfg)
    items = corpora.only_canonical(corpora.read_specs(cfg.data), tuple(labels))
    train, _ = corpora.split_by_speakers(items, held_out)
    val = [i for i in items if i.speaker_key in val_speakers]
    log.info("diffusion: %d training clips (test and validation speakers excluded)", len(train))
    if not train:
        raise EmortError("no training clips left after excluding the SER run's validation/test speakers (was it trained with --split random?)")

    mels = load_mels(train, settings, progress=cfg.progress and d.is_main)
    norm = [stats.apply(m) for m in mels]
    _, emb = predict(ser_model, mels, stats)  # per-utterance SER embeddings, (N, E)
    emb_t = torch.from_numpy(emb.astype(np.float32))
    centroid_t = None
    if cfg.centroid_mix:
        missing = sorted({it.emotion for it in train} - set(ser_cfg.get("centroids", {})))
        if missing:
            raise EmortError(f"{cfg.ser}: no SER centroid for {', '.join(missing)} (did the SER run finish?); or train with --no-centroid-mix")
        centroid_t = torch.from_numpy(np.stack([np.asarray(ser_cfg["centroids"][it.emotion], np.float32) for it in train]))
    by_speaker: dict[str, list[int]] = {}
    for k, it in enumerate(train):
        by_speaker.setdefault(it.speaker_key, []).append(k)

    dcfg = DenoiserConfig(n_mels=settings.n_mels, channels=list(cfg.channels), blocks_per_level=cfg.blocks_per_level, emotion_dim=emb.shape[1])
    scfg = StyleConfig(n_mels=settings.n_mels)
    model = DiffusionModel(dcfg, scfg).to(device)  # built on the CPU first: the same initial weights on every device
    if d.world_size > 1:  # ranks seed differently: start all from rank 0's weights (gradients are averaged by hand below)
        for p in model.state_dict().values():
            torch.distributed.broadcast(p, 0)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = NoiseSchedule(kind=cfg.schedule)
    ac = torch.from_numpy(schedule.alphas_cumprod.astype(np.float32)).to(device)
    state = {"step": 0, "history": []}
    resumed_rngs = None
    resuming = (out / "diffusion_last.state.pt").exists()
    if resuming:
        prev_cfg = load_config(out, "diffusion_last")
        check_resume_frontend(prev_cfg, out)
        # what it trains on and what it learns (0.23: other --data, seed or centroid mixing were taken
        # silently); the optimiser's settings and this session's limits (steps, minutes) may change
        from emort.training.common import check_same_run

        same = ("data", "channels", "blocks_per_level", "crop_s", "p_uncond", "centroid_mix", "schedule", "prediction", "seed")
        check_same_run(prev_cfg.get("train", {}), asdict(cfg), tuple(k for k in same if k in prev_cfg.get("train", {})), out)
        prev_sha = prev_cfg.get("ser_sha256")
        if prev_sha and prev_sha != ser_sha:
            raise EmortError(f"{out} was trained on the embeddings of another SER than {cfg.ser}; resume it with that SER, "
                             "or start a new --out with --init-from to adapt it to this one")
        if "train_speakers" in prev_cfg:  # same --data, but the held-out speakers (SER run's, emort's) may have changed since
            was, now = set(prev_cfg["train_speakers"]), set(by_speaker)
            if was != now:
                diff = [f"{what} {', '.join(sorted(spk))}" for what, spk in (("adds", now - was), ("leaves out", was - now)) if spk]
                raise EmortError(f"{out} was trained on other speakers than this session would be: it {' and '.join(diff)} "
                                 "(the speakers held out by the SER run or by emort changed since); start a new --out")
        if cfg.init_from:
            log.warning("%s holds a run: resuming it; --init-from %s is ignored", out, cfg.init_from)
        ck = torch.load(out / "diffusion_last.state.pt", weights_only=False, map_location="cpu")  # resumes on any device
        load_weights(out, "diffusion_last", model)
        load_weights(out, "diffusion", ema.shadow)
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        resumed_rngs = ck.get("rngs")
        log.info("resumed at step %d", state["step"])
    init_speakers: list[str] = []
    if cfg.init_from:  # the starting weights' speakers are this model's too: none may be one it holds out
        prev = load_config(Path(cfg.init_from), "diffusion")
        init_speakers = sorted(set(prev.get("train_speakers", [])) | set((prev.get("init_from") or {}).get("train_speakers", [])))
        leak = sorted(set(init_speakers) & held_out)
        if leak:
            raise EmortError(f"--init-from {cfg.init_from}: its weights were trained on {', '.join(leak)}, which this run holds "
                             "out (test or validation speakers); start from a run that held them out too")
    if cfg.init_from and not resuming:  # a new run: warm start
        if prev["denoiser"] != dcfg.to_dict() or prev["style"] != scfg.to_dict():
            raise EmortError(f"--init-from {cfg.init_from}: its denoiser/style architecture differs from this run's")
        load_weights(Path(cfg.init_from), "diffusion", model)
        ema = EMA(model, cfg.ema_decay)
        log.info("warm start from %s", cfg.init_from)

    run_config = {
        "kind": "diffusion",
        "emort_version": __version__,
        "frontend_version": FRONTEND_VERSION,
        "denoiser": dcfg.to_dict(),
        "style": scfg.to_dict(),
        "schedule": schedule.to_dict(),
        "prediction": cfg.prediction,
        "mel": settings.to_dict(),
        "labels": labels,
        "ser_run": str(cfg.ser),
        # The conditioning space: export refuses to pair this model with another SER.
        "ser_sha256": ser_sha,
        "train": asdict(cfg),
        "device": str(device),
        "train_speakers": sorted(by_speaker),
        "held_out_speakers": sorted(held_out & {i.speaker_key for i in items}),  # those of its --data
        # the starting weights' run and speakers (its own and those it started from): a warm start is trained on them too
        **({"init_from": {"run": str(cfg.init_from), "train_speakers": init_speakers}} if cfg.init_from else {}),
    }
    frames = int(round(cfg.crop_s * settings.frames_per_second / dcfg.stride)) * dcfg.stride
    pad_value = ((np.log(settings.log_floor) - stats.mean) / stats.std).astype(np.float32)  # silence, per band
    rng = np.random.default_rng(cfg.seed * 1000 + d.rank)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + 1)
    if state["step"] and resumed_rngs is not None and d.world_size == 1:
        # a resumed run draws on from where it stopped: the same model as one run straight through
        rng.bit_generator.state = resumed_rngs["numpy"]
        gen.set_state(resumed_rngs["torch"])
    elif state["step"]:  # a checkpoint of 0.23 or earlier, or several ranks: at least not the batches of steps 0, 1, ...
        rng = np.random.default_rng([cfg.seed, d.rank, state["step"]])
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + 1 + 7919 * state["step"])
    start_step = state["step"]  # > 0 when resumed
    t0 = time.time()
    progress = None
    if cfg.progress and d.is_main:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(TextColumn("[bold]diffusion[/] {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn())
        progress.start()
        task = progress.add_task("", total=cfg.steps, completed=state["step"])
    losses: list[float] = []

    def crop(k: int) -> np.ndarray:
        # Short clips are padded with the normalised silence level (per band), not the mean.
        return crop_or_pad(norm[k] - pad_value[:, None], frames, rng, 0.0) + pad_value[:, None]

    model.train()
    while state["step"] < cfg.steps:
        idx = rng.integers(0, len(train), cfg.batch_size)
        x0 = torch.from_numpy(np.stack([crop(k) for k in idx]))
        ref = [int(rng.choice(by_speaker[train[k].speaker_key])) for k in idx]
        style_in = torch.from_numpy(np.stack([crop(k) for k in ref]))
        t = torch.randint(0, schedule.num_train_steps, (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        mask = (torch.rand(cfg.batch_size, 1, generator=gen) > cfg.p_uncond).float()
        emotion = emb_t[idx]
        if centroid_t is not None:
            lam = torch.rand(cfg.batch_size, 1, generator=gen)
            emotion = lam * emotion + (1 - lam) * centroid_t[idx]
        # every draw above is made on the CPU (in the order of 0.31 and earlier), so a GPU run sees a CPU run's batches
        x0, noise, t, mask, emotion, style_in = (v.to(device, non_blocking=True) for v in (x0, noise, t, mask, emotion, style_in))
        a = ac[t].sqrt()[:, None, None]
        s = (1 - ac[t]).sqrt()[:, None, None]
        xt = a * x0 + s * noise
        target = a * noise - s * x0 if cfg.prediction == "v" else noise
        style = model.style(style_in)
        pred = model.denoiser(xt, t.float(), emotion, mask, style)
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if d.world_size > 1:  # data-parallel: average gradients across ranks (gloo on CPU)
            for p in model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= d.world_size
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr = warmup_cosine_lr(cfg.lr, state["step"], cfg.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        ema.update(model, state["step"])
        state["step"] += 1
        losses.append(loss.item())
        if progress is not None:
            progress.update(task, advance=1, description=f"loss {np.mean(losses[-50:]):.4f}")
        done = state["step"] >= cfg.steps or (cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes)
        if cfg.max_minutes:  # a rank-local clock: every rank follows rank 0
            done = rank0_decides(bool(done), d)
        if state["step"] % cfg.checkpoint_every == 0 or done:
            mean_loss = all_reduce_mean(float(np.mean(losses)), d)
            state["history"].append({"step": state["step"], "loss": mean_loss, "minutes": (time.time() - t0) / 60})
            losses = []
            if d.is_main:
                log.info("step %d loss %.4f", state["step"], mean_loss)
                save_checkpoint(out, "diffusion", ema.shadow, run_config)
                save_checkpoint(out, "diffusion_last", model, run_config, {"optimizer": opt.state_dict(), "state": state,
                                                                             "rngs": {"numpy": rng.bit_generator.state, "torch": gen.get_state()}})
        if d.is_main and cfg.sample_every and (state["step"] % cfg.sample_every == 0 or done) and val:
            write_samples(out / "samples" / f"step{state['step']:06d}", ema.shadow, ser_model, ser_cfg, val[:2], settings, stats, schedule, cfg.prediction)
        if done:
            break
    if progress is not None:
        progress.stop()
    if d.is_main:
        write_json_atomic(out / "diffusion_history.json", state["history"])
    cleanup_distributed()
    return {"steps": state["step"], "started_at": start_step, "history": state["history"], "device": str(device)}


def write_samples(folder: Path, model: DiffusionModel, ser_model, ser_cfg: dict, items, settings, stats, schedule, prediction) -> None:
    """Enhance a few validation clips toward 'angry': PNG of mels before/after + wav."""
    from emort.runtime.audio import write_wav_atomic
    from emort.runtime.editing import DiffusionSpec, EditOptions, edit_mel, target_embedding
    from emort.runtime.frontend import apply_mel_gain, log_mel

    folder.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu()  # a few clips, once in a while: on the CPU, whatever trains
    fn = torch_model_fn(model)
    centroid = np.asarray(ser_cfg["centroids"]["angry"], np.float32)
    for it in items:
        x = model_rate_audio(it.path, settings.sample_rate)  # the runtime's signal path
        mel = log_mel(x, settings)
        src = stats.apply(mel)
        _, emb = predict(ser_model, [mel], stats)
        with torch.no_grad():
            style = model.style(torch.from_numpy(src)[None]).numpy()[0]
        opts = EditOptions(strength=0.5, guidance=3.0, steps=10, method="dpmpp")
        out = edit_mel(fn, src, target_embedding(emb[0], centroid, 1.0), style, opts, DiffusionSpec(schedule, prediction, model.denoiser.config.stride))
        out_mel = out * stats.std[:, None] + stats.mean[:, None]
        wav = apply_mel_gain(x, mel, out_mel, settings)
        stem = Path(it.path).stem
        write_wav_atomic(folder / f"{stem}_angry.wav", wav, settings.sample_rate)
        try:
            from emort.training.plots import plot_mels

            plot_mels(mel, out_mel, str(folder / f"{stem}_angry.png"), f"{stem}: {it.emotion} -> angry")
        except ImportError:  # matplotlib is optional: the wav samples are enough
            pass


def load_diffusion(run_dir: str | Path) -> tuple[DiffusionModel, dict]:
    from emort.training.common import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir, "diffusion")
    model = DiffusionModel(DenoiserConfig.from_dict(cfg["denoiser"]), StyleConfig.from_dict(cfg["style"]))
    load_weights(run_dir, "diffusion", model)
    model.eval()
    return model, cfg
