"""Batch plumbing for ``emort enhance`` / ``emort score``: input discovery, output mapping, reports."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emort.runtime.audio import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class Job:
    path: Path  # input file
    rel: Path  # path relative to the argument it was found under (mirrored under --out)


def discover(paths: list[str]) -> tuple[list[Job], list[dict]]:
    """Files and folders (recursive) -> jobs, plus error records for arguments that do not exist.

    A file named explicitly is always a job (a non-audio file then fails with a clear
    error); inside folders only files with audio extensions are taken.
    """
    jobs: list[Job] = []
    errors: list[dict] = []
    seen: set[Path] = set()
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith("."):
                    r = f.resolve()
                    if r not in seen:
                        seen.add(r)
                        jobs.append(Job(f, f.relative_to(p)))
        elif p.is_file():
            r = p.resolve()
            if r not in seen:
                seen.add(r)
                jobs.append(Job(p, Path(p.name)))
        else:
            errors.append({"path": str(p), "error": f"{p}: no such file or folder"})
    return jobs, errors


def output_path(job: Job, out_dir: Path) -> Path:
    return out_dir / job.rel.with_suffix(".wav")


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
