"""Batches of files and folders: the one library path behind ``emort enhance`` and ``emort score``.

``discover`` turns command-line paths into jobs and accounts for every path it does not
take; ``enhance_files`` and ``score_files`` are generators that yield one typed record per
file (or per skipped tree) and go on after a per-file error. Nothing here imports torch:
this is the runtime layer, usable from Python exactly as the CLI uses it.

Output folders of ``enhance_files`` carry a marker, ``.emort-output.json``, that records the
settings each output was made with. It serves two purposes: a later run does not take an
earlier run's outputs as inputs (a folder holding the marker is skipped when found inside an
input tree; where the marker records single output files, only those files are), and a re-run
skips an output only when it was made with the same settings.

Scale-out: ``Shard`` splits a batch deterministically for job arrays (each shard writes its
own marker file, so shards never race on one), ``merge_reports`` joins the shards' JSON
reports, and ``enhance_files(compute=...)`` runs the edits elsewhere (``emort.cli.cluster``:
a Ray actor pool) while reading, writing, the marker and the records stay in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from emort import __version__
from emort.runtime import errors as E
from emort.runtime.atomic import Claims, exclusive_lock, write_json_atomic
from emort.runtime.audio import Audio, read_audio, write_wav_atomic
from emort.runtime.editing import MAX_BAND_DB
from emort.runtime.settings import format_emotion_mix, parse_emotion_mix

#: Marker file in every folder ``enhance_files`` writes to (its root): format, and per output the settings.
MARKER = ".emort-output.json"
#: Lock file beside :data:`MARKER`: a marker's read-merge-write is exclusive (two runs into one folder).
MARKER_LOCK = ".emort-output.lock"
#: How long a run waits, at its end, for another run to finish the outputs it is making (s, all of
#: them together); beyond it a file still claimed fails as ``in-progress``. One output takes seconds (a 10-minute 96 kHz clip about 30 s).
CLAIM_WAIT_S = 120.0
MARKER_FORMAT = "emort-output"
MARKER_VERSION = 1
#: Marker of one shard's outputs, beside :data:`MARKER` (``.emort-output.shard-3-of-8.json``).
SHARD_MARKER = re.compile(r"^\.emort-output\.shard-(\d+)-of-(\d+)\.json$")
#: The only output format: ``--out`` names a file when it ends in one of these.
OUTPUT_SUFFIXES = (".wav",)

# libsndfile's container formats -> the file extensions they use. RAW (headerless: rate and
# encoding unknown) and MAT4/MAT5 (``.mat`` is nearly always MATLAB data, not sound) are left out.
_FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"), "AVR": (".avr",), "CAF": (".caf",),
    "FLAC": (".flac",), "HTK": (".htk",), "IRCAM": (".sf", ".ircam"), "MP3": (".mp3",), "MPC2K": (".mpc2k",),
    "NIST": (".nist", ".sph"), "OGG": (".ogg", ".oga", ".opus"), "PAF": (".paf",), "PVF": (".pvf",),
    "RF64": (".rf64",), "SD2": (".sd2",), "SDS": (".sds",), "SVX": (".svx", ".8svx"), "VOC": (".voc",),
    "W64": (".w64",), "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "WVE": (".wve",), "XI": (".xi",),
}
_NOT_SOUND_FORMATS = {"RAW", "MAT4", "MAT5"}


def _readable_suffixes() -> frozenset[str]:
    suffixes = {".mp3", ".ogg", ".oga", ".opus"}  # libsndfile >= 1.1 decodes MP3 and Ogg Opus
    for fmt in sf.available_formats():
        if fmt not in _NOT_SOUND_FORMATS:
            suffixes.update(_FORMAT_SUFFIXES.get(fmt, ("." + fmt.lower(),)))
    return frozenset(suffixes)


#: Extensions taken from folders: what the installed libsndfile reads (``soundfile.available_formats()``).
AUDIO_SUFFIXES: frozenset[str] = _readable_suffixes()
#: Audio extensions libsndfile cannot read (AAC/ALAC in MP4, WMA, ...): counted and reported, not taken.
UNSUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".asf", ".ape", ".wv", ".amr", ".3gp", ".webm", ".mka", ".ac3",
     ".eac3", ".dts", ".ra", ".tta", ".dsf", ".dff", ".spx", ".mpc"} - AUDIO_SUFFIXES
)

#: Exit status of a batch command (the CLI's contract, stated in its --help).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


# --- records -----------------------------------------------------------------------------------


@dataclass
class Record:
    """What happened to one path. ``status``: ``written`` / ``scored`` (done), ``skipped`` or ``failed``.

    ``reason``: a short code for skipped and failed paths (see :data:`REASONS`); ``error``: the
    one-line message of a failure; ``note``: what a skip or a result should be read with;
    ``count``: how many files one record stands for (the files without an audio extension of
    one kind, counted together), else None (one path: a file, or a folder skipped whole
    without counting what it holds). ``index``: in a sharded run (:class:`Shard`), the record's
    position in the order an unsharded run gives (so :func:`merge_reports` can restore it),
    else None.
    """

    path: str
    status: str
    reason: str | None = None
    error: str | None = None
    note: str | None = None
    count: int | None = None
    index: int | None = None

    @property
    def files(self) -> int:
        return 1 if self.count is None else self.count

    def to_dict(self) -> dict:
        """The record as JSON-ready dict; fields that do not apply (None) are left out. Values
        are plain (numbers, strings, flat dicts and lists of them), so one level of copying is
        the deep copy ``dataclasses.asdict`` makes, without its recursion (408 records: 46 ms of
        an `emort score` run's 1.3 s, all of it after the scoring)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = dict(v) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else v
        return out

    @classmethod
    def like(cls, other: Record):
        """``other``'s common fields in this record type."""
        return cls(**{f.name: getattr(other, f.name) for f in fields(Record)})


#: Every ``Record.status`` a report holds.
STATUSES = ("written", "scored", "skipped", "failed")

#: Codes of ``Record.reason`` and what they mean (summaries and JSON reports use the codes).
REASONS: dict[str, str] = {
    "done": "output exists, made with the same settings",
    "emort-output": "an earlier emort output folder (not taken as input)",
    "hidden": "hidden file or folder",
    "unsupported": "audio format this reader cannot decode",
    "not-audio": "no audio file extension",
    "not-a-file": "not a regular file",
    "missing": "no such file or folder",
    "permission": "permission denied",
    "unreadable": "not readable as audio",
    "invalid-audio": "empty, silent, non-finite or too long",
    "duplicate": "the same file as another input (a link, or named twice): taken once",
    "collision": "output would overwrite an input or another output",
    "other-settings": "output exists, made with other or unknown settings",
    "in-progress": "another run was still making this output (not made twice)",
    "other-input": "output exists, made from another input (or the input changed since)",
    "unrecorded": "output exists with no record of its settings (another program's, or a killed run's)",
    "output-changed": "output exists, but changed since emort wrote it",
    "write": "output could not be written",
    "no-speaker": "no speaker in the file name",
    "no-reference": "no reference clips for the speaker",
    "reference-unreadable": "reference clip not usable",
    "error": "other error",
    "internal": "unexpected internal error",
}


@dataclass
class EnhanceRecord(Record):
    """One input of :func:`enhance_files`. Scores are SER probabilities per emotion (sum 1).

    ``duration_s``/``sample_rate``: the input's (the output has the same rate, and the same
    length unless the prosody edit changed the tempo);
    ``change_db``: mean |change| of the log-mel applied, dB; ``guidance``: the multiplier used;
    ``seconds``: compute time of the edit; ``prediction``: the output's top emotion.
    """

    output: str | None = None
    emotion: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    scores_before: dict[str, float] | None = None
    scores_after: dict[str, float] | None = None
    prediction: str | None = None
    change_db: float | None = None
    guidance: float | None = None
    seconds: float | None = None
    f0_shift_st: float | None = None  # prosody (``--prosody``): F0 level change, semitones
    f0_range: float | None = None  # F0 range factor
    tempo: float | None = None  # tempo factor (> 1 faster; the output lasts duration_s / tempo)
    loudness_db: float | None = None  # level change, dB


#: ``ScoreRecord.method``: how a clip was normalised before the SER (``+stats``: fused with the
#: utterance-statistics classifier; ``+clip-stats``: a speaker of fewer than ``MIN_GROUP`` clips,
#: fused with the single-clip classifier).
SCORE_METHODS = ("single-clip", "single-clip+stats", "per-speaker", "per-speaker+stats", "per-speaker+clip-stats", "reference",
                 "reference+stats")


@dataclass
class ScoreRecord(Record):
    """One input of :func:`score_files`. ``method``: one of :data:`SCORE_METHODS`.

    ``speaker_group``: the speaker the clip was normalised with (per-speaker modes);
    ``group_size``: that speaker's clips in the batch; ``reference_size``: clips of the
    speaker's originals whose statistics normalised it (``reference`` modes). ``note`` holds
    what concerns the clip's speaker (the same for each of its clips), ``clip_note`` what
    concerns this clip alone (a clip that does not sound like its speaker's reference clips).
    """

    duration_s: float | None = None
    sample_rate: int | None = None
    prediction: str | None = None
    scores: dict[str, float] | None = None
    method: str | None = None
    speaker_group: str | None = None
    group_size: int | None = None
    reference_size: int | None = None
    fused: bool | None = None
    clip_note: str | None = None


def failure_reason(exc: BaseException) -> str:
    """The :data:`REASONS` code of an exception raised while reading or processing one file."""
    if isinstance(exc, E.MissingAudioError):
        return "missing"
    if isinstance(exc, E.CorruptAudioError):
        return "unreadable"
    if isinstance(exc, E.AudioError):
        return "invalid-audio"
    if isinstance(exc, PermissionError):
        return "permission"
    if isinstance(exc, E.EmortError):
        return "error"
    return "internal"


def _one_line(path: object, exc: BaseException) -> str:
    """A user-readable one-liner for ``exc`` about ``path``; EmortError messages already name the file."""
    esc = E.flat  # a line break in a file name stays visible and keeps the line whole
    if isinstance(exc, E.EmortError):  # emort's messages are one line, but for the paths they name
        msg = esc(exc) if str(exc) else type(exc).__name__
        return msg if esc(path) in msg else f"{esc(path)}: {msg}"
    if isinstance(exc, OSError):
        return f"{esc(path)}: {exc.strerror or exc}" + (f" ({esc(exc.filename)})" if exc.filename and str(exc.filename) != str(path) else "")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{esc(path)}: {type(exc).__name__}: {text}".rstrip(": ")


# --- discovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    path: Path  # input file
    rel: Path  # path relative to the argument it was found under (mirrored under --out)
    explicit: bool = False  # named on the command line (not found by walking a folder)

    @property
    def root(self) -> Path:
        """The input argument it was found under, resolved (its own folder for a file named explicitly)."""
        return Path(*self.path.parts[: len(self.path.parts) - len(self.rel.parts)]).resolve()


def _earlier_outputs(d: Path) -> tuple[bool, set[str]] | None:
    """What the marker in ``d`` says: None when there is none; else (whether the whole folder is
    emort's output, the normalised paths of the outputs it records). An unreadable marker counts
    as a whole output folder (skipped, as before markers recorded single files)."""
    try:
        if not (d / MARKER).is_file():  # sharded runs create it too, beside their own
            return None
    except OSError:
        return None
    try:
        m = OutputMarker(d)
    except E.EmortError:
        return True, set()
    return m.stored_scope != "files", {os.path.normpath(os.path.join(d, rel)) for rel in m.outputs}


def _is_marker_name(name: str) -> bool:
    return name in (MARKER, MARKER_LOCK) or SHARD_MARKER.match(name) is not None


def discover(paths: Sequence[str | os.PathLike], skip_output_trees: bool = False,
             exclude: str | os.PathLike | None = None, whole_if_only_outputs: bool = False) -> tuple[list[Job], list[Record]]:
    """Files and folders (searched recursively) -> jobs, plus a record for every path not taken.

    In folders, files with an extension in :data:`AUDIO_SUFFIXES` are taken; files with an
    extension in :data:`UNSUPPORTED_SUFFIXES`, hidden files and folders, sub-folders that
    cannot be listed and files that are not regular files each get a record; files with no
    audio extension are counted, one record per argument. A file named on the command line
    is always a job (an undecodable one then fails with a clear error), unless its extension
    is a known unsupported one. ``skip_output_trees``: sub-folders holding :data:`MARKER`
    (outputs of an earlier ``enhance_files``) are skipped, as is ``exclude`` (the output
    folder of this run); an argument itself is always walked. Where the marker records
    single output files (``--out file.wav``), the folder is walked and only those files are
    skipped, in an argument too. ``whole_if_only_outputs``: a folder argument in which that
    skipping leaves nothing but emort's outputs is walked again without it (``emort score
    enhanced/``). The same file reached twice is one job, and one ``duplicate`` record for each other path. Jobs keep the order of the arguments,
    sorted by path within each.
    """
    jobs: list[Job] = []
    records: list[Record] = []
    seen: dict[Path, int] = {}  # resolved -> its job's index
    excluded = Path(exclude).resolve() if exclude is not None else None

    def take(f: Path, rel: Path, explicit: bool, resolved: Path | None = None) -> None:
        try:
            r = f.resolve() if resolved is None else resolved
        except (OSError, RuntimeError) as e:  # a symbolic-link loop (RuntimeError before Python 3.13)
            records.append(Record(str(f), "failed", "unreadable", f"{f}: cannot be resolved ({e})"))
            return
        if r not in seen:
            seen[r] = len(jobs)
            jobs.append(Job(f, rel, explicit))
            return
        first = jobs[seen[r]]
        if first.path.is_symlink() and not f.is_symlink():  # the file itself over a link to it found first (it sorted first)
            jobs[seen[r]], f = Job(f, rel, explicit or first.explicit), first.path
        # counted, with the path it is taken under: a link's target vanished from the report (a new user's report)
        records.append(Record(str(f), "skipped", "duplicate", note=f"{f}: the same file as {jobs[seen[r]].path} (a link, or named twice); taken once"))

    for arg in paths:
        if str(arg) == "":  # Path("") is "."; an unset shell variable must not walk the working folder
            records.append(Record(repr(str(arg)), "failed", "missing", f"{str(arg)!r}: an empty path"))
            continue
        p = Path(arg)
        try:
            st = p.stat()
        except FileNotFoundError:
            records.append(Record(str(p), "failed", "missing", f"{p}: no such file or folder"))
            continue
        except PermissionError:
            records.append(Record(str(p), "failed", "permission", f"{p}: permission denied"))
            continue
        except OSError as e:
            records.append(Record(str(p), "failed", "missing", f"{p}: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            start, noted = len(jobs), len(records)
            _walk(p, take, records, skip_output_trees, excluded)
            if (whole_if_only_outputs and skip_output_trees and len(jobs) == start
                    and any(r.reason == "emort-output" for r in records[noted:])):
                del records[noted:]
                _walk(p, take, records, False, excluded)
            jobs[start:] = sorted(jobs[start:], key=lambda j: j.rel.parts)
        elif not stat.S_ISREG(st.st_mode):
            records.append(Record(str(p), "failed", "not-a-file", f"{p}: not a regular file"))
        elif p.suffix.lower() in UNSUPPORTED_SUFFIXES:
            records.append(Record(str(p), "failed", "unsupported", _unsupported(p)))
        else:
            take(p, Path(p.name), True)
    return jobs, records


def _unsupported(p: Path) -> str:
    return f"{p}: {p.suffix.lower()} is not a format this reader decodes; convert it to WAV or FLAC first"


def _walk(root: Path, take: Callable[..., None], records: list[Record], skip_output_trees: bool,
          excluded: Path | None) -> None:
    """Depth-first walk of ``root``; symlinked folders are followed once (cycles end at the first repeat).
    A file that is not a link is taken with its real path (its folder's, resolved once, and its
    name), not resolved again: 408 files' resolutions took 20 ms of an `emort score` run."""
    other: Counter[str] = Counter()
    first_path: dict[Path, Path] = {}  # real folder -> the path it was searched under
    stack = [root]
    earlier: set[str] = set()  # single output files recorded by markers of the folders walked
    if skip_output_trees:
        found = _earlier_outputs(root)
        if found is not None and not found[0]:
            earlier |= found[1]
    while stack:
        d = stack.pop()
        real = d.resolve()
        if real in first_path:  # a link to a folder already searched (or a loop): its files are not dropped without a word
            records.append(Record(str(d), "skipped", "duplicate", note=f"{d}: the same folder as {first_path[real]} (a link); searched once"))
            continue
        first_path[real] = d
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            records.append(Record(str(d), "failed", "permission", f"{d}: permission denied (folder not searched)"))
            continue
        except OSError as e:
            records.append(Record(str(d), "failed", "missing", f"{d}: cannot list this folder ({e.strerror or e})"))
            continue
        links: list[Path] = []
        reals: list[Path] = []
        for e in entries:
            f = Path(e.path)
            try:
                is_dir = e.is_dir()
                is_file = e.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                found = _earlier_outputs(f) if skip_output_trees and not e.name.startswith(".") else None
                if e.name.startswith("."):
                    records.append(Record(str(f), "skipped", "hidden", note=f"{f}: hidden folder, not searched"))
                elif found is not None and found[0]:
                    records.append(Record(str(f), "skipped", "emort-output",
                                          note=f"{f}: an earlier output folder of emort enhance ({MARKER}); not taken (name it to take it)"))
                elif excluded is not None and f.resolve() == excluded:
                    records.append(Record(str(f), "skipped", "emort-output", note=f"{f}: this run's output folder; not taken as input"))
                else:
                    if found is not None:
                        earlier |= found[1]
                    (links if e.is_symlink() else reals).append(f)
                continue
            suffix = f.suffix.lower()
            if _is_marker_name(e.name):
                continue  # emort's own record, not an input
            if suffix in AUDIO_SUFFIXES:
                if e.name.startswith("."):
                    records.append(Record(str(f), "skipped", "hidden", note=f"{f}: hidden file, not taken"))
                elif earlier and os.path.normpath(f) in earlier:
                    records.append(Record(str(f), "skipped", "emort-output",
                                          note=f"{f}: an earlier output of emort enhance (recorded in {MARKER}); not taken (name it to take it)"))
                elif is_file or e.is_symlink():  # a broken link fails later with "no such file"
                    take(f, f.relative_to(root), False, None if e.is_symlink() else real / e.name)
                else:
                    records.append(Record(str(f), "skipped", "not-a-file", note=f"{f}: not a regular file"))
            elif suffix in UNSUPPORTED_SUFFIXES:
                records.append(Record(str(f), "skipped", "unsupported", note=_unsupported(f)))
            else:
                other[suffix or "(none)"] += 1
        # real folders popped before links to them (last in, first out), so a folder reached through a
        # link and as itself is searched as itself and the link is the one counted as a duplicate
        stack.extend(links)
        stack.extend(reals)
    n = sum(other.values())
    if n:
        kinds = ", ".join(f"{s} x{c}" for s, c in other.most_common(3)) + (", ..." if len(other) > 3 else "")
        records.append(Record(str(root), "skipped", "not-audio", note=f"{root}: {n} file(s) without an audio extension not taken ({kinds})",
                              count=n))


@dataclass
class SpeakerGroup:
    """One speaker's jobs. ``name``: shown in reports; ``match``: what ``reference`` speakers are
    matched by (the folder relative to its input argument, or the name pattern's speaker)."""

    name: str
    match: str
    jobs: list[Job] = field(default_factory=list)


def speaker_groups(jobs: list[Job], pattern: str | None = None) -> tuple[list[SpeakerGroup], list[Record]]:
    r"""Jobs grouped by speaker for per-speaker scoring, plus a failed record for each file left out.

    Without ``pattern`` a folder is a speaker (one group per resolved folder, so ``a/`` and
    ``b/../a`` are one). With ``pattern`` (a regular expression searched in the file name
    without its extension) the first non-empty group, or else the whole match, names the
    speaker: ``^(\d\d)`` for EmoDB's ``03a01Fa.wav``, ``-(\d\d)$`` for RAVDESS. Speakers are
    kept apart per input argument (EmoDB's ``03`` is not RAVDESS's ``03``) but gathered across
    sub-folders of one argument. Raises ``EmortError`` for an invalid pattern.
    """
    groups: dict[str, SpeakerGroup] = {}
    errors: list[Record] = []
    if pattern is None:
        for j in jobs:
            key = str(j.path.parent.resolve())
            if key not in groups:
                groups[key] = SpeakerGroup(str(j.path.parent), j.rel.parent.as_posix(), [])
            groups[key].jobs.append(j)
        return list(groups.values()), errors
    rx = compile_speaker_pattern(pattern)
    keyed: list[tuple[Path, str, Job]] = []
    for j in jobs:
        key = speaker_of(rx, j.path)
        if key is None:
            errors.append(Record(str(j.path), "failed", "no-speaker",
                                 f"{j.path}: file name gives no speaker with --speaker-pattern '{pattern}'; not scored"))
            continue
        keyed.append((j.root, key, j))
    several_roots = len({r for r, _, _ in keyed}) > 1
    for root, key, j in keyed:
        name = f"{root}:{key}" if several_roots else key
        groups.setdefault(name, SpeakerGroup(name, key, [])).jobs.append(j)
    return list(groups.values()), errors


def compile_speaker_pattern(pattern: str) -> re.Pattern:
    """``pattern`` compiled; EmortError (one line) when it is not a valid regular expression."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise E.EmortError(f"--speaker-pattern '{pattern}' is not a valid regular expression: {e}") from None


def speaker_of(rx: re.Pattern, path: Path) -> str | None:
    """The speaker ``rx`` reads from ``path``'s name without extension (its first non-empty group, else the
    whole match), or None (no match, or an empty match)."""
    m = rx.search(path.stem)
    if not m:
        return None
    key = next((g for g in m.groups() if g), m.group(0))  # the first non-empty group, else the whole match
    return key or None


# --- shards ------------------------------------------------------------------------------------


@dataclass
class Shard:
    """Part ``index`` of ``count`` of a batch (``--shard K/N``, 1-based), for job arrays (Slurm, Kubernetes).

    A file belongs to shard ``1 + h mod count``, ``h`` being the first 8 bytes (big-endian) of
    the SHA-256 of its key: for :func:`enhance_files` its output's path below the output
    folder (the input's path below its argument, with the output's ``.wav`` suffix), for
    :func:`score_files` its path below its argument, or its speaker in per-speaker scoring (the
    name of the speaker's argument and the folder below it, or the name pattern's speaker: a
    speaker's clips are normalised together, so they stay in one shard). A hash of the file's own relative path, rather than
    its place in the sorted list, makes the split the same on every machine (mount point,
    listing order and locale do not enter it) and independent of the other files: a file
    added or missing when one task of the array lists the folder moves no other file, so no
    file is done by two shards. The cost: shard sizes vary, by about sqrt(files / count).
    Records of paths not taken (skips, refusals, collisions) come from shard 1 only, so that
    merged reports (:func:`merge_reports`) count each once. ``found``/``taken``: the files of
    the whole batch and of this shard, set by :meth:`split`.
    """

    index: int
    count: int
    found: int = 0
    taken: int = 0

    #: How the split is made, as reports state it.
    METHOD = "sha256(path below the argument (enhance: of the output, below --out), or the speaker's argument name and speaker) mod N"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"3/8"`` -> Shard(3, 8). Raises EmortError (one line) unless 1 <= K <= N."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None or not 1 <= int(m[1]) <= int(m[2]):
            raise E.EmortError(f"--shard {text!r}: expected K/N with 1 <= K <= N (e.g. 3/8, the third of eight)")
        return cls(int(m[1]), int(m[2]))

    def holds(self, key: str) -> bool:
        """Whether the file (or speaker) with this key belongs to this shard."""
        # surrogateescape: a name that is not valid UTF-8 hashes by its bytes (a strict encode raised)
        h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big")
        return h % self.count == self.index - 1

    def split(self, items: Iterable, key: Callable[[Any], str], size: Callable[[Any], int] = lambda _: 1) -> list:
        """The items this shard holds, in their order; counts ``found``/``taken`` in files (``size`` of each item)."""
        items = list(items)
        mine = [x for x in items if self.holds(key(x))]
        self.found, self.taken = sum(size(x) for x in items), sum(size(x) for x in mine)
        return mine

    def to_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "files": self.taken, "of": self.found, "split": self.METHOD}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _number(head: list, items: list, shard: Shard | None, key: Callable[[Any], str],
            size: Callable[[Any], int] = lambda _: 1) -> tuple[list, list[tuple[int | None, Any]]]:
    """Records of paths not taken and the items to process, cut to ``shard``: each item with the
    index of its first record in the unsharded order (None unsharded); shard 1 keeps ``head``."""
    if shard is None:
        return head, [(None, x) for x in items]
    for k, r in enumerate(head):
        r.index = k
    numbered, at = [], len(head)
    for x in items:
        numbered.append((at, x))
        at += size(x)
    return (head if shard.index == 1 else []), shard.split(numbered, key=lambda t: key(t[1]), size=lambda t: size(t[1]))


# --- outputs -----------------------------------------------------------------------------------


def output_path(job: Job, out_dir: Path) -> Path:
    return Path(out_dir) / job.rel.with_suffix(".wav")


def default_out_dir(emotion: str, prosody: bool = False) -> Path:
    """``enhanced/<emotion>``: ``enhanced/angry``, or ``enhanced/sad-0.30+angry-0.70`` for a mix;
    with ``prosody`` ``enhanced/angry-prosody`` (a conversion is another edit: since 0.24 it does not
    land in, and is not refused by, the folder of the plain edit toward the same emotion)."""
    return Path("enhanced") / (emotion.replace(":", "-").replace(",", "+") + ("-prosody" if prosody else ""))


def output_is_file(out: str | os.PathLike) -> bool:
    """Whether ``--out`` names one output file: it ends in an audio extension and is not an existing folder
    (an existing folder keeps folder semantics, as earlier versions made ``result.wav/`` folders)."""
    p = Path(out)
    return p.suffix.lower() in AUDIO_SUFFIXES | UNSUPPORTED_SUFFIXES and not p.is_dir()


def check_output(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> None:
    """Refuse (EmortError, one line) an ``--out`` file name that cannot be honoured: only with one
    input file (not a folder, not several), and only ``.wav`` (the one output format); and an
    ``--out`` folder that exists as something else (a file) or lies below a file. See also
    :func:`check_output_record`."""
    root = Path(out).parent if output_is_file(out) else Path(out)
    above = next((p for p in (root, *root.parents) if p.exists()), None)
    if above is not None and above != root and not above.is_dir():
        raise E.EmortError(f"--out {out}: {above} is a file, not a folder; give another --out")
    if not output_is_file(out):
        if Path(out).exists() and not Path(out).is_dir():
            raise E.EmortError(f"--out {out}: exists and is not a folder; give a folder, or (with one input file) a name ending in .wav")
        return
    if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise E.EmortError(f"--out {out}: emort writes WAV (16-bit PCM); name the output file .wav, or give a folder")
    if len(paths) != 1:
        raise E.EmortError(f"--out {out} names one output file, but {len(paths)} inputs were given; "
                           "give one input file, or an output folder")
    if Path(paths[0]).is_dir():
        raise E.EmortError(f"--out {out} names one output file, but {paths[0]} is a folder; give one input file, or an output folder")


def check_output_record(out: str | os.PathLike) -> None:
    """Refuse (EmortError, one line) an ``--out`` whose record this version cannot take
    (:class:`OutputMarker`: a newer emort's, unreadable, or a folder in its place): what
    :func:`enhance_files` refuses when it opens the record, for a command line to check before
    its models load (a new user saw it refused, exit 2, after the loading, with a report written)."""
    root = Path(out).parent if output_is_file(out) else Path(out)
    if root.is_dir():
        OutputMarker(root)


def _output_rels(jobs: list[Job]) -> list[Path]:
    """Each job's output path below the output folder (without the new extension).

    Files found in a folder: their path below it. Files named on the command line: their
    name, unless two of them from different folders share a name (``spk1/angry/001.wav
    spk2/angry/001.wav``): then every file named directly keeps its path below the
    common folder of those files (``spk1/angry/001.wav``), so that none is refused.
    """
    rels = [j.rel for j in jobs]
    named = [k for k, j in enumerate(jobs) if j.explicit]
    folders: dict[str, set[str]] = {}
    for k in named:
        folders.setdefault(jobs[k].rel.with_suffix("").as_posix(), set()).add(os.path.abspath(jobs[k].path.parent))
    if any(len(f) > 1 for f in folders.values()):
        try:
            common = os.path.commonpath([os.path.abspath(jobs[k].path.parent) for k in named])
        except ValueError:  # different drives (Windows): no common folder, keep the names
            return rels
        for k in named:
            rels[k] = Path(os.path.relpath(os.path.abspath(jobs[k].path), common))
    return rels


def plan_outputs(jobs: list[Job], out_dir: Path, out_file: bool = False) -> tuple[list[tuple[Job, Path]], list[Record]]:
    """Map jobs to outputs; refuse (per file) any output that is an input or is claimed twice.

    Outputs: ``out_dir/<path below the argument>.wav`` (see :func:`_output_rels` for files
    named directly); ``out_file``: ``out_dir`` is the output file of the one job.
    """
    inputs = {j.path.resolve() for j in jobs}
    rels = _output_rels(jobs)
    claims: dict[Path, list[tuple[Job, Path]]] = {}
    planned: list[tuple[Job, Path]] = []
    errors: list[Record] = []
    for j, rel in zip(jobs, rels):
        dst = Path(out_dir) if out_file else Path(out_dir) / rel.with_suffix(".wav")
        claims.setdefault(dst.resolve(), []).append((j, dst))
    for real, js in claims.items():
        if len(js) > 1:
            names = ", ".join(str(j.path) for j, _ in js)
            for j, _ in js:
                errors.append(Record(str(j.path), "failed", "collision",
                                     f"{j.path}: several inputs would write {real} ({names}); enhance them into separate --out folders"))
        elif real in inputs:
            errors.append(Record(str(js[0][0].path), "failed", "collision",
                                 f"{js[0][0].path}: output {real} would overwrite an input; choose another --out"))
        else:
            planned.append(js[0])
    return planned, errors


def shard_marker_name(shard: Shard) -> str:
    """The marker file a shard writes its records to, beside :data:`MARKER`."""
    return f".emort-output.shard-{shard.index}-of-{shard.count}.json"


def _check_marker_entries(settings: dict, outputs: dict) -> None:
    """Raise ValueError (naming the entry) where a marker's entries do not have the types emort
    writes (a hand-edited or damaged record): they are read mid-batch, where a wrong type would
    fail the run with a bare TypeError instead of naming the record. An output entry that is not
    an object at all counts as no record (refused, as made by something else)."""
    for k, v in settings.items():
        if not isinstance(v, dict):
            raise ValueError(f"settings {k!r} is not an object")
    for rel, rec in outputs.items():
        if not isinstance(rec, dict):
            continue
        for name, kinds in (("settings", (str,)), ("input", (str,)), ("time", (int, float)), ("size", (int,)),
                            ("mtime_ns", (int,)), ("output_size", (int,)), ("output_sha256_ends", (str,))):
            if name in rec and (not isinstance(rec[name], kinds) or isinstance(rec[name], bool)):
                raise ValueError(f"output {rel!r}: {name} is {type(rec[name]).__name__}")


def input_identity(path: Path) -> dict:
    """What identifies an input for resume: its size and modification time (ns)."""
    try:
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {}


#: Bytes at each end of an output that its fingerprint reads (:func:`output_fingerprint`).
FINGERPRINT_BYTES = 64 * 1024


def output_fingerprint(path: Path) -> dict:
    """What identifies an output emort wrote, for resume: its size and the sha256 of its first
    and last :data:`FINGERPRINT_BYTES` (a WAV's header and both ends of its samples). Not the
    modification time: a folder copied without keeping times (``cp -r``, ``rsync`` without
    ``-t``) still resumes; and not the whole file, which resuming a large batch would read whole.
    Empty when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha256(f.read(FINGERPRINT_BYTES))
            if size > 2 * FINGERPRINT_BYTES:
                f.seek(size - FINGERPRINT_BYTES)
            h.update(f.read(FINGERPRINT_BYTES))
        return {"output_size": size, "output_sha256_ends": h.hexdigest()[:32]}
    except OSError:
        return {}


def same_output(rec: dict | None, output: Path) -> bool:
    """Whether ``output`` is still the file a marker record says emort wrote
    (:func:`output_fingerprint`, recorded since 0.11; earlier records match on the file being there)."""
    if not rec:
        return False
    keys = [k for k in ("output_size", "output_sha256_ends") if k in rec]
    if not keys:
        return True
    now = output_fingerprint(output)
    return all(rec[k] == now.get(k) for k in keys)


def same_input(rec: dict | None, path: Path) -> bool:
    """Whether a marker record was made from this very input (path, size, mtime). Records of
    versions that kept no size/mtime match on the path alone."""
    if not rec or Path(rec.get("input", "")) != Path(path).resolve():
        return False
    ident = input_identity(path)
    return all(rec[k] == ident.get(k) for k in ("size", "mtime_ns") if k in rec)


class OutputMarker:
    """The marker of an output folder: which settings made each output (``.emort-output.json``).

    Records are kept in memory and written atomically: after each output as long as writing
    takes under ~10% of the run (a marker of thousands of outputs takes milliseconds to
    write), less often beyond, and always at :meth:`close`. An output without a record (made
    by another program, or by a run killed before recording it) is never taken as done nor
    replaced without ``overwrite``. Two runs into one folder at once keep each other's records
    (:meth:`flush` merges under a lock), and with :attr:`claims` set (as :func:`enhance_files`
    does) do not make the same outputs: each output's claim is given up once its record is
    written; the shards of
    one run split the work: with ``shard``, records go to the shard's own file
    (:func:`shard_marker_name`) and :data:`MARKER` is only created. Reading merges every
    marker file of the folder; where two record the same output, the later record wins.

    ``scope``: ``"folder"`` (the folder is an output folder: skipped whole when found inside
    an input tree) or ``"files"`` (it holds single output files, ``--out file.wav``, among
    other files: only those are skipped). A folder written both ways is an output folder.
    """

    def __init__(self, root: Path, shard: Shard | None = None, scope: str = "folder"):
        self.root = Path(root)
        self.shard = shard
        self.scope = scope
        self.path = self.root / (MARKER if shard is None else shard_marker_name(shard))
        self.settings: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}  # every marker file of the folder, merged
        self.own: dict[str, dict] = {}  # what this marker file holds (the main one: everything)
        self.stored_scope: str | None = None  # of the marker files found
        self.exists = self.path.is_file()
        #: the run's :class:`~emort.runtime.atomic.Claims` on its outputs: a claim is given up once
        #: the output's record is in the file, so another run never sees it unclaimed and unrecorded
        self.claims: Claims | None = None
        self._recorded: list[str] = []  # outputs recorded since the last write, their claims still held
        self._dirty = False
        self._last_write = 0.0
        self._write_cost = 0.0
        for p in self._files():
            try:
                m = json.loads(p.read_text(encoding="utf-8"))
                if m.get("format") != MARKER_FORMAT:
                    raise ValueError(f"format {m.get('format')!r}")
                version = m.get("format_version", MARKER_VERSION)
                if isinstance(version, int) and version > MARKER_VERSION:  # rewritten as ours, its records would be lost or misread
                    raise E.EmortError(f"{p}: a record of earlier outputs written by a newer emort ({m.get('emort_version', '?')}, record "
                                       f"format {version}; this one reads {MARKER_VERSION}); run that version, or choose another --out")
                settings, outputs, scope = dict(m.get("settings", {})), dict(m.get("outputs", {})), m.get("scope", "folder")
                _check_marker_entries(settings, outputs)
            except (OSError, ValueError, AttributeError, TypeError) as e:
                raise E.EmortError(f"{p}: unreadable record of earlier outputs ({e}); delete it to start this folder afresh") from None
            self.settings.update(settings)
            for rel, rec in outputs.items():
                old = self.outputs.get(rel)
                if old is None or _when(rec) >= _when(old):
                    self.outputs[rel] = rec
            if p == self.path:
                self.own = outputs
            self.stored_scope = "folder" if "folder" in (self.stored_scope, scope) else "files"
        if shard is None:
            self.own = dict(self.outputs)  # the main marker gathers the shards' records

    def _files(self) -> list[Path]:
        """The folder's marker files: the main one first, then the shards' (sorted). Raises
        EmortError when the marker's name is taken by something that is not a file."""
        main = self.root / MARKER
        if main.exists() and not main.is_file():
            raise E.EmortError(f"{main}: not a file; emort keeps its record of this folder's outputs under that name: "
                               "move it away, or choose another --out")
        files = [main] if main.is_file() else []
        try:
            with os.scandir(self.root) as it:
                files += sorted(Path(e.path) for e in it if SHARD_MARKER.match(e.name) and e.is_file())
        except OSError:
            pass
        return files

    @staticmethod
    def key(settings: dict) -> str:
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def settings_of(self, output: Path) -> dict | None:
        rec = self.outputs.get(self._rel(output))
        return self.settings.get(rec["settings"]) if isinstance(rec, dict) and "settings" in rec else None

    def source_of(self, output: Path) -> dict | None:
        """The recorded input of ``output``: ``{"input", "size", "mtime_ns"}`` (None: no record)."""
        rec = self.outputs.get(self._rel(output))
        return rec if isinstance(rec, dict) else None

    def record(self, output: Path, source: Path, settings: dict, identity: dict | None = None) -> None:
        """Record that ``output`` was made from ``source`` with ``settings``. ``identity``: the
        input's :func:`input_identity` when it was read (default: now); an input changed while
        its edit ran then no longer matches, and the next run refuses to take the output as done."""
        k = self.key(settings)
        self.settings[k] = settings
        ident = input_identity(source) if identity is None else identity
        # the output's fingerprint: a file written over it later (a report, another program) is not this output
        entry = {"settings": k, "input": str(source), "time": round(time.time(), 3), **ident, **output_fingerprint(output)}
        self.outputs[self._rel(output)] = self.own[self._rel(output)] = entry
        self._recorded.append(self._rel(output))
        self._dirty = True
        if time.monotonic() - self._last_write >= 10 * self._write_cost:
            try:
                self.flush()
            except OSError:
                pass  # kept in memory and tried again; the output itself is written

    def flush(self) -> None:
        """Write the marker (creates the folder; a shard also creates :data:`MARKER`, which
        is what marks the folder). Under an exclusive lock (:data:`MARKER_LOCK`), the file is read
        first and the records another process wrote since (a second run into the same folder)
        kept, the later of two records of one output winning: two runs at once lost records, and
        every later run refused their outputs (a new user's report). Raises OSError when it cannot."""
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / MARKER_LOCK):
            self._merge_stored()
            scope = "folder" if "folder" in (self.scope, self.stored_scope) else "files"
            used = {rec.get("settings") for rec in self.own.values() if isinstance(rec, dict)}
            write_json_atomic(self.path, {"format": MARKER_FORMAT, "format_version": MARKER_VERSION, "emort_version": __version__,
                                          "scope": scope, "settings": {k: v for k, v in self.settings.items() if k in used},
                                          "outputs": self.own})
        if self.shard is not None and not (self.root / MARKER).is_file():
            write_json_atomic(self.root / MARKER, {"format": MARKER_FORMAT, "format_version": MARKER_VERSION,
                                                   "emort_version": __version__, "scope": scope, "settings": {}, "outputs": {}})
        self._last_write = time.monotonic()
        self._write_cost = self._last_write - t0
        self._dirty = False
        self.exists = True
        written, self._recorded = self._recorded, []
        if self.claims is not None:
            for rel in written:
                self.claims.release(rel)

    def refresh(self) -> None:
        """Take in the records another process wrote to this marker file since it was read (under
        the lock, as :meth:`flush`), so an output it made meanwhile is known, not refused as made by
        something else."""
        if self.path.is_file():
            with exclusive_lock(self.root / MARKER_LOCK):
                self._merge_stored()
        for p in self._files():  # the shards' files too: a sharded run into the folder records there (a review)
            if p != self.path:
                self._merge_other(p)

    def _merge_stored(self) -> None:
        """Take in the records of this marker file written by another process since it was read
        (the later record of an output wins); an unreadable file is left to be replaced."""
        got = _read_records(self.path)
        if got is None:
            return
        settings, outputs = got
        for rel, rec in outputs.items():
            mine = self.own.get(rel)
            if mine is None or _when(rec) > _when(mine):
                self.own[rel] = rec
                if rel not in self.outputs or _when(rec) > _when(self.outputs[rel]):
                    self.outputs[rel] = rec
                if isinstance(rec, dict) and rec.get("settings") in settings:
                    self.settings.setdefault(rec["settings"], settings[rec["settings"]])

    def _merge_other(self, p: Path) -> None:
        """Take in another marker file's records (a shard's) as known outputs, not this file's own."""
        got = _read_records(p)
        if got is None:
            return
        settings, outputs = got
        for rel, rec in outputs.items():
            if rel not in self.outputs or _when(rec) > _when(self.outputs[rel]):
                self.outputs[rel] = rec
                if isinstance(rec, dict) and rec.get("settings") in settings:
                    self.settings.setdefault(rec["settings"], settings[rec["settings"]])

    def close(self) -> None:
        if self._dirty:
            self.flush()

    def _rel(self, output: Path) -> str:
        return _relative_to(self.root, output)


def _read_records(p: Path) -> tuple[dict, dict] | None:
    """``(settings, outputs)`` of a marker file another process may have written since it was read;
    None when it cannot be read now (left to be replaced or read again)."""
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
        settings, outputs = dict(m.get("settings", {})), dict(m.get("outputs", {}))
        _check_marker_entries(settings, outputs)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return settings, outputs


def _relative_to(root: Path, output: Path) -> str:
    """``output``'s path relative to the output folder ``root``, as markers key it (and claims name it)."""
    return Path(os.path.relpath(Path(output).resolve(), Path(root).resolve())).as_posix()


def _when(rec: object) -> float:
    """When a marker record was written (0 for records of versions that did not say)."""
    return float(rec.get("time", 0) or 0) if isinstance(rec, dict) else 0.0


def _differences(old: dict, new: dict) -> str:
    """``emotion sad -> angry, options.amount_db 2.0 -> 3.0`` for the settings that differ."""
    def flat(d: dict, pre: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
        return out

    a, b = flat(old), flat(new)
    for d in (a, b):
        d.setdefault("precision", "fp32")  # recorded only when not fp32
    diff = [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diff[:4]) + (", ..." if len(diff) > 4 else "")


# --- reading -----------------------------------------------------------------------------------


def read_input(path: Path) -> Audio:
    """``read_audio(path)`` (the file's own rate, mono), with the causes a user can fix named first.

    libsndfile reports a file it may not open as "System error"; opening it here first
    raises ``PermissionError`` instead, which the records call "permission denied".
    """
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        raise E.MissingAudioError(f"{path}: is a folder, not an audio file") from None
    except FileNotFoundError:
        raise E.MissingAudioError(f"{path}: no such file") from None
    return read_audio(path)


def _fail(rec: Record, exc: BaseException) -> Record:
    rec.status = "failed"
    rec.reason = failure_reason(exc)
    if isinstance(exc, PermissionError):
        rec.error = f"{rec.path}: permission denied"
    else:
        rec.error = _one_line(rec.path, exc)
    return rec


# --- enhance -----------------------------------------------------------------------------------


def target_name(emotion: str, labels: Sequence[str]) -> str:
    """The canonical target: ``"angry"`` or ``"sad:0.30,angry:0.70"`` (a mix's weights kept to two
    decimals: the output folder's name, the record resume matches, and the edit's weights). Raises
    LabelError, also for a mix whose emotion's weight rounds to 0 (it would be dropped silently)."""
    return format_emotion_mix(parse_emotion_mix(emotion, list(labels)))


def _mix_parts(text: str, labels: Sequence[str]) -> list[tuple[str, str]]:
    """The ``name[:weight]`` parts of a mix as written, each with its canonical emotion name.
    Raises LabelError for an unknown name."""
    from emort.runtime.settings import canonical_emotion

    return [(canonical_emotion(part.partition(":")[0], labels), part) for part in text.split(",") if part.strip()]


def mix_in_given_order(emotion: str, target: str, labels: Sequence[str]) -> str:
    """``target`` (a canonical mix, :func:`target_name`) with its parts in the order ``emotion``
    gave them: the name emort 0.30 and earlier used for the mix's folder and record."""
    parts = dict(_mix_parts(target, labels))
    return ",".join(parts[k] for k, _ in _mix_parts(emotion, labels) if k in parts)


def _shortfall(res, options) -> str:
    """Why a calibrated edit fell short of ``--amount`` (only the multiplier's limit, or no usable edit,
    stops one: :func:`~emort.runtime.editing.calibrate` reaches the amount otherwise). The cap is
    named only where the largest ``--max-band-db`` would reach clearly more (the enhancer's
    ``change_db_at_max_cap``); 0.31 always blamed the cap, and a new user raised it to 40 dB for the
    same 0.10 dB from a briefly trained bundle."""
    from emort.runtime.editing import MAX_CALIBRATED_GUIDANCE

    cap = options.max_band_db
    if res.change_db <= 0.0 or res.guidance <= 0.0:
        return f"the model made no usable edit toward {res.emotion} in this clip"
    best = getattr(res, "change_db_at_max_cap", None)
    if best is not None and cap < MAX_BAND_DB and best >= max(1.1 * res.change_db, res.change_db + 0.05):
        return f"bands are capped at {cap:g} dB: --max-band-db {MAX_BAND_DB:g} would reach {best:.2f} dB"
    if res.guidance >= 0.999 * MAX_CALIBRATED_GUIDANCE:
        tail = "" if cap >= MAX_BAND_DB or best is None else "; a larger --max-band-db would not help"
        return (f"the model's edit toward {res.emotion} is weak in this clip: its multiplier stopped at its limit, "
                f"{MAX_CALIBRATED_GUIDANCE:g}{tail}")
    return f"bands are capped at {cap:g} dB" + (", the largest --max-band-db; this clip takes no more" if cap >= MAX_BAND_DB else "")


def _canonical_target(emotion: object, labels: Sequence[str]) -> object:
    """A recorded target (``"angry:0.70,sad:0.30"``, as 0.30 and earlier kept a mix: in its user's
    order) with its parts in label order, their weights as recorded: parsed again, a three-way
    mix's rounded weights would be renormalised and change a digit (a review). As it is when it is
    not a mix of known names."""
    if not isinstance(emotion, str) or "," not in emotion:
        return emotion
    order = {k: i for i, k in enumerate(labels)}
    try:
        parts = _mix_parts(emotion, labels)
    except E.LabelError:
        return emotion
    return ",".join(part for _, part in sorted(parts, key=lambda x: order.get(x[0], len(order))))


def rounded_mix_note(emotion: str, labels: Sequence[str]) -> str | None:
    """A line saying how a mix's weights were rounded (:func:`target_name`), or None when they were not."""
    name = target_name(emotion, labels)
    exact, kept = parse_emotion_mix(emotion, list(labels)), parse_emotion_mix(name, list(labels))
    if all(abs(exact[k] - kept.get(k, 0.0)) < 5e-7 for k in exact):
        return None
    return f"--emotion {emotion}: weights kept to two decimals, {name} (exactly {','.join(f'{k}:{v:.4f}' for k, v in exact.items())})"


def target_probability(scores: dict[str, float], emotion: str) -> float:
    """P(target): the target's probability, or the weight-averaged one of a mix's emotions."""
    return float(sum(w * scores[k] for k, w in parse_emotion_mix(emotion, list(scores)).items()))


@dataclass
class EditRequest:
    """One edit of :func:`enhance_files`, as handed to its ``compute``: the arguments of
    ``Enhancer.enhance`` for one input (``samples``: mono float32 ``(num_samples,)`` at
    ``sample_rate`` Hz, as read), and ``path``, the input, for messages."""

    samples: np.ndarray
    sample_rate: int
    emotion: str
    options: Any
    vocoder: str
    score_output: bool
    path: str

    def run(self, enhancer):
        """``enhancer.enhance`` on this request: its ``Enhanced`` result (raises as ``enhance`` does)."""
        return enhancer.enhance(self.samples, self.sample_rate, self.emotion, options=self.options, vocoder=self.vocoder,
                                score_output=self.score_output)


#: ``compute`` of :func:`enhance_files`: takes an iterator of requests (None for inputs with
#: nothing to compute) and yields, in the same order, one outcome per item: the ``Enhanced``
#: result, the exception the edit raised, or None for None. It may read ahead (a bounded
#: number of requests) to keep remote workers busy.
Compute = Callable[[Iterator["EditRequest | None"]], Iterator[Any]]


def local_compute(enhancer) -> Compute:
    """The edits in this process, one at a time, reading no request ahead (the default ``compute``)."""

    def compute(requests: Iterator[EditRequest | None]) -> Iterator[Any]:
        for req in requests:
            if req is None:
                yield None
                continue
            try:
                out = req.run(enhancer)
            except Exception as e:  # the file fails, the batch goes on
                out = e
            yield out

    return compute


def enhance_files(enhancer, paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, emotion: str, options,
                  vocoder: str = "gain", overwrite: bool = False, score_output: bool = True,
                  on_start: Callable[[int], None] | None = None, shard: Shard | None = None,
                  compute: Compute | None = None, precision: str | None = None) -> Iterator[EnhanceRecord]:
    """Enhance every audio file under ``paths`` toward ``emotion``; yield one record per path.

    ``enhancer``: an :class:`~emort.runtime.enhancer.Enhancer` (anything with its ``bundle``
    and ``enhance(wav, sample_rate, emotion, options=, vocoder=, score_output=)``);
    ``options``: its ``EditOptions``. Outputs: WAV, 16-bit PCM, mono, at each input's own
    sample rate, at ``out_dir/<path relative to its argument>.wav`` (files named directly:
    ``out_dir/<name>.wav``, or their path below their common folder when names clash). With
    one input file, ``out_dir`` may name the output file itself (ends in ``.wav``, see
    :func:`check_output`); the marker then goes in its folder and records that file alone.
    First come the records of paths not taken (see :func:`discover`; earlier outputs found
    inside an input tree are skipped) and of outputs refused (an input, or claimed twice);
    then ``on_start(n)`` with the number of files to process, and one record per file, in order.

    Resume: an existing output recorded in the marker with the same settings (target,
    options, bundle hash, vocoder; with prosody, the prosody table's hash; with a subspace, the
    edit basis's; the denoiser's precision when not ``fp32``) is skipped (reason ``done``); one made with other
    settings is refused (``other-settings``), one with no record too (``unrecorded``), and one made from another
    input or from this input before it changed (path, size, mtime) is refused
    (``other-input``), unless ``overwrite``. An output another run into the same folder is
    making at that moment (it holds its claim, :class:`~emort.runtime.atomic.Claims`, until the
    output is recorded) is left to it and decided after every other file, once recorded (so
    its record comes later than its place in the order); it fails as ``in-progress`` if the other
    run still holds it after :data:`CLAIM_WAIT_S` (at once with a remote ``compute``). With
    ``overwrite`` too.
    A file that fails is one record with a one-line ``error``; the batch goes on. Raises
    ``EmortError`` only for the run as a whole: an unknown emotion, options the enhancer cannot
    run (``Enhancer.check_options``), an ``--out`` file name
    that cannot be honoured, an unreadable marker, an output folder that cannot be written.

    ``shard``: process only this part of the files (:class:`Shard`; records carry ``index``).
    ``compute``: where the edits run (:data:`Compute`; default :func:`local_compute`); the
    reading, the writing, the marker and the records stay here, so any ``compute`` gives the
    same outputs and records. ``precision``: the denoiser's arithmetic where the edits run
    (default: ``enhancer.precision``, else ``fp32``; pass the workers' when ``compute`` is remote).
    """
    out_dir = Path(out_dir)
    target = target_name(emotion, enhancer.bundle.labels)
    precision = precision or getattr(enhancer, "precision", "fp32")
    if hasattr(enhancer, "check_options"):
        enhancer.check_options(options)  # options the enhancer cannot run: one error for the batch, not one per file
    # the graphs the edit reads, not the whole bundle: a new scorer graph keeps outputs valid
    settings = {"emotion": target, "options": _settings_of(options), "bundle": enhancer.bundle.edit_hash, "vocoder": vocoder}
    if getattr(options, "prosody", False):  # the table is in the manifest, outside the weights' hash
        settings["prosody_table"] = getattr(enhancer.bundle, "prosody_hash", None)
    if getattr(options, "subspace", 0):  # likewise the edit basis
        settings["edit_basis"] = enhancer.bundle.basis_hash(options.subspace)
    if precision != "fp32":  # a bf16 edit is another output; fp32 left out so earlier records still match
        settings["precision"] = precision
    settings = json.loads(json.dumps(settings))
    out_file = output_is_file(out_dir)
    check_output(paths, out_dir)
    root = out_dir.parent if out_file else out_dir  # the folder that holds the marker
    jobs, issues = discover(paths, skip_output_trees=True, exclude=None if out_file else out_dir)
    planned, clashes = plan_outputs(jobs, out_dir, out_file=out_file)
    head, todo = _number([EnhanceRecord.like(r) for r in issues + clashes], planned, shard,
                         key=lambda jd: jd[1].name if out_file else jd[1].relative_to(out_dir).as_posix())
    yield from head
    # An output folder that is, or holds, an input folder records its files alone: marked whole,
    # a later run over the inputs would skip the originals beside the outputs.
    real_root = root.resolve()
    holds_inputs = any(j.path.resolve().is_relative_to(real_root) for j in jobs)
    scope = "files" if out_file or holds_inputs else "folder"
    marker = OutputMarker(root, shard, scope) if root.exists() else None
    # Another run into this folder at the same time leaves what this one is making to it (and this
    # one what it is making), instead of both making the same outputs (a new user's report, 0.30).
    claims = Claims(root / MARKER_LOCK)
    if marker is not None:
        marker.claims = claims
    if on_start is not None:
        on_start(len(todo))
    # ..., decided, the input's identity as read, its peak where a float input goes above full scale
    pending: deque[tuple[Job, Path, EnhanceRecord, bool, dict | None, float | None]] = deque()
    reader = ThreadPoolExecutor(1, thread_name_prefix="emort-read")
    # position in todo -> (the input's identity before its read, future of read_input), or None: read when its turn comes
    reads: dict[int, Any] = {}

    def read_ahead(pos: int) -> None:
        """Decode the next file while this one is edited (a core is free during the edit's numpy
        stages); files that will be skipped, and large ones (memory), are not read ahead. The
        input's identity is taken before its read is submitted, so a file changed after it was
        read ahead is seen as changed by the next run."""
        for ahead in range(pos, min(len(todo), pos + ENHANCE_READ_AHEAD + 1)):
            if ahead not in reads:
                job, dst = todo[ahead][1]
                needed = overwrite or not dst.exists()  # outputs there are decided without reading the input
                small = needed and _decoded_bytes(job.path) <= ENHANCE_READ_AHEAD_BYTES  # unreadable: read in turn, error in order
                reads[ahead] = (input_identity(job.path), reader.submit(read_input, job.path)) if small else None

    def requests() -> Iterator[EditRequest | None]:
        # An output another run into this folder is making now is decided after the others, once that
        # run has recorded it (done, or made with other settings): a run that skipped it and exited 0
        # said its file had its output when the other run's settings made it (a new user's report).
        deferred = []
        for pos, (index, (job, dst)) in enumerate(todo):
            read_ahead(pos)
            ahead = reads.pop(pos)
            key = _relative_to(root, dst)
            if not claims.take(key):
                if ahead is not None:  # decided at the end, most often as done: its samples are not held till then
                    ahead[1].cancel()
                deferred.append((index, job, dst, key))
                continue
            yield from decide(index, job, dst, key, ahead, True)
        # A remote compute (Ray) holds claims on the edits it has in flight while this waits, and so may
        # the other run: two such runs would wait out each other's claims. Only local edits wait.
        # one budget for all of them, not per file: a stopped (Ctrl-Z) run would hold N files for N x the wait (a review)
        deadline = time.monotonic() + (CLAIM_WAIT_S if compute is None else 0.0)
        for index, job, dst, key in deferred:
            if marker is not None:  # this run's recorded outputs' claims given up first: the other run may be waiting on them
                writer.submit(_flush_quietly, marker).result()
            wait_s = max(0.0, deadline - time.monotonic())
            yield from decide(index, job, dst, key, None, claims.take(key, wait_s=wait_s))

    def decide(index: int, job: Job, dst: Path, key: str, ahead, claimed: bool) -> Iterator[EditRequest | None]:
        """One file of the batch (its output's claim ``key`` taken, or not: ``claimed``): exactly one item."""
        nonlocal marker
        rec = EnhanceRecord(str(job.path), "failed", output=str(dst), emotion=target, index=index)
        if not claimed:  # failed, not skipped: whose settings the output will have is not known (a review)
            rec.reason = "in-progress"
            rec.error = (f"{job.path}: another emort run is still making {dst}" + (f" after waiting up to {CLAIM_WAIT_S:.0f} s" if compute is None else "")
                         + "; not made twice: run the command again once that run ends")
            pending.append((job, dst, rec, True, None, None))
            yield None
            return
        if dst.exists() and not overwrite:
            if marker is None and root.exists():  # the folder was made by another run since this one started (a review)
                try:
                    marker = OutputMarker(root, shard, scope)
                    marker.claims = claims
                except E.EmortError:
                    pass  # unreadable now: refused below as unrecorded
            if marker is not None and marker.settings_of(dst) is None:
                marker.refresh()  # another run into this folder may have recorded it since this one read the record
            made_with = _with_defaults(marker.settings_of(dst) if marker is not None else None, options)
            if made_with and made_with.get("emotion") != target:  # a mix recorded in its user's order (before 0.31)
                made_with = {**made_with, "emotion": _canonical_target(made_with.get("emotion"), enhancer.bundle.labels)}
            source = marker.source_of(dst) if made_with == settings else None  # settings only recorded with a marker
            if made_with == settings and same_input(source, job.path):
                if same_output(source, dst):
                    rec.status, rec.reason = "skipped", "done"
                else:  # replaced or edited since (another program, a report written over it)
                    rec.reason = "output-changed"
                    rec.error = f"{job.path}: output {dst} changed since emort wrote it; pass --overwrite to redo it, or choose another --out"
            elif made_with == settings:  # same settings, another (or a changed) input: not this file's output
                rec.reason = "other-input"
                rec.error = (f"{job.path}: output {dst} was made from another input, or this input changed since "
                             f"({(source or {}).get('input', '?')}); pass --overwrite to redo it, or choose another --out")
            else:
                # Never replace a file without knowing it is ours: no record means another program made it (or
                # a run was killed before recording it; the record is written within moments of each output).
                if made_with is not None:
                    why = (f"was made with other settings ({_differences(made_with, settings)}); "
                           "pass --overwrite to redo it, or choose another --out")
                else:  # --overwrite redoes every output: a killed run's one unrecorded file is cheaper deleted (a new user's report)
                    why = (f"exists with no record of its settings in {MARKER} (made by something else, or by a run killed "
                           "before recording it); delete it to have it made again, or choose another --out "
                           "(--overwrite makes every output again)")
                rec.reason, rec.error = ("other-settings" if made_with is not None else "unrecorded"), f"{job.path}: output {dst} {why}"
            claims.release(key)
            pending.append((job, dst, rec, True, None, None))
            yield None
            return
        # the identity from before the samples were read: a change from then on is seen next run
        ident, future = ahead if ahead is not None else (input_identity(job.path), None)
        try:
            audio = future.result() if future is not None else read_input(job.path)
        except Exception as e:  # this file fails, one line, and the batch goes on
            _fail(rec, e)
            claims.release(key)
            pending.append((job, dst, rec, True, None, None))
            yield None
            return
        rec.duration_s = round(len(audio.samples) / audio.sample_rate, 4)
        over = None  # the input's peak where above full scale: only a float file holds such samples
        if audio.samples.dtype.kind == "f" and audio.samples.size:
            peak = float(np.max(np.abs(audio.samples)))
            over = peak if peak > 1.0 else None
        rec.sample_rate = int(audio.sample_rate)
        pending.append((job, dst, rec, False, ident, over))
        yield EditRequest(audio.samples, int(audio.sample_rate), target, options, vocoder, score_output, str(job.path))

    outcomes = (compute or local_compute(enhancer))(requests())
    # An output is written in a writer thread while the next edit is computed; its record is
    # completed (marker, result fields) and yielded once the write is done, so records come one
    # edit later, in the same order.
    writer = ThreadPoolExecutor(1, thread_name_prefix="emort-write")
    held = None  # (job, dst, rec, res, future, identity, input peak): the output being written

    def finish(item) -> EnhanceRecord:
        job, dst, rec, res, fut, ident, peak_in = item
        try:
            fut.result()
        except Exception as e:  # unwritable file, disk full: this file fails
            _fail(rec, e)
            claims.release(_relative_to(root, dst))
            rec.reason = "write"
            rec.error = f"{job.path}: cannot write {dst} ({_write_cause(e, dst)})"
            return rec
        rec.status = "written"
        rec.emotion = res.emotion
        rec.scores_before = res.scores_before
        rec.scores_after = res.scores_after
        rec.prediction = max(res.scores_after, key=res.scores_after.get) if res.scores_after else None
        rec.change_db = round(float(res.change_db), 4)
        rec.guidance = round(float(res.guidance), 4)
        rec.seconds = round(float(res.seconds), 4)
        if options.calibrated and options.amount_db > 0 and not options.is_identity and res.change_db < 0.95 * options.amount_db:
            rec.note = f"{job.path}: reached {res.change_db:.2f} of {options.amount_db:g} dB ({_shortfall(res, options)})"
        peak = max(float(res.wav.max()), -float(res.wav.min())) if np.size(res.wav) else 0.0  # no |x| copy of a long file
        if peak > 1.0:  # only an unchanged input can be (an edit's output is limited): the 16-bit file clips it
            clipped = (f"the input peaks at {20 * np.log10(peak):+.1f} dBFS, above full scale; "
                       "the 16-bit output clips those samples (lower the input's level to keep them)")
            rec.note = f"{rec.note}; {clipped}" if rec.note else f"{job.path}: {clipped}"
        elif peak_in is not None:  # an edit's output is limited to full scale: say so, its level moved (a new user's report)
            limited = (f"the input peaks at {20 * np.log10(peak_in):+.1f} dBFS, above full scale; the output is limited to "
                       "full scale around those peaks (lower the input's level to keep its dynamics)")
            rec.note = f"{rec.note}; {limited}" if rec.note else f"{job.path}: {limited}"
        pros = getattr(res, "prosody", None)
        if pros is not None:
            rec.f0_shift_st = round(float(pros.semitones), 3)
            rec.f0_range, rec.tempo = round(float(pros.f0_range), 4), round(float(pros.tempo), 4)
            rec.loudness_db = round(float(pros.loudness_db), 3)
        return rec

    try:
        for res in outcomes:
            job, dst, rec, decided, ident, peak_in = pending.popleft()
            if decided or isinstance(res, BaseException):
                if not decided:
                    _fail(rec, res)
                    claims.release(_relative_to(root, dst))
                if held is not None:  # the earlier file first
                    done, held = held, None
                    yield finish(done)
                yield rec
                continue
            if marker is None or not marker.exists:
                marker = _open_marker(root, shard, scope)  # the run's folder cannot be written: EmortError for the run
                marker.claims = claims
            # held before the earlier one is yielded: a caller stopping there still gets it recorded
            done, held = held, (job, dst, rec, res, writer.submit(_write_recorded, marker, dst, res, job.path.resolve(), settings, ident), ident, peak_in)
            if done is not None:
                yield finish(done)
        if held is not None:
            done, held = held, None
            yield finish(done)
        if marker is not None:
            try:
                marker.close()
            except OSError as e:  # the outputs are written, but unrecorded ones are refused next run: say so
                yield EnhanceRecord(str(marker.path), "failed", "write",
                                    f"{marker.path}: cannot record which settings made this run's outputs ({_write_cause(e, marker.path)}); "
                                    "the next run will refuse the unrecorded ones: pass --overwrite to make them again")
    finally:
        try:
            if held is not None:  # the caller stopped early: the output being written is still recorded
                finish(held)
            writer.shutdown(wait=True)
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()  # stops remote work still queued when the caller stops early
            for ahead in reads.values():
                if ahead is not None:
                    ahead[1].cancel()
            reader.shutdown(wait=True)
            if marker is not None:
                try:
                    marker.close()  # a caller stopping early: record what was written (a second close after the one above is a no-op)
                except OSError:
                    pass  # already reported above on a run that went through; a stopped run has no record left to yield
        finally:  # whatever stops the cleanup above: the claims end with this run, not with the process
            claims.close()


def _write_recorded(marker: OutputMarker, dst: Path, res, source: Path, settings: dict, ident: dict) -> None:
    """Write an output and record it in the marker, both in the writer thread: a stop (Ctrl-C,
    SIGTERM) landing in the main thread between submitting the write and holding its future could
    leave a written output unrecorded, which the next run refused as made by something else."""
    write_wav_atomic(dst, res.wav, res.sample_rate)
    marker.record(dst, source, settings, ident)


def _flush_quietly(marker: OutputMarker) -> None:
    """Write ``marker``'s unwritten records (giving up their outputs' claims); a failure is left to
    the run's closing write, which reports it."""
    try:
        marker.close()
    except OSError:
        pass


def _write_cause(e: BaseException, dst: Path) -> str:
    """Why writing ``dst`` failed, in a few words: the OS's reason, or libsndfile's first line,
    and whether the disk holding it is full (libsndfile reports that as 'System error')."""
    msg = (e.strerror or str(e)) if isinstance(e, OSError) else (str(e).splitlines()[0] if str(e) else type(e).__name__)
    try:
        full = shutil.disk_usage(Path(dst).parent).free < 1 << 20
    except OSError:
        full = False
    return f"{msg}; the disk is full" if full and "space" not in msg.lower() else msg


def _settings_of(options) -> dict:
    """The options as a marker records them: ``EditOptions.settings_dict`` (what can change an
    output) when the options have it, else ``to_dict``."""
    return options.settings_dict() if hasattr(options, "settings_dict") else options.to_dict()


def _with_defaults(made_with: dict | None, options) -> dict | None:
    """A marker's recorded settings with option fields added since it was written filled in
    with their defaults (``options``' class ``from_dict``), so that an output made before a
    new option existed (0.5's, before ``prosody``) still resumes under the same settings."""
    if not made_with or not isinstance(made_with.get("options"), dict) or not hasattr(options, "from_dict"):
        return made_with
    recorded = made_with["options"]
    try:
        known = getattr(type(options), "from_record", type(options).from_dict)(recorded)
    except Exception:  # a foreign record: compared as it is (and refused)
        return made_with
    filled = _settings_of(known)
    # keys this version does not know (a newer emort's options) stay, so they differ and refuse
    filled.update({k: v for k, v in recorded.items() if k not in known.to_dict() and k != "sampler"})
    return {**made_with, "options": json.loads(json.dumps(filled))}


def _open_marker(root: Path, shard: Shard | None = None, scope: str = "folder") -> OutputMarker:
    """The marker of ``root``, created (with the folder) before the first output is written."""
    try:
        m = OutputMarker(root, shard, scope)
        if not m.exists:
            m.flush()
        return m
    except OSError as e:
        raise E.EmortError(f"{root}: cannot write the output folder ({e.strerror or e})") from None


# --- score -------------------------------------------------------------------------------------


def score_files(scorer, paths: Sequence[str | os.PathLike], per_speaker: bool = False, speaker_pattern: str | None = None,
                reference: str | os.PathLike | None = None, on_start: Callable[[int], None] | None = None,
                shard: Shard | None = None) -> Iterator[ScoreRecord]:
    """Score every audio file under ``paths``; yield one record per path.

    ``scorer``: a :class:`~emort.runtime.scorer.Scorer`, loaded with ``per_speaker=True`` for
    the per-speaker modes. Modes (``ScoreRecord.method``): ``single-clip`` (each clip
    normalised with the training statistics); ``per-speaker`` (each speaker's clips
    normalised with their own statistics; a speaker is a folder, or ``speaker_pattern``'s
    match in the file name); ``reference`` (each speaker normalised with the statistics of
    the same speaker's clips under ``reference``, matched by folder relative to the
    argument, or by ``speaker_pattern``: so an edit applied to all of a speaker's clips is
    not normalised away). ``+stats``: fused with the bundle's statistics classifier;
    ``+clip-stats``: a speaker of fewer than ``MIN_GROUP`` clips (without ``reference``), fused
    with the bundle's single-clip classifier instead.
    ``speaker_pattern`` or ``reference`` imply ``per_speaker``. Records of paths not taken
    come first, then ``on_start(n)``, then one record per file. ``shard``: score only this
    part of the files (:class:`Shard`: split by path, or by speaker in the per-speaker modes,
    so each speaker is normalised with all its clips; records carry ``index``). Raises
    ``EmortError`` for an invalid pattern, a missing or empty ``reference``, or a scorer of
    the wrong mode.
    """
    per_speaker = per_speaker or speaker_pattern is not None or reference is not None
    if per_speaker != bool(scorer.per_speaker):
        raise E.EmortError("per-speaker scoring needs a Scorer loaded with per_speaker=True" if per_speaker
                           else "this Scorer is per-speaker: pass per_speaker=True")
    jobs, issues = _score_inputs(paths)
    if per_speaker:
        groups, unmatched = speaker_groups(jobs, speaker_pattern)
    else:
        groups, unmatched = [SpeakerGroup(str(j.path), "", [j]) for j in jobs], []
    refs = _References(scorer, reference, speaker_pattern) if reference is not None else None
    # --reference matches a pattern's speaker by its key alone: speakers of several input folders
    # with one key (EmoDB's 03, RAVDESS's 03) are normalised with the same reference clips: say so
    shared: dict[str, str] = {}
    if refs is not None and speaker_pattern is not None:
        names: dict[str, list[str]] = {}
        for g in groups:
            names.setdefault(g.match, []).append(g.name)
        shared = {m: (f"speakers {', '.join(n)} are all normalised with the reference clips of speaker {m!r} under {reference} "
                      "(--reference matches the pattern's speaker only); if they are different people, score each folder "
                      "with its own --reference") for m, n in names.items() if len(n) > 1}
    # a speaker's key names its argument too: speaker folders given as separate arguments all have
    # the match "." and would all land in one shard
    key = (lambda g: f"speaker:{g.jobs[0].root.name}/{g.match}") if per_speaker else (lambda g: g.jobs[0].rel.as_posix())
    head, todo = _number([ScoreRecord.like(r) for r in issues + unmatched], groups, shard, key=key, size=lambda g: len(g.jobs))
    yield from head
    if on_start is not None:
        on_start(sum(len(g.jobs) for _, g in todo))
    # Decoding and the front-end (libsndfile, soxr, numpy FFT and BLAS release the GIL) run in
    # READ_THREADS threads, READ_AHEAD files ahead of the records yielded here, in order: single
    # clips are scored there too; a speaker's clips are scored here once all are read.
    pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="emort-read")
    try:
        if per_speaker:
            # a small next speaker's clips are read while this one's are embedded and scored: many
            # small speakers (each read with F0 and GE2E since 0.27) left one core idle (80 one-clip
            # speakers: 2.5 s, against 1.4 s for the same clips with --clip-stats). Its reads are
            # queued before this speaker's embedding calls, so they may delay its records by up to
            # MIN_GROUP - 1 reads (throughput first); a larger group's reads use both threads
            # themselves, and are not held in memory beside another's
            from emort.runtime.ustats import MIN_GROUP

            ahead = None
            for pos, (index, g) in enumerate(todo):
                read = ahead if ahead is not None else _read_group(scorer, g, refs, index, pool)
                nxt = todo[pos + 1] if pos + 1 < len(todo) else None
                ahead = _read_group(scorer, nxt[1], refs, nxt[0], pool) if nxt is not None and len(nxt[1].jobs) < MIN_GROUP else None
                yield from _score_group(scorer, g, refs, pool, read, shared.get(g.match))
        else:
            yield from _score_singles(scorer, todo, pool)
    finally:  # a caller that stops early (or Ctrl-C) does not wait for the queued reads
        pool.shutdown(wait=True, cancel_futures=True)


def _score_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Job], list[Record]]:
    """What :func:`score_files` scores of ``paths``: as :func:`discover`, but emort's outputs found
    below an argument that also holds other audio are left out, as ``enhance_files`` leaves them
    (in a folder of originals they would be scored, and per speaker normalised, with them); an
    argument that holds nothing but emort's outputs (``enhanced/`` with its ``angry/`` and
    ``sad/``) is scored whole, as is an output folder named itself."""
    return discover(paths, skip_output_trees=True, whole_if_only_outputs=True)


def _read_for_scoring(scorer, rec: ScoreRecord, classifiers: bool = True, embed: bool = True, egemaps: bool = True):
    """What ``scorer`` reads of the clip (:meth:`Scorer.analyse`: raw log-mel at the model rate,
    and, unless ``classifiers`` is False, the F0 statistics and voice embedding its classifiers
    read, and its eGeMAPS functionals unless ``egemaps`` is False; ``embed=False``: the voice
    encoder's input, for :meth:`Scorer.embed_voices`), or None with ``rec`` marked failed."""
    try:
        audio = read_input(Path(rec.path))
        rec.duration_s = round(len(audio.samples) / audio.sample_rate, 4)
        rec.sample_rate = int(audio.sample_rate)
        return scorer.analyse(audio.samples, audio.sample_rate, what=rec.path, classifiers=classifiers, embed=embed, egemaps=egemaps)
    except Exception as e:  # one line per file, never a traceback mid-batch
        _fail(rec, e)
        return None


#: Files :func:`enhance_files` decodes ahead of the edit, and the largest decoded size it reads
#: ahead (float32 samples x channels, from the file's header: 32 MB is 2.9 minutes of 48 kHz
#: mono; longer files are read in turn, keeping a long file's memory to the file itself).
ENHANCE_READ_AHEAD = 1
ENHANCE_READ_AHEAD_BYTES = 32 * 2**20


def _decoded_bytes(path: Path) -> float:
    """Bytes ``path`` decodes to (float32, every channel), from its header; inf when unreadable."""
    try:
        info = sf.info(os.fsencode(path))
        return float(info.frames) * info.channels * 4
    except Exception:  # not audio, no permission, gone: the read in turn reports it
        return float("inf")


#: Threads that decode files and compute their log-mels (single clips: and score them), and how
#: many files they may run ahead of the one reported (bounds the memory held: a few log-mels).
READ_THREADS = max(2, min(4, os.cpu_count() or 2))
READ_AHEAD = 4 * READ_THREADS


def _score_singles(scorer, todo: list, pool) -> Iterator[ScoreRecord]:
    """Single-clip scores of ``todo`` (``(index, SpeakerGroup of one job)``), in order: each clip
    is read and scored whole in ``pool`` (a clip alone needs nothing of the others), up to
    ``READ_AHEAD`` clips ahead of the one reported. Two workers each running the whole chain
    kept both cores busier than readers feeding the SER in this thread (408 EmoDB files: 1.11
    -> 1.01 s; the onnxruntime session serves concurrent calls)."""
    window: deque = deque()
    pending = iter(todo)

    def submit() -> None:
        nxt = next(pending, None)
        if nxt is not None:
            index, g = nxt
            rec = ScoreRecord(str(g.jobs[0].path), "failed", index=index)
            window.append((rec, pool.submit(_score_single, scorer, rec)))

    for _ in range(READ_AHEAD):
        submit()
    while window:
        rec, fut = window.popleft()
        submit()
        fut.result()
        yield rec


def _score_single(scorer, rec: ScoreRecord) -> None:
    """Read and score one clip alone into ``rec`` (marked failed, with its one-line error, on failure)."""
    clip = _read_for_scoring(scorer, rec)
    if clip is None:
        return
    try:
        s = scorer.score_clips([clip])[0]  # with Scorer.load(clip_stats=True), fused with the single-clip classifier
        rec.status, rec.prediction, rec.scores, rec.method = "scored", s.prediction, s.scores, s.method
        rec.fused = True if s.fused else None
    except Exception as e:  # one line per file, never a traceback mid-batch
        _fail(rec, e)


def _embed_voices(scorer, clips: list, recs: list[ScoreRecord], map_fn=map) -> list:
    """``clips`` (analyses, None where unreadable) with their voice embeddings computed together
    (:meth:`Scorer.embed_voices`). Should the batched calls fail, each clip is embedded alone, so
    that only a clip that cannot be embedded fails (``recs`` of those marked failed; None in
    their place), as when each clip was embedded as it was read."""
    live = [k for k, c in enumerate(clips) if c is not None]
    out = list(clips)
    try:
        for k, c in zip(live, scorer.embed_voices([clips[k] for k in live], map_fn)):
            out[k] = c
    except Exception:
        for k in live:
            try:
                out[k] = scorer.embed_voices([clips[k]])[0]
            except Exception as e:
                _fail(recs[k], e)
                out[k] = None
    return out


def _read_group(scorer, g: SpeakerGroup, refs: _References | None, index: int | None, pool) -> tuple[list[ScoreRecord], list]:
    """The records of one speaker's clips and the futures of their reads in ``pool``
    (:func:`_read_for_scoring`), for :func:`_score_group`."""
    from emort.runtime.ustats import MIN_GROUP

    recs = [ScoreRecord(str(j.path), "failed", speaker_group=g.name, index=None if index is None else index + k)
            for k, j in enumerate(g.jobs)]
    # a group too small to normalise the classifiers' features is scored by the SER alone, or with
    # the single-clip classifier (Scorer.reads_small_groups): without it, skip its F0 analysis and
    # voice embedding; eGeMAPS only where the group's classifier reads it (a reference group is
    # sized only once it is read)
    grouped = refs is not None or len(recs) >= MIN_GROUP
    full = grouped or scorer.reads_small_groups
    return recs, [pool.submit(_read_for_scoring, scorer, r, full, False, grouped) for r in recs]


def _score_group(scorer, g: SpeakerGroup, refs: _References | None, pool, read: tuple[list[ScoreRecord], list],
                 shared_note: str | None = None) -> Iterator[ScoreRecord]:
    """One speaker's records (``read``: :func:`_read_group`'s), scored once all its clips are read."""
    from emort.runtime.ustats import MIN_GROUP

    recs, futures = read
    # the voice embeddings are computed once the group is read, its clips' windows batched
    # (Scorer.embed_voices), the encoder's calls shared by the reader threads
    clips = _embed_voices(scorer, [f.result() for f in futures], recs, pool.map)
    futures.clear()  # the analyses before embedding (their voice windows) are not kept while the group is scored
    ok = [k for k, m in enumerate(clips) if m is not None]
    ref = None
    if refs is not None and ok:
        ref, why = refs.get(g.match)
        if ref is None:
            for k in ok:
                recs[k].reason, recs[k].error = "no-reference", f"{recs[k].path}: {why}"
            ok = []
    if ok:
        try:
            scores = scorer.score_analyses([clips[k] for k in ok], reference=ref)
        except Exception as e:
            for k in ok:
                _fail(recs[k], e)
            scores, ok = [], []
        stats_n = len(ref) if ref is not None else len(ok)
        note = None
        if stats_n < MIN_GROUP:
            alone = ("; the statistics classifier needs a group, so these come from the SER with the single-clip classifier"
                     if scorer.reads_small_groups and ref is None else
                     "; the statistics classifier needs a group, so these come from the SER alone" if scorer.fused else "")
            whose = "reference clip(s)" if ref is not None else "clip(s)"
            note = f"speaker {g.name}: only {stats_n} {whose} to normalise this speaker with; the scores are less reliable{alone}"
        unlike, foreign = _reference_voice_notes(g.name, [clips[k] for k in ok], ref) if ok and ref is not None else (None, [None] * len(ok))
        unlike = "; ".join(x for x in (unlike, _mixed_voices_note(g.name, [clips[k] for k in ok])) if x) or None
        for k, s, alien in zip(ok, scores, foreign):
            r = recs[k]
            r.status, r.prediction, r.scores, r.fused = "scored", s.prediction, s.scores, s.fused
            r.note = "; ".join(x for x in (note, unlike, shared_note) if x) or None
            r.clip_note = f"{r.path}: {alien}" if alien else None  # the clip's own: named, shown per clip
            r.method = s.method
            r.group_size = len(ok)
            r.reference_size = len(ref) if ref is not None else None
    yield from recs
    if refs is not None:
        yield from refs.drain()


def _mixed_voices_note(name: str, clips: list) -> str | None:
    """A note for a speaker group whose clips sound like more than one voice (their median pairwise
    GE2E cosine below :data:`~emort.runtime.voice.GROUP_VOICE_MIN`): per-speaker scoring normalises
    them as one speaker. None below :data:`~emort.runtime.voice.GROUP_CHECK_CLIPS` clips or without
    embeddings (``--no-voice``, ``--no-stats``)."""
    from emort.runtime.voice import GROUP_CHECK_CLIPS, GROUP_VOICE_MIN, group_voice_similarity

    voices = [a.voice for a in clips]
    if len(voices) < GROUP_CHECK_CLIPS or any(v is None for v in voices):
        return None
    sim = group_voice_similarity([np.asarray(v).reshape(-1) for v in voices])
    if sim is None or sim >= GROUP_VOICE_MIN:
        return None
    return (f"speaker {name}: its clips sound like more than one voice (median voice similarity between them {sim:.3f}; one "
            f"speaker's clips almost always read above {GROUP_VOICE_MIN}), yet they are read as one speaker: give each "
            "speaker a folder of its own, or a --speaker-pattern that tells them apart")


def _reference_voice_notes(name: str, clips: list, reference: list) -> tuple[str | None, list[str | None]]:
    """Notes where a speaker's scored clips do not sound like its reference clips (GE2E embeddings,
    each side pooled as :func:`~emort.runtime.voice.voice_match` pools them; the reference's mean
    computed once): for the speaker, where the clips' mean is below
    :data:`~emort.runtime.voice.REFERENCE_VOICE_MIN` (a --reference folder that holds another speaker
    normalises with the wrong statistics, silently), and per clip, where that clip alone is below
    :data:`~emort.runtime.voice.REFERENCE_CLIP_MIN` (a folder that mixes other speakers' clips in,
    which the mean can hide). None where they match, where either side has too few clips to tell,
    or where no embeddings were computed (``--no-voice``, ``--no-stats``)."""
    from emort.runtime.voice import (
        REFERENCE_CHECK_CLIPS,
        REFERENCE_CHECK_REFERENCE,
        REFERENCE_CLIP_MIN,
        REFERENCE_VOICE_MIN,
        pool_windows,
    )

    own, ref = [a.voice for a in clips], [a.voice for a in reference]
    if len(ref) < REFERENCE_CHECK_REFERENCE or any(v is None for v in ref):
        return None, [None] * len(clips)
    ref_mean = pool_windows(np.stack(ref))
    group = None
    if len(own) >= REFERENCE_CHECK_CLIPS and all(v is not None for v in own):  # fewer: too noisy (1 against 5 of the same voice: 3.5% below)
        cos = float(pool_windows(np.stack(own)) @ ref_mean)
        if cos < REFERENCE_VOICE_MIN:
            group = (f"speaker {name}: its clips do not sound like its reference clips (voice similarity {cos:.3f}; a speaker's own "
                     f"clips, and emort's conversions of them, almost always read above {REFERENCE_VOICE_MIN}): check that --reference "
                     "holds this speaker's originals")
    per_clip = []
    for v in own:
        cos = None if v is None else float(pool_windows(v[None]) @ ref_mean)
        per_clip.append(None if cos is None or cos >= REFERENCE_CLIP_MIN else
                        f"this clip does not sound like its speaker's reference clips (voice similarity {cos:.3f}; a speaker's own "
                        f"clips, edited or converted, almost never read below {REFERENCE_CLIP_MIN}): is it another speaker's?")
    return group, per_clip


class _References:
    """The reference clips of each speaker, read on first use (:meth:`Scorer.analyse` of each)."""

    def __init__(self, scorer, reference, pattern: str | None):
        self.scorer = scorer
        self.pattern = pattern
        root = Path(reference)
        if root.exists() and not root.is_dir():  # speakers are matched by folder or name below it
            raise E.EmortError(f"--reference {root}: not a folder; give the folder that holds the original clips")
        jobs, issues = discover([root], skip_output_trees=True)  # emort's outputs below it are not originals
        bad = [r for r in issues if r.reason in ("missing", "permission", "not-a-file")]
        if bad and not jobs:
            raise E.EmortError(f"--reference: {bad[0].error}")
        if not jobs:
            raise E.EmortError(f"--reference {root}: no audio files found")
        self.root = root
        groups, _ = speaker_groups(jobs, pattern)
        self.groups: dict[str, list[Job]] = {}
        for grp in groups:
            self.groups.setdefault(grp.match, []).extend(grp.jobs)
        self.cache: dict[str, tuple[list | None, str]] = {}
        self.unusable: list[ScoreRecord] = []

    def get(self, match: str) -> tuple[list | None, str]:
        if match not in self.cache:
            jobs = self.groups.get(match)
            if not jobs:
                where = (f"no clips of speaker {match!r} under {self.root}" if self.pattern is not None
                         else f"no audio directly in {self.root / match}")
                self.cache[match] = (None, f"no reference clips for this speaker ({where})")
            else:
                recs = [ScoreRecord(str(j.path), "failed") for j in jobs]
                read = _embed_voices(self.scorer, [_read_for_scoring(self.scorer, r, embed=False) for r in recs], recs)  # embedded once
                mels = []
                for r, m in zip(recs, read):
                    if m is None:
                        r.status, r.reason, r.note, r.error = "skipped", "reference-unreadable", f"{r.error} (reference clip left out)", None
                        self.unusable.append(r)
                    else:
                        mels.append(m)
                self.cache[match] = (mels or None, f"none of this speaker's reference clips under {self.root} is usable")
        return self.cache[match]

    def drain(self) -> list[ScoreRecord]:
        """Records of reference clips that could not be used, each once."""
        out, self.unusable = self.unusable, []
        return out


# --- summaries ---------------------------------------------------------------------------------


def summarize(records: Sequence[Record], emotion: str | None = None) -> dict:
    """Counts and means of a batch, as reports show them.

    ``done``: files with a result (written or scored now, or skipped as done earlier);
    ``skipped`` / ``failed``: file counts per reason code. With ``emotion`` (enhance):
    mean P(target) of the inputs and outputs written now, mean change applied (dB) and mean
    real-time factor (compute seconds per second of audio); with prosody records, also the
    mean F0 shift (semitones), tempo factor and level change (dB).
    """
    out: dict = {"done": 0, "processed": 0, "skipped": {}, "failed": {}}
    for r in records:
        if r.status in ("written", "scored"):
            out["processed"] += 1
            out["done"] += 1
        elif r.status == "skipped":
            out["skipped"][r.reason] = out["skipped"].get(r.reason, 0) + r.files
            out["done"] += r.reason == "done"
        else:
            out["failed"][r.reason] = out["failed"].get(r.reason, 0) + r.files
    if emotion is not None:
        now = [r for r in records if isinstance(r, EnhanceRecord) and r.status == "written"]
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
        out["mean_p_target_before"] = mean([target_probability(r.scores_before, emotion) for r in now if r.scores_before])
        out["mean_p_target_after"] = mean([target_probability(r.scores_after, emotion) for r in now if r.scores_after])
        out["mean_change_db"] = mean([r.change_db for r in now if r.change_db is not None])
        out["mean_rtf"] = mean([r.seconds / r.duration_s for r in now if r.seconds is not None and r.duration_s])
        pros = [r for r in now if r.f0_shift_st is not None]
        if pros:  # --prosody: the mean change applied
            out["mean_f0_shift_st"] = mean([r.f0_shift_st for r in pros])
            out["mean_f0_range"] = mean([r.f0_range for r in pros])
            out["mean_tempo"] = mean([r.tempo for r in pros])
            out["mean_loudness_db"] = mean([r.loudness_db for r in pros])
    return out


def exit_status(summary: dict, shard: Shard | None = None) -> int:
    """:data:`EXIT_NOTHING` when no file has a result, :data:`EXIT_FAILED` when any failed, else :data:`EXIT_OK`.

    A shard that holds none of the files found has nothing to do: OK (unless some failed), so a
    job array with more tasks than files does not report failures.
    """
    if summary["done"] == 0 and not (shard is not None and shard.taken == 0 and shard.found > 0):
        return EXIT_NOTHING
    return EXIT_FAILED if summary["failed"] else EXIT_OK


# --- merging shard reports ---------------------------------------------------------------------

#: Report fields that belong to one part of a sharded batch: not compared when merging.
_PER_PART = ("complete", "summary", "results", "shard", "cluster")


def merge_reports(reports: Sequence[tuple[str, dict]]) -> dict:
    """The JSON reports of the shards of one batch (``--json`` of ``--shard K/N`` runs) -> one report.

    ``reports``: (name, parsed report) pairs; names appear in errors. The result has the
    shape of an unsharded run's report: its results in the order that run gives them (each
    shard result's ``index``; the field itself is dropped), the summary recomputed from them,
    ``complete`` true when every part is complete and all N shards are present; plus
    ``shards`` (each part: index, count, report, complete, device) and, when some are
    absent, ``missing_shards``. The device may differ between parts (``settings.device``
    then lists them). Raises EmortError (one line) for a file that is not such a report,
    reports of another command, emort version, bundle or settings, of different splits, a
    shard given twice, or a file in two reports.
    """
    if not reports:
        raise E.EmortError("no reports to merge")
    for name, rep in reports:
        if not isinstance(rep, dict) or rep.get("command") not in ("enhance", "score") or not isinstance(rep.get("results"), list):
            raise E.EmortError(f"{name}: not a JSON report of emort enhance or emort score (--json)")
        bad = next((r for r in rep["results"] if not isinstance(r, dict) or not isinstance(r.get("path"), str)
                    or r.get("status") not in STATUSES), None)
        if bad is not None:
            raise E.EmortError(f"{name}: a result is not one emort writes ({str(bad)[:80]}); not a report of emort enhance or emort score")
    first_name, first = reports[0]
    base = _comparable(first)
    for name, rep in reports[1:]:
        diff = _first_difference(base, _comparable(rep))
        if diff is not None:
            raise E.EmortError(f"{name}: {diff} differs from {first_name}'s; only the shards of one batch (same command, "
                               "version, bundle and settings) merge")
    shards: dict[int, str] = {}
    count = None
    for name, rep in reports:
        k, n = _shard_of(name, rep)
        if count is not None and n != count:
            raise E.EmortError(f"{name}: shard {k}/{n} is of another split than {first_name}'s (of {count})")
        count = n
        if k in shards:
            raise E.EmortError(f"{name}: shard {k}/{n} is {shards[k]} again")
        shards[k] = name
    owner: dict[str, str] = {}
    for name, rep in reports:
        for r in rep["results"]:
            p = r.get("path")
            if owner.setdefault(p, name) != name:
                raise E.EmortError(f"{name}: {p} is also in {owner[p]}; shards of one split never share a file")
    runs: list[tuple[float, int, int, list[dict]]] = []  # each result with the unnumbered ones after it
    for seq, (_, rep) in enumerate(reports):
        for pos, r in enumerate(rep["results"]):
            if r.get("index") is not None or not runs or runs[-1][1] != seq:
                runs.append((float("inf") if r.get("index") is None else r["index"], seq, pos, []))
            runs[-1][3].append({k: v for k, v in r.items() if k != "index"})
    results = [r for run in sorted(runs, key=lambda t: t[:3]) for r in run[3]]
    command = first["command"]
    cls = EnhanceRecord if command == "enhance" else ScoreRecord
    names = {f.name for f in fields(cls)}
    records = [cls(**{k: v for k, v in r.items() if k in names}) for r in results]
    settings = dict(first.get("settings") or {})
    devices = sorted({str((rep.get("settings") or {}).get("device")) for _, rep in reports})
    if "device" in settings:
        settings["device"] = devices[0] if len(devices) == 1 else devices
    missing = sorted(set(range(1, (count or 1) + 1)) - set(shards))
    merged = {k: v for k, v in first.items() if k not in ("shard", "cluster")}
    merged.update({
        "complete": all(rep.get("complete") for _, rep in reports) and not missing,
        "settings": settings,
        "summary": summarize(records, settings.get("emotion") if command == "enhance" else None),
        "results": results,
        "shards": [{"index": _shard_of(n, r)[0], "count": count, "report": n, "complete": bool(r.get("complete")),
                    "device": (r.get("settings") or {}).get("device"), **({"cluster": r["cluster"]} if "cluster" in r else {})}
                   for n, r in sorted(reports, key=lambda nr: _shard_of(*nr)[0])],
    })
    if missing:
        merged["missing_shards"] = missing
    return merged


def _shard_of(name: str, rep: dict) -> tuple[int, int]:
    """(K, N) of a report; an unsharded report is 1/1."""
    sh = rep.get("shard")
    if sh is None:
        return 1, 1
    try:
        k, n = int(sh["index"]), int(sh["count"])
    except (KeyError, TypeError, ValueError):
        raise E.EmortError(f"{name}: unreadable shard entry {sh!r}") from None
    if not 1 <= k <= n:
        raise E.EmortError(f"{name}: shard {k}/{n} is not a part of a {n}-way split (1 <= K <= N)")
    return k, n


def _comparable(rep: dict) -> dict:
    """What must be equal in every part of one batch: all but the per-part fields, the device and the bundle's path."""
    out = {k: v for k, v in rep.items() if k not in _PER_PART}
    out["settings"] = {k: v for k, v in (rep.get("settings") or {}).items() if k != "device"}
    out["bundle"] = (rep.get("bundle") or {}).get("hash")
    return out


def _first_difference(a: dict, b: dict, pre: str = "") -> str | None:
    """``settings.options.amount_db (2.0 vs 3.0)`` for the first field that differs, or None."""
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            return _first_difference(x, y, f"{pre}{k}.")
        show = lambda v: (repr(v)[:40] + "...") if len(repr(v)) > 43 else repr(v)  # noqa: E731
        return f"{pre}{k} ({show(y)} vs {show(x)})"
    return None
