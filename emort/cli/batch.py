"""Batch plumbing for ``emort enhance`` / ``emort score``: input discovery, output mapping, reports."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emort.runtime.audio import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class Job:
    path: Path  # input file
    rel: Path  # path relative to the argument it was found under (mirrored under --out)
    explicit: bool = False  # named on the command line (not found by walking a folder)

    @property
    def root(self) -> Path:
        """The input argument it was found under, resolved (its own folder for a file named explicitly)."""
        return Path(*self.path.parts[: len(self.path.parts) - len(self.rel.parts)]).resolve()


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
                jobs.append(Job(p, Path(p.name), explicit=True))
        else:
            errors.append({"path": str(p), "error": f"{p}: no such file or folder"})
    return jobs, errors


def speaker_groups(jobs: list[Job], pattern: str | None = None) -> tuple[dict[str, list[Job]], list[dict]]:
    r"""Jobs grouped by speaker for per-speaker scoring, plus error records for files left out.

    Without ``pattern`` a folder is a speaker (keyed by its resolved path, so ``a/`` and
    ``b/../a`` are one group). With ``pattern`` (a regular expression searched in the file
    name without its extension) the first non-empty group, or else the whole match, names
    the speaker: ``^(\d\d)`` for EmoDB's ``03a01Fa.wav``, ``-(\d\d)$`` for RAVDESS. Speakers
    are kept apart per input argument (EmoDB's ``03`` is not RAVDESS's ``03``) but are
    gathered across sub-folders of one argument. Raises ``ValueError`` for an invalid pattern.
    """
    groups: dict[str, list[Job]] = {}
    errors: list[dict] = []
    if pattern is None:
        names: dict[Path, str] = {}
        for j in jobs:
            key = names.setdefault(j.path.parent.resolve(), str(j.path.parent))
            groups.setdefault(key, []).append(j)
        return groups, errors
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"--speaker-pattern {pattern!r} is not a valid regular expression: {e}") from None
    keyed: list[tuple[Path, str, Job]] = []
    for j in jobs:
        m = rx.search(j.path.stem)
        key = (next((g for g in m.groups() if g), None) if rx.groups else m.group(0)) if m else None
        if not key:  # no match, or an empty / non-participating group: no speaker to normalise with
            errors.append({"path": str(j.path), "error": f"{j.path}: file name gives no speaker with --speaker-pattern {pattern!r}; not scored"})
            continue
        keyed.append((j.root, key, j))
    several_roots = len({r for r, _, _ in keyed}) > 1
    for root, key, j in keyed:
        groups.setdefault(f"{root}:{key}" if several_roots else key, []).append(j)
    return groups, errors


def output_path(job: Job, out_dir: Path) -> Path:
    return out_dir / job.rel.with_suffix(".wav")


def plan_outputs(jobs: list[Job], out_dir: Path) -> tuple[list[tuple[Job, Path]], list[dict]]:
    """Map jobs to outputs; refuse (per file) any output that is an input or is claimed twice.

    Inputs found inside ``out_dir`` (outputs of an earlier run) are not inputs.
    """
    out_root = out_dir.resolve()
    # When --out lies inside an input folder, files found there are earlier outputs, not inputs.
    def earlier_output(j: Job) -> bool:
        if j.explicit:
            return False
        root = j.root
        return out_root != root and root in out_root.parents and out_root in j.path.resolve().parents

    jobs = [j for j in jobs if not earlier_output(j)]
    inputs = {j.path.resolve() for j in jobs}
    claims: dict[Path, list[Job]] = {}
    planned: list[tuple[Job, Path]] = []
    errors: list[dict] = []
    for j in jobs:
        claims.setdefault(output_path(j, out_dir).resolve(), []).append(j)
    for dst, js in claims.items():
        if len(js) > 1:
            names = ", ".join(str(j.path) for j in js)
            for j in js:
                errors.append({"path": str(j.path), "error": f"{j.path}: several inputs would write {dst} ({names}); enhance them into separate --out folders"})
        elif dst in inputs:
            errors.append({"path": str(js[0].path), "error": f"{js[0].path}: output {dst} would overwrite an input; choose another --out"})
        else:
            planned.append((js[0], output_path(js[0], out_dir)))
    return planned, errors


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
