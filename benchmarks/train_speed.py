"""``python benchmarks/train_speed.py``: training speed on the CPU and, where torch sees one, a CUDA GPU.

In-process rows: one optimiser step of each trainer's network at its shipped size, on random
batches of the trainer's shape (forward, backward, gradient clipping where the trainer clips,
AdamW, and the diffusion trainer's EMA update), median of ``--repeats`` steps after ``--warmup``;
on a GPU each step is closed by ``torch.cuda.synchronize()``. These exclude batch assembly, which
the trainers do on the CPU (random crops; emort.training.diffusion / emort.training.ser).

Whole-process rows (``--data SPEC`` with ``--ser RUN_OR_BUNDLE``): ``emort train diffusion`` for
``--trainer-steps`` steps on each device as a fresh process: the training loop's steps per second from
the run's own history (batch assembly on the CPU included), and the wall time with start-up, mel
extraction and SER embeddings.

Prints a table and writes JSON (``--json``); the machine section names the CPU and the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timing import machine_info, measure, print_and_write, run_timed, timed  # noqa: E402


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ser_step(torch, device, batch: int, seconds: float, compile_model: bool = False):
    """One step of ``emort train ser``'s default network (``small``) on a random batch."""
    import torch.nn.functional as F

    from emort.runtime.settings import EMOTIONS, MelSettings
    from emort.training.models.ser import SER_PRESETS, ResNetSER, SERConfig
    from emort.training.ser import SERTrainConfig

    cfg = SERTrainConfig(data=[], out="")
    mel = MelSettings()
    model = ResNetSER(SERConfig(**{**SER_PRESETS[cfg.preset].to_dict(), "num_classes": len(EMOTIONS), "n_mels": mel.n_mels})).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net = torch.compile(model) if compile_model else model
    frames = int(round(seconds * mel.frames_per_second))
    x = torch.randn(batch, 1, mel.n_mels, frames, device=device)
    y = torch.randint(0, len(EMOTIONS), (batch,), device=device)

    def step():
        logits, _ = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(torch, device)

    return step, sum(p.numel() for p in model.parameters())


def diffusion_step(torch, device, batch: int, seconds: float, compile_model: bool = False):
    """One step of ``emort train diffusion``'s default denoiser and style encoder on a random batch."""
    from emort.runtime.settings import MelSettings
    from emort.training.diffusion import EMA, DiffusionModel, DiffusionTrainConfig
    from emort.training.models.denoiser import DenoiserConfig
    from emort.training.models.ser import SER_PRESETS
    from emort.training.models.style import StyleConfig
    from emort.training.ser import SERTrainConfig

    cfg = DiffusionTrainConfig(data=[], ser="", out="")
    mel = MelSettings()
    emb_dim = SER_PRESETS[SERTrainConfig(data=[], out="").preset].embedding_dim  # the default SER's, which conditions it
    dcfg = DenoiserConfig(n_mels=mel.n_mels, channels=list(cfg.channels), blocks_per_level=cfg.blocks_per_level, emotion_dim=emb_dim)
    model = DiffusionModel(dcfg, StyleConfig(n_mels=mel.n_mels)).to(device)
    model.train()
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    denoiser, style = (torch.compile(model.denoiser), torch.compile(model.style)) if compile_model else (model.denoiser, model.style)
    frames = int(round(seconds * mel.frames_per_second / dcfg.stride)) * dcfg.stride
    xt = torch.randn(batch, mel.n_mels, frames, device=device)
    ref = torch.randn(batch, mel.n_mels, frames, device=device)
    target = torch.randn(batch, mel.n_mels, frames, device=device)
    t = torch.randint(0, 1000, (batch,), device=device).float()
    emotion = torch.randn(batch, emb_dim, device=device)
    mask = torch.ones(batch, 1, device=device)
    n = [0]

    def step():
        pred = denoiser(xt, t, emotion, mask, style(ref))
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, n[0])
        n[0] += 1
        _sync(torch, device)

    return step, sum(p.numel() for p in model.parameters())


