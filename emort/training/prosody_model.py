"""A companion conditional diffusion model over prosody contours (issue 18, "emotion-conditioned
prosody"), and the per-clip prosody plan it gives. Measured against the shipped table plan in
docs/eval/conversion/prosody_model/ (not shipped unless that report says so).

* Representation: per mel frame (hop 256 at 22,050 Hz, :func:`emort.runtime.prosody.prosody_features`,
  the runtime's one definition): continuous log-F0 (voiced frames' natural log of Hz, linearly
  interpolated through unvoiced frames, held at the ends), voicing (+1 / -1) and frame energy
  (natural log of the mean mel magnitude); log-F0 and energy z-scored with the training clips'
  statistics. ``(3, frames)``.
* Model: the mel model's own recipe (:mod:`emort.training.diffusion`) over these three channels:
  the same 1-D U-Net denoiser (:class:`emort.training.models.denoiser.Denoiser`, smaller widths)
  and style encoder (style from *another* clip of the same speaker, so it carries the speaker's
  pitch level and range, not this clip's emotion), v-prediction, cosine schedule, conditioned on
  the same SER's embedding mixed with its label's centroid, classifier-free-guidance dropout.
* Plan (:func:`plan_edit`): the clip's contour noised to step ``t`` (``PLAN_T``), the model's clean
  estimate under the target's centroid minus that under the clip's own SER embedding (style from
  the clip itself), averaged over ``PLAN_DRAWS`` noise draws: the change of emotion, the rest held.
  F0 level shift = the median of that difference over the clip's voiced frames (semitones); F0
  range factor = the ratio of the two estimates' log-F0 spreads over those frames; level = the mean
  energy difference over them (dB). The contour grid cannot carry timing: tempo stays the table's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from emort.runtime.atomic import atomic_write, write_json_atomic
from emort.runtime.frontend import NATS_TO_DB
from emort.runtime.prosody import SEMITONE, prosody_features
from emort.runtime.samplers import NoiseSchedule
from emort.training.common import resolve_device
from emort.training.data import NormStats
from emort.training.diffusion import EMA, warmup_cosine_lr
from emort.training.models.denoiser import Denoiser, DenoiserConfig
from emort.training.models.style import StyleConfig, StyleEncoder

log = logging.getLogger(__name__)

CHANNELS = ("log_f0", "voiced", "energy")
PLAN_T = 600  # of 1000 training steps: noisy enough that the condition decides, the clip's contour still read
PLAN_DRAWS = 8


def continuous_log_f0(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Log-F0 with unvoiced frames filled by linear interpolation between voiced ones (held at the
    ends); zeros when no frame is voiced."""
    v = np.flatnonzero(voiced)
    if len(v) == 0:
        return np.zeros(len(log_f0))
    return np.interp(np.arange(len(log_f0)), v, log_f0[v])


def raw_contours(wav: np.ndarray, sample_rate: int, settings) -> np.ndarray:
    """``(3, frames)`` float64: continuous log-F0 (nats of Hz), voicing (+1 / -1), energy (nats)."""
    pf = prosody_features(wav, sample_rate, settings)
    voiced = pf["voiced"]
    n = min(len(voiced), len(pf["energy"]))
    return np.stack([continuous_log_f0(pf["log_f0"], voiced)[:n], np.where(voiced[:n], 1.0, -1.0), pf["energy"][:n]])


def fit_contour_norm(contours: list[np.ndarray]) -> NormStats:
    """Per-channel statistics of the training contours (:func:`raw_contours`): log-F0 over voiced
    frames, energy over all; voicing (+1 / -1) left as it is."""
    lf0 = np.concatenate([c[0][c[1] > 0] for c in contours])
    en = np.concatenate([c[2] for c in contours])
    return NormStats(np.array([lf0.mean(), 0.0, en.mean()], np.float32), np.array([lf0.std(), 1.0, en.std()], np.float32))


@dataclass
class ContourTrainConfig:
    out: str
    channels: list[int] = field(default_factory=lambda: [64, 96, 128])
    steps: int = 4000
    batch_size: int = 32
    lr: float = 3e-4
    crop_s: float = 2.0
    p_uncond: float = 0.15
    ema_decay: float = 0.999
    seed: int = 0
    max_minutes: float | None = None
    device: str = "auto"  # emort.training.common.resolve_device


class ContourModel(torch.nn.Module):
    def __init__(self, dcfg: DenoiserConfig, scfg: StyleConfig):
        super().__init__()
        self.denoiser = Denoiser(dcfg)
        self.style = StyleEncoder(scfg)


