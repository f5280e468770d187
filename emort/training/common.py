"""Shared training plumbing: seeding, torchrun/DDP, checkpoints (safetensors + JSON)."""

from __future__ import annotations

import gc
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from emort.runtime.atomic import atomic_write, write_json_atomic


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python's, numpy's and torch's global generators. Rank 0 takes ``seed`` itself; another rank
    a draw of the SeedSequence ``[seed, rank]`` (``seed + rank``, 0.24.0 and earlier, gave seed 0's
    rank 1 the dropout of seed 1's rank 0)."""
    if rank:
        seed = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    #: Where this rank's collectives put their tensors: nccl (CUDA training) takes only CUDA tensors.
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# The process group init_distributed created (if any) and how many init_distributed calls
# still use it: nested callers (a script around a trainer) share it, the last cleanup ends it.
_OWN_GROUP = False
_USERS = 0


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device a trainer runs on, from ``--device``.

    ``auto``: a CUDA GPU when torch sees one, else the CPU; ``cpu``; ``cuda`` or ``cuda:N``. Under
    ``torchrun`` a CUDA run takes GPU ``LOCAL_RANK`` (one GPU per process, the usual DDP layout), and
    ``cuda:N`` is refused there. Raises EmortError (one line) for an unknown name, or a CUDA device
    that this torch cannot use (a CPU build, no driver, ``CUDA_VISIBLE_DEVICES`` empty, N too large).
    """
    from emort.runtime.errors import EmortError

    name = "auto" if name is None else name.strip().lower()
    head, colon, index = name.partition(":")
    if head not in DEVICE_CHOICES or (colon and (head != "cuda" or not index.isdigit())):
        hint = " (an NVIDIA GPU is cuda)" if head == "gpu" else ""
        raise EmortError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N{hint}")
    if head == "cpu" or (head == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise EmortError(f"--device {name}: this torch is a CPU-only build ({torch.__version__}); train with --device cpu, "
                             "or install a CUDA build of torch on a GPU host")
        raise EmortError(f"--device {name}: this torch is built for CUDA {torch.version.cuda} but sees no GPU (check the NVIDIA "
                         "driver and CUDA_VISIBLE_DEVICES); or train with --device cpu")
    local = os.environ.get("LOCAL_RANK")
    if local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if index:
            raise EmortError(f"--device {name}: under torchrun each process takes GPU LOCAL_RANK; give --device cuda")
        if int(local) >= torch.cuda.device_count():
            raise EmortError(f"--device {name}: process LOCAL_RANK={local} needs a GPU of its own and torch sees "
                             f"{torch.cuda.device_count()}; start at most that many per host (--nproc_per_node) or train with --device cpu")
        index = local
    k = int(index or 0)
    if k >= torch.cuda.device_count():
        raise EmortError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", k)


def init_distributed(device: torch.device | str = "cpu") -> Dist:
    """Join the process group when launched by ``torchrun``: gloo for CPU training, nccl for CUDA
    (``device``, from :func:`resolve_device`; nccl takes CUDA tensors only, so the choice follows the
    device the trainer uses, not whether a GPU exists). A group that is already set up is used as is;
    ``cleanup_distributed`` ends a group only when this function created it and every call has been
    matched by a cleanup."""
    global _OWN_GROUP, _USERS
    device = torch.device(device)
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return Dist(device=str(device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _OWN_GROUP, _USERS = True, 0
    _USERS += 1
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), device=str(device))


def cleanup_distributed() -> None:
    """Counterpart of ``init_distributed``. A caller's group survives a trainer: re-creating
    one in the same torchrun process is unreliable with gloo (stale rendezvous keys)."""
    global _OWN_GROUP, _USERS
    _USERS = max(0, _USERS - 1)
    if _OWN_GROUP and _USERS == 0 and dist.is_initialized():
        # Ordered teardown: every rank past its last collective, and the DDP reducers of
        # finished trainers (which hold the group and gloo work) collected, before the group
        # ends. Without it one rank could abort at exit ("terminate called without an
        # active exception") while the other was still tearing down.
        if sys.exc_info()[0] is None:  # unwinding an error, the other ranks may never get here: no barrier
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
        _OWN_GROUP = False


def rank0_decides(flag: bool, d: Dist) -> bool:
    """Rank 0's value of ``flag`` on every rank, so that rank-local decisions (a clock, early
    stopping on validation) make all ranks leave a training loop together."""
    if d.world_size == 1:
        return flag
    t = torch.tensor([float(bool(flag))], device=d.device)
    dist.broadcast(t, 0)
    return bool(t.item())


def all_reduce_mean(x: float, d: Dist) -> float:
    if d.world_size == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return float(t.item()) / d.world_size


def data_key(specs) -> list[str]:
    """``--data`` specs compared by kind and resolved path (``emodb=../x`` and ``emodb=/abs/x`` are one)."""
    from emort.training.corpora import parse_data_spec

    out = []
    for spec in specs or []:
        kind, path = parse_data_spec(spec)
        out.append(f"{kind}={Path(path).resolve()}")
    return sorted(out)


def check_same_run(prev: dict, now: dict, fields: tuple[str, ...], where: Path, defaults: dict | None = None) -> None:
    """Refuse to continue the run in ``where`` (its saved options ``prev``) with other values of
    ``fields`` in ``now`` (``asdict`` of this command's options): what it trains on (``data``, the
    speakers held out, the seed) and how, so a resumed run never mixes two. One line naming each
    difference. ``defaults``: values of fields a run of an earlier version did not record."""
    defaults = defaults or {}
    diff = []
    for k in fields:
        a, b = prev.get(k, defaults.get(k)), now.get(k)
        if k == "data":
            a, b = data_key(a), data_key(b)
        if a != b:
            diff.append(f"{k}={a!r} (now {b!r})")
    if diff:
        from emort.runtime.errors import EmortError

        raise EmortError(f"{where} was started with other options: {'; '.join(diff)}; continue it with the options it was "
                         "started with, or use a new --out")


def save_checkpoint(run_dir: Path, name: str, model: torch.nn.Module, config: dict, state: dict | None = None) -> None:
    """``name.safetensors`` (weights) + ``name.json`` (config); ``name.state.pt`` (optimizer etc.)
    for resuming. Each file is written atomically (:mod:`emort.runtime.atomic`)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / f"{name}.safetensors", lambda tmp: save_file(sd, tmp))
    write_json_atomic(run_dir / f"{name}.json", config)
    if state is not None:
        atomic_write(run_dir / f"{name}.state.pt", lambda tmp: torch.save(state, tmp))


def load_weights(run_dir: Path, name: str, model: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(run_dir / f"{name}.safetensors")))


def load_config(run_dir: Path, name: str) -> dict:
    p = Path(run_dir) / f"{name}.json"
    if not p.exists():
        from emort.runtime.errors import EmortError

        raise EmortError(f"{p}: not found; is {run_dir} a training run folder?")
    return json.loads(p.read_text())