def trainer_row(device: str, data: list[str], ser: str, steps: int) -> dict:
    """``emort train diffusion`` as a fresh process on ``device``: loop steps/s from its history, and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "emort", "train", "diffusion", *sum((["--data", d] for d in data), []), "--ser", ser,
               "--out", str(out), "--steps", str(steps), "--sample-every", "0", "--device", device]
        r, wall, cpu = run_timed(cmd)
        if r.returncode != 0 or not (out / "diffusion_history.json").is_file():
            return {"device": device, "status": "failed", "why": (r.stderr or r.stdout or f"exit {r.returncode}").strip().splitlines()[-1:]}
        hist = json.loads((out / "diffusion_history.json").read_text())
        minutes = hist[-1]["minutes"]
        return {"device": device, "status": "ok", "steps": hist[-1]["step"], "loop_s": minutes * 60,
                "steps_per_s": hist[-1]["step"] / (minutes * 60), "wall_s": wall, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda (skipped with its reason where torch sees no GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each row (default 3)")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per row at most (default 20; see --budget-s)")
    ap.add_argument("--budget-s", type=float, default=20.0, help="stop a row's timed steps after this many seconds (at least 3 steps)")
    ap.add_argument("--data", action="append", default=[], help="KIND=PATH for the whole-process trainer rows (repeatable)")
    ap.add_argument("--ser", default=None, help="SER run or bundle for the trainer rows")
    ap.add_argument("--trainer-steps", type=int, default=100, help="steps of each whole-process trainer row (default 100)")
    ap.add_argument("--batch-scale", default="1", help="comma-separated multiples of each trainer's default batch to time (e.g. 1,4,16)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd networks (the trainers do not compile: a measurement "
                    "of what it would give; the first compiled step's seconds are reported)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    named = [d.strip() for d in args.devices.split(",") if d.strip()]
    bad = [d for d in named if d not in ("cpu", "cuda")]
    if bad or not named:
        ap.error(f"--devices: {', '.join(bad) or 'none given'}: choose cpu and/or cuda")
    try:
        scales = [int(k) for k in args.batch_scale.split(",")]
    except ValueError:
        scales = []
    if not scales or min(scales) < 1:
        ap.error(f"--batch-scale: whole numbers >= 1, comma-separated (got {args.batch_scale!r})")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = {"ser": (32, 3.0, ser_step), "diffusion": (24, 2.0, diffusion_step)}  # the trainers' default batch and crop
    rows, devices = [], [d.strip() for d in args.devices.split(",") if d.strip()]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            rows.append({"device": "cuda", "status": "skipped", "why": f"torch {torch.__version__} sees no CUDA GPU"})
            continue
        device = torch.device(dev)
        for name, (batch0, seconds, make) in shapes.items():
            for scale in scales:
                for compiled in (False, True) if args.compile else (False,):
                    batch = batch0 * scale
                    torch.manual_seed(0)
                    step, params = make(torch, device, batch, seconds, compiled)
                    first = timed(step)  # compilation, allocator and cuDNN's first choices
                    m = measure(step, warmup=args.warmup, repeats=args.repeats, budget_s=args.budget_s)
                    rows.append({"device": dev, "status": "ok", "model": name, "compiled": compiled, "params": params, "batch": batch,
                                 "crop_s": seconds, "first_step_s": first, **m, "steps_per_s": 1e3 / m["median_ms"],
                                 "clips_per_s": batch * 1e3 / m["median_ms"]})
    trainer = []
    if args.data and args.ser:
        for dev in devices:
            if dev == "cuda" and not torch.cuda.is_available():
                trainer.append({"device": "cuda", "status": "skipped", "why": [f"torch {torch.__version__} sees no CUDA GPU"]})
                continue
            trainer.append(trainer_row(dev, args.data, args.ser, args.trainer_steps))

    info = machine_info(torch.get_num_threads())
    info["torch_cuda"] = torch.version.cuda
    lines = [f"Training speed, emort {info['emort']}; CPU: {info['cpu_model']} ({info['cores_usable']} usable cores, "
             f"torch threads {info['threads']}); GPU: {info.get('gpu', 'none')}", "",
             "| trainer network | device | params | batch x crop | first step s | median ms/step | steps timed | steps/s | clips/s | vs CPU, same batch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cpu_ms = {(r["model"], r["batch"]): r["median_ms"] for r in rows if r.get("status") == "ok" and r["device"] == "cpu" and not r["compiled"]}
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| (all) | {r['device']} | skipped: {r['why']} | | | | | | | |")
            continue
        key = (r["model"], r["batch"])
        ratio = f"{cpu_ms[key] / r['median_ms']:.1f}x" if key in cpu_ms else "-"
        name = r["model"] + (", torch.compile" if r["compiled"] else "")
        lines.append(f"| {name} | {r['device']} | {r['params'] / 1e6:.2f} M | {r['batch']} x {r['crop_s']:g} s | {r['first_step_s']:.1f} | "
                     f"{r['median_ms']:.1f} | {r['runs']} | {r['steps_per_s']:.2f} | {r['clips_per_s']:.0f} | {ratio} |")
    if trainer:
        lines += ["", f"Whole process, `emort train diffusion --steps {args.trainer_steps}` ({', '.join(args.data)}):", "",
                  "| device | loop steps/s | loop s | wall s (start-up, mels, SER embeddings included) |", "|---|---|---|---|"]
        for r in trainer:
            if r["status"] != "ok":
                lines.append(f"| {r['device']} | {r['status']}: {' '.join(r['why'])} | | |")
            else:
                lines.append(f"| {r['device']} | {r['steps_per_s']:.2f} | {r['loop_s']:.1f} | {r['wall_s']:.1f} |")
    print_and_write("\n".join(lines), {"machine": info, "rows": rows, "trainer": trainer, "args": {k: str(v) for k, v in vars(args).items()}},
                    args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
