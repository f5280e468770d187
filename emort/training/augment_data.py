"""``emort augment``: training clips as new training data, written as audio plus a CSV manifest.

Two kinds, one output layout, read back with ``--data csv=OUT/manifest.csv`` by ``emort train
ser`` and ``emort train stats``:

- ``emort``: the seed paper's use of the model (data augmentation for SER; its Tables 10-11).
  Each training clip is edited with the enhancement's calibrated edit
  (:class:`~emort.runtime.enhancer.Enhancer`, bundle defaults unless given) toward a target:
  its own emotion (``own``, labelled as before) or other emotions (labelled with the target).
  Runs through the batch layer (:func:`emort.runtime.batch.enhance_files`): each target
  folder resumes, never overwrites an input or an output of other settings, and can be
  sharded.
- ``classic``: channel and condition augmentation through libraries, one random chain per
  copy: band limit to a telephone (8 kHz) or wideband (16 kHz) sampling rate (soxr down and
  up), MP3 at 32-96 kbit/s, room reverberation (pyroomacoustics' image method through
  ``audiomentations.RoomSimulator``), coloured noise at 5-30 dB SNR, and level ±10 dB, each
  with probability 0.5 (level 1.0). Opus is not offered: it needs the system libopus.

Clips of the project's test speakers (``emort.training.splits.TEST_SPEAKERS``) are never
augmented; validation speakers are left out too unless ``include_val`` (they early-stop the SER).
Manifest columns: ``path`` (relative to the manifest), ``emotion`` (label), ``speaker``
(``<corpus>/<speaker>+<kind>``, so an augmented speaker is normalised apart from its originals),
``source`` (the original file), ``kind``, ``target``, ``copy`` and ``settings`` (JSON).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emort.runtime.atomic import exclusive_lock, write_json_atomic, write_text_atomic
from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

KINDS = ("emort", "classic")
MANIFEST = "manifest.csv"
CLASSIC_SETTINGS = ".emort-augment.json"
EMORT_SETTINGS = ".emort-augment-emort.json"
#: Sampling rates of the band-limit step: telephone and wideband speech.
BAND_LIMITS_HZ = (8000, 16000)


@dataclass
class AugmentConfig:
    """What ``emort augment`` writes. ``targets``: ``own``, ``all`` (every emotion, the own one
    included) or a comma list of emotions; ``copies``: classic copies per clip."""

    data: list[str]
    out: str
    kind: str = "emort"
    targets: str = "own"
    copies: int = 1
    seed: int = 0
    amount_db: float | None = None
    contrast: str | None = None  # the direction's reference; None: the bundle's (uncond in the shipped one)
    bundle: str | None = None
    include_val: bool = False
    overwrite: bool = False
    shard: str | None = None
    exclude: list[str] = field(default_factory=list)

    def target_list(self) -> list[str] | None:
        """None for ``own``, else the emotions to edit toward."""
        t = self.targets.strip().lower()
        if t == "own":
            return None
        if t == "all":
            return list(EMOTIONS)
        names = [x.strip() for x in t.split(",") if x.strip()]
        bad = [n for n in names if n not in EMOTIONS]
        if bad or not names:
            raise EmortError(f"--targets: unknown emotion(s) {', '.join(bad) or '(none)'}; use own, all or some of {', '.join(EMOTIONS)}")
        return names


def source_items(cfg: AugmentConfig) -> tuple[list[corpora.Item], dict[str, int]]:
    """Canonical clips that may be augmented, and counts of what was left out and why."""
    every = corpora.read_specs(cfg.data)
    items = corpora.only_canonical(every, EMOTIONS)
    held = set(TEST_SPEAKERS) | (set() if cfg.include_val else set(VAL_SPEAKERS)) | set(cfg.exclude)
    out = Path(cfg.out).resolve()
    inside = {i.path for i in items if Path(i.path).resolve().is_relative_to(out)}  # earlier copies: never sources
    # held out by the voice behind the key: a CSV's keys are '<csv stem>/<speaker>' (augment's own
    # manifest names 'emodb/10+classic'), which never equal the split's 'emodb/10'
    kept = [i for i in items if i.source_speaker_key not in held and i.speaker_key not in held and i.path not in inside]
    left = {"other emotions": len(every) - len(items), "test speakers": sum(i.source_speaker_key in TEST_SPEAKERS for i in items)}
    specs = [corpora.parse_data_spec(spec) for spec in cfg.data]
    unread = sum(corpora.folders_not_read(path) for kind, path in specs if (kind or corpora.detect_kind(path)) == "folders")
    if unread:
        left["not in an emotion folder"] = unread
    if inside:
        left["inside --out"] = len(inside)
    if not cfg.include_val:
        left["validation speakers"] = sum(i.source_speaker_key in VAL_SPEAKERS for i in items)
    if cfg.exclude:
        left["excluded"] = sum(i.source_speaker_key in set(cfg.exclude) or i.speaker_key in set(cfg.exclude) for i in items)
    if not kept:
        why = ", ".join(f"{k} {v}" for k, v in left.items() if v and k != "other emotions")
        hint = "; --out holds the corpus: earlier copies are never sources, give --out a folder outside it" if inside else ""
        raise EmortError(f"no clips left to augment of {len(items)} ({why or 'none found'}){hint}")
    return kept, left


def _speaker(item: corpora.Item, kind: str) -> str:
    # A CSV source that names corpus speakers ('<csv stem>/emodb/03', or augment's own manifest:
    # 'manifest/emodb/10+classic'): the voice behind the key, so that splits read back from the
    # manifest hold the copy out with its speaker. Any other key as it is (a folder's speaker may
    # contain '+', which the voice's key would cut).
    key = item.source_speaker_key if item.speaker_key.count("/") >= 2 else item.speaker_key
    return f"{key}+{kind}"


# --- emort edits ---------------------------------------------------------------------------------


def augment_emort(cfg: AugmentConfig, items: list[corpora.Item], on_record: Callable | None = None) -> Iterator[dict]:
    """Edit each clip toward its targets; yield manifest rows of the outputs written or already done."""
    from emort.runtime import batch
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load(cfg.bundle, device="cpu")
    opts = enh.options(amount_db=cfg.amount_db, seed=cfg.seed, contrast=cfg.contrast)
    targets = cfg.target_list()
    by_target: dict[str, list[corpora.Item]] = {}
    for it in items:
        for t in ([it.emotion] if targets is None else targets):
            by_target.setdefault(t, []).append(it)
    part = batch.Shard.parse(cfg.shard) if cfg.shard else None
    out = Path(cfg.out)
    settings = json.dumps({"options": _marker_options(opts), "bundle": enh.bundle.edit_hash}, sort_keys=True)  # the edit's graphs
    # One line up front for a folder made with other settings (the batch layer would refuse
    # every clip of it one by one).
    marker = out / EMORT_SETTINGS
    if marker.exists() and not cfg.overwrite:
        differ = _marker_differences(marker.read_text(), json.loads(settings), type(opts))
        if differ:
            raise EmortError(f"{out}: emort copies made with other settings ({differ}); use another --out or --overwrite")
    write_text_atomic(marker, settings)
    for target, group in sorted(by_target.items()):
        src = {str(Path(i.path)): i for i in group}
        for rec in batch.enhance_files(enh, list(src), out / target, target, opts, overwrite=cfg.overwrite, score_output=False,
                                       shard=part):
            if on_record is not None:
                on_record(rec)
            if rec.output and (rec.status == "written" or rec.reason == "done"):
                it = src[rec.path]
                yield {"path": Path(rec.output).relative_to(out).as_posix(), "emotion": target, "speaker": _speaker(it, "emort"),
                       "source": str(Path(it.path).resolve()), "kind": "emort", "target": target if targets is not None else "own", "copy": 0,
                       "settings": settings}


def _marker_options(opts) -> dict:
    """What can change an emort copy: the options as the batch layer's resume record compares
    them (``EditOptions.settings_dict``: no prosody controls, which augment never uses), ``part``
    left out while it is the full edit (the only one before 0.22)."""
    return _without_full_part(opts.settings_dict())


def _without_full_part(options: dict) -> dict:
    return {k: v for k, v in options.items() if not (k == "part" and v == "full")}


def _marker_differences(text: str, settings: dict, options_type) -> str:
    """The fields in which an emort folder's marker ``text`` differs from ``settings`` (``"a: x ->
    y"``, comma-separated), or "" when it records the same edit. A marker of an earlier version
    (0.5-0.27: every option, the prosody controls too) is read as the batch layer reads an output's
    record (:func:`emort.runtime.batch._with_defaults`: through ``options_type.from_dict``, options
    this version does not know kept so that they differ), so controls that cannot change a copy do
    not refuse it."""
    from emort.runtime import batch

    try:
        old = json.loads(text)
        filled = batch._with_defaults(old, options_type())["options"]
        old_opts = _without_full_part(filled)
    except Exception:  # unreadable or foreign: name it whole
        return f"marker {text.strip()[:200]!r}"
    new_opts = settings["options"]
    diff = [f"{k}: {old_opts.get(k)!r} -> {new_opts.get(k)!r}" for k in sorted(set(old_opts) | set(new_opts)) if old_opts.get(k) != new_opts.get(k)]
    if old.get("bundle") != settings["bundle"]:
        diff.append(f"bundle edit hash: {old.get('bundle')} -> {settings['bundle']}")
    return ", ".join(diff)


# --- classic channel augmentation ----------------------------------------------------------------


def classic_chain(seed: int, sample_rate: int):
    """The random chain of one copy, as ``(description, apply(samples) -> samples)``; reproducible
    from ``seed``. Samples: float32 mono at ``sample_rate``; the output has the same length."""
    import audiomentations as A
    import soxr

    rng = np.random.default_rng(seed)
    steps: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
    if rng.random() < 0.5:
        band = int(rng.choice([b for b in BAND_LIMITS_HZ if b < sample_rate] or [sample_rate]))
        if band < sample_rate:
            steps.append((f"band-limit {band} Hz", lambda x, b=band: soxr.resample(soxr.resample(x, sample_rate, b), b, sample_rate)[: len(x)]))
    if rng.random() < 0.5:
        r = A.RoomSimulator(leave_length_unchanged=True, p=1.0)  # room drawn at each call: seeded in apply()
        steps.append(("room reverberation", lambda x, r=r: r(samples=x, sample_rate=sample_rate)))
    if rng.random() < 0.5:
        kbps = int(rng.choice([32, 48, 64, 96]))
        m = A.Mp3Compression(min_bitrate=kbps, max_bitrate=kbps, backend="fast-mp3-augment", p=1.0)
        steps.append((f"mp3 {kbps} kbit/s", lambda x, m=m: m(samples=x, sample_rate=sample_rate)))
    if rng.random() < 0.5:
        snr = float(rng.uniform(5, 30))
        n = A.AddColorNoise(min_snr_db=snr, max_snr_db=snr, p=1.0)
        steps.append((f"noise {snr:.0f} dB SNR", lambda x, n=n: n(samples=x, sample_rate=sample_rate)))
    gain = float(rng.uniform(-10, 10))
    steps.append((f"level {gain:+.1f} dB", lambda x, g=gain: x * np.float32(10 ** (g / 20))))

    def apply(x: np.ndarray) -> np.ndarray:
        import random

        state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(seed % 2**32)  # audiomentations draws from the global RNGs (random and numpy)
        random.seed(seed)
        try:
            y = np.asarray(x, np.float32)
            for _, f in steps:
                y = np.asarray(f(y), np.float32)
                y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
        finally:
            np.random.set_state(state)
            random.setstate(py_state)
        peak = float(np.max(np.abs(y))) if len(y) else 0.0
        return y / peak * 0.99 if peak > 0.99 else y  # no clipping: the level step is a level, not distortion

    return ", ".join(d for d, _ in steps), apply


def _check_classic_names(items: list[corpora.Item]) -> None:
    """Classic copies are named by their source's file name: two sources of one name would write
    one copy. EmortError naming the first such pair (before --out is made)."""
    seen: dict[str, str] = {}
    for i in items:
        other = seen.setdefault(Path(i.path).stem, str(i.path))
        if other != str(i.path):
            raise EmortError(f"two source clips share a file name ({other} and {i.path}); augment their corpora into separate --out folders")


def _copy_seed(seed: int, path: str, copy: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{Path(path).name}:{copy}".encode()).digest()[:8], "little")


def augment_classic(cfg: AugmentConfig, items: list[corpora.Item], on_record: Callable | None = None) -> Iterator[dict]:
    """``copies`` channel-augmented copies of each clip; yield manifest rows."""
    from emort.runtime.audio import read_audio, write_wav_atomic

    out = Path(cfg.out)
    settings = {"kind": "classic", "seed": cfg.seed, "chain": "band-limit/reverb/mp3/noise p=0.5 each, level +-10 dB",
                "band_limits_hz": list(BAND_LIMITS_HZ)}
    _check_classic_names(items)
    marker = out / "classic" / CLASSIC_SETTINGS
    if marker.exists() and not cfg.overwrite:
        old = json.loads(marker.read_text())
        if old != settings:
            raise EmortError(f"{marker.parent}: made with other settings ({old}); use another --out or --overwrite")
    write_json_atomic(marker, settings)
    # An existing copy is done only if the manifest lists it from the same source with the same
    # settings (another corpus's clip of the same name, another seed, an interrupted --overwrite
    # run): the manifest is the record of what each file is.
    listed = _manifest_rows(out / MANIFEST)
    for it in items:
        source = str(Path(it.path).resolve())
        for c in range(cfg.copies):
            dest = out / "classic" / f"copy{c}" / f"{Path(it.path).stem}.wav"
            rel = dest.relative_to(out).as_posix()
            row_settings = json.dumps({**settings, "copy_seed": _copy_seed(cfg.seed, it.path, c)}, sort_keys=True)
            desc = None
            status = "done"
            if not cfg.overwrite and dest.exists():
                old_row = listed.get(rel)
                why = ("is not listed in the manifest (made by something else, or by a run that was killed)" if old_row is None
                       else f"was made from {old_row.get('source')}" if old_row.get("source") != source
                       else "was made with other settings" if old_row.get("settings") != row_settings else None)
                if why is not None:
                    if on_record is not None:
                        on_record({"path": it.path, "status": "failed",
                                   "error": f"{it.path}: {dest} exists and {why}; pass --overwrite to make it again, or use another --out"})
                    continue
            try:
                if cfg.overwrite or not dest.exists():
                    a = read_audio(it.path)
                    desc, apply = classic_chain(_copy_seed(cfg.seed, it.path, c), a.sample_rate)
                    write_wav_atomic(dest, apply(a.samples), a.sample_rate)
                    status = "written"
            except Exception as e:  # one line per file naming it; the batch goes on (e.g. a clip too short for MP3)
                if on_record is not None:
                    msg = str(e) if isinstance(e, EmortError) else f"{it.path}: {type(e).__name__}: {e}"
                    on_record({"path": it.path, "status": "failed", "error": msg})
                continue
            if on_record is not None:
                on_record({"path": it.path, "status": status, "output": str(dest), "chain": desc})
            yield {"path": rel, "emotion": it.emotion, "speaker": _speaker(it, "classic"),
                   "source": source, "kind": "classic", "target": "own", "copy": c, "settings": row_settings}


FIELDS = ("path", "emotion", "speaker", "source", "kind", "target", "copy", "settings")


def _manifest_rows(manifest: Path) -> dict[str, dict]:
    """The rows of an existing manifest by path ({} when there is none)."""
    if not manifest.exists():
        return {}
    with open(manifest, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def _manifest_lock(manifest: Path):
    """An exclusive lock (:func:`emort.runtime.atomic.exclusive_lock` on ``.manifest.lock`` beside
    it) around a manifest's read-modify-write: the shards of one job array finishing together each
    add their rows, none lost (a rerun without --shard had been the only way to recover them)."""
    return exclusive_lock(manifest.parent / ".manifest.lock")


def _write_manifest(manifest: Path, rows: list[dict], replaced: tuple[str, set[str]] | None = None) -> None:
    """``manifest`` = its earlier rows (other kinds, sources, shards, targets) + ``rows``, atomically,
    under :func:`_manifest_lock`. ``replaced``: ``(prefix, sources)``: earlier rows under ``prefix``
    from these sources are dropped (classic ``--overwrite`` with fewer ``--copies``: none of those
    sources' old copies stays listed; other sources' copies stay)."""
    with _manifest_lock(manifest):
        _merge_manifest(manifest, rows, replaced)


def _merge_manifest(manifest: Path, rows: list[dict], replaced: tuple[str, set[str]] | None) -> None:
    new = {r["path"] for r in rows}
    # one row per copy of a source: an earlier row of the same copy at another path is dropped (a
    # corpus added later whose file names clash moves every output below the common folder)
    same = {(r.get("kind"), r.get("source"), r.get("emotion"), str(r.get("copy"))) for r in rows}
    kept = [r for p, r in _manifest_rows(manifest).items()
            if p not in new and (r.get("kind"), r.get("source"), r.get("emotion"), str(r.get("copy"))) not in same]
    if replaced is not None and rows:
        prefix, sources = replaced
        kept = [r for r in kept if not (r["path"].startswith(prefix) and r.get("source") in sources)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    for r in sorted(kept + rows, key=lambda r: r["path"]):
        w.writerow({k: r.get(k, "") for k in FIELDS})
    write_text_atomic(manifest, buf.getvalue())


def augment(cfg: AugmentConfig, on_record: Callable | None = None) -> dict:
    """Write the augmented clips and ``OUT/manifest.csv`` (atomically, rows of earlier runs of
    the other kind kept); return a summary. Raises EmortError for unusable settings."""
    if cfg.kind not in KINDS:
        raise EmortError(f"--kind: choose from {', '.join(KINDS)}")
    if cfg.kind == "classic" and (cfg.targets.strip().lower() != "own" or cfg.amount_db is not None or cfg.contrast or cfg.bundle or cfg.shard):
        raise EmortError("--targets, --amount, --contrast, --bundle and --shard apply to --kind emort (classic copies keep each clip's own emotion)")
    if cfg.kind == "emort" and cfg.copies != 1:
        raise EmortError("--copies applies to --kind classic (emort makes one copy per clip and target; use --seed for another)")
    cfg.target_list()  # checked before any work
    if cfg.kind == "emort":  # the edit's options and the shard too, before --out is created (0.23 left an empty manifest)
        from emort.runtime import batch
        from emort.runtime.bundle import load_bundle

        if cfg.shard:
            batch.Shard.parse(cfg.shard)
        load_bundle(cfg.bundle, verify=False).defaults.with_overrides(
            from_defaults=True, amount_db=cfg.amount_db, seed=cfg.seed, contrast=cfg.contrast).validate()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise EmortError(f"--out {out}: is a file; give a folder (it gets the copies and manifest.csv)")
    items, left = source_items(cfg)
    if cfg.kind == "classic":
        _check_classic_names(items)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file on the way (--out file/sub), a dangling link, no permission
        raise EmortError(f"--out {out}: cannot make the folder ({e.strerror or e})") from None
    run = augment_emort if cfg.kind == "emort" else augment_classic
    rows: list[dict] = []
    finished = False
    try:
        for r in run(cfg, items, on_record):
            rows.append(r)
        finished = True
    finally:  # what was written is listed, also when the run stops early
        replaced = (("classic/", {str(Path(i.path).resolve()) for i in items})
                    if cfg.kind == "classic" and cfg.overwrite and finished else None)
        if rows or replaced or (out / MANIFEST).exists():  # a run refused before any copy leaves no empty manifest
            _write_manifest(out / MANIFEST, rows, replaced)
    return {"kind": cfg.kind, "sources": len(items), "rows": len(rows), "manifest": str(out / MANIFEST), "left_out": left,
            "config": asdict(cfg)}