def _crop(c: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    if c.shape[1] >= frames:
        a = int(rng.integers(0, c.shape[1] - frames + 1))
        return c[:, a : a + frames]
    return np.pad(c, ((0, 0), (0, frames - c.shape[1])), mode="edge")


def train_contour_model(cfg: ContourTrainConfig, contours: list[np.ndarray], embeddings: np.ndarray, centroids: np.ndarray,
                        speakers: list[str], settings, meta: dict) -> dict:
    """Train on raw contours (:func:`raw_contours`) with each clip's SER embedding ``(N, E)``, its
    label's centroid ``(N, E)`` and speaker; writes ``out/contour_model.pt`` (EMA weights, configs,
    the contour normalisation and ``meta``) and returns the loss history."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    norm = fit_contour_norm(contours)
    x_all = [norm.apply(c) for c in contours]
    dcfg = DenoiserConfig(n_mels=len(CHANNELS), channels=list(cfg.channels), emotion_dim=embeddings.shape[1])
    scfg = StyleConfig(n_mels=len(CHANNELS))
    device = resolve_device(cfg.device)
    model = ContourModel(dcfg, scfg).to(device)  # built on the CPU: the same initial weights on every device
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ac = torch.from_numpy(NoiseSchedule(kind="cosine").alphas_cumprod.astype(np.float32)).to(device)
    by_spk: dict[str, list[int]] = {}
    for k, s in enumerate(speakers):
        by_spk.setdefault(s, []).append(k)
    frames = int(round(cfg.crop_s * settings.sample_rate / settings.hop_length / dcfg.stride)) * dcfg.stride
    emb_t, cen_t = torch.from_numpy(embeddings.astype(np.float32)), torch.from_numpy(centroids.astype(np.float32))
    history, losses, t0 = [], [], time.time()
    for step in range(cfg.steps):
        idx = rng.integers(0, len(x_all), cfg.batch_size)
        x0 = torch.from_numpy(np.stack([_crop(x_all[k], frames, rng) for k in idx]))
        ref = torch.from_numpy(np.stack([_crop(x_all[int(rng.choice(by_spk[speakers[k]]))], frames, rng) for k in idx]))
        t = torch.randint(0, len(ac), (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        lam = torch.rand(cfg.batch_size, 1, generator=gen)
        emotion = lam * emb_t[idx] + (1 - lam) * cen_t[idx]
        mask = (torch.rand(cfg.batch_size, 1, generator=gen) > cfg.p_uncond).float()
        x0, ref, t, noise, emotion, mask = (v.to(device) for v in (x0, ref, t, noise, emotion, mask))  # drawn on the CPU
        a, s = ac[t].sqrt()[:, None, None], (1 - ac[t]).sqrt()[:, None, None]
        xt = a * x0 + s * noise
        pred = model.denoiser(xt, t.float(), emotion, mask, model.style(ref))
        loss = torch.nn.functional.mse_loss(pred, a * noise - s * x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(cfg.lr, step, cfg.steps)
        opt.step()
        ema.update(model, step)
        losses.append(loss.item())
        done = step + 1 == cfg.steps or (cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes)
        if (step + 1) % 250 == 0 or done:
            history.append({"step": step + 1, "loss": float(np.mean(losses)), "minutes": round((time.time() - t0) / 60, 2)})
            log.info("contour model step %d loss %.4f", step + 1, history[-1]["loss"])
            losses = []
            save(Path(cfg.out), ema.shadow, dcfg, scfg, norm, {**meta, "train": asdict(cfg), "device": str(device), "history": history})
        if done:
            break
    return {"history": history}


def save(out: Path, model: ContourModel, dcfg: DenoiserConfig, scfg: StyleConfig, norm: NormStats, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ck = {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "denoiser": dcfg.to_dict(), "style": scfg.to_dict(), "norm": norm.to_dict(), "meta": meta}
    atomic_write(out / "contour_model.pt", lambda tmp: torch.save(ck, tmp))
    write_json_atomic(out / "contour_model.json", {"denoiser": dcfg.to_dict(), "style": scfg.to_dict(), "norm": norm.to_dict(), **meta})


def load(out: str | Path) -> tuple[ContourModel, NormStats, dict]:
    ck = torch.load(Path(out) / "contour_model.pt", weights_only=False, map_location="cpu")
    model = ContourModel(DenoiserConfig.from_dict(ck["denoiser"]), StyleConfig.from_dict(ck["style"]))
    model.load_state_dict(ck["state"])
    return model.eval(), NormStats.from_dict(ck["norm"]), ck["meta"]


@torch.no_grad()
def plan_edit(model: ContourModel, norm: NormStats, raw: np.ndarray, own_embedding: np.ndarray, target: np.ndarray,
              t: int = PLAN_T, draws: int = PLAN_DRAWS, seed: int = 0) -> dict[str, float] | None:
    """The model's prosody change of one clip toward the conditioning vector ``target`` (the target
    emotion's centroid): ``{"semitones", "f0_range", "loudness_db"}`` at the full change (share 1),
    or None with fewer than 10 voiced frames. ``raw``: :func:`raw_contours` of the clip;
    ``own_embedding``: its SER embedding."""
    voiced = raw[1] > 0
    if voiced.sum() < 10:
        return None
    x = norm.apply(raw)
    stride = model.denoiser.config.stride
    n = x.shape[1]
    pad = (-n) % stride
    xp = torch.from_numpy(np.pad(x, ((0, 0), (0, pad)), mode="edge"))[None]
    style = model.style(xp)
    ac = NoiseSchedule(kind="cosine").alphas_cumprod
    a, s = math.sqrt(ac[t]), math.sqrt(1 - ac[t])
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((draws, *xp.shape[1:]), generator=gen)
    xt = a * xp.expand(draws, -1, -1) + s * noise
    tt = torch.full((draws,), float(t))
    ones = torch.ones(draws, 1)
    st = style.expand(draws, -1)
    est = {}
    for name, cond in (("target", target), ("own", own_embedding)):
        e = torch.from_numpy(np.asarray(cond, np.float32))[None].expand(draws, -1)
        v = model.denoiser(xt, tt, e, ones, st)
        est[name] = (a * xt - s * v).numpy()[:, :, :n]  # x0 from v
    sd_lf0, sd_en = norm.std[0], norm.std[2]
    d_lf0 = (est["target"][:, 0] - est["own"][:, 0])[:, voiced] * sd_lf0  # nats of Hz
    d_en = (est["target"][:, 2] - est["own"][:, 2])[:, voiced] * sd_en
    spread = lambda z: np.std(z[:, voiced], axis=1) + 1e-6  # noqa: E731
    log_range = float(np.mean(np.log(spread(est["target"][:, 0]) / spread(est["own"][:, 0]))))
    return {"semitones": float(np.median(d_lf0.mean(0)) / SEMITONE), "f0_range": math.exp(log_range),
            "loudness_db": float(NATS_TO_DB * d_en.mean())}
