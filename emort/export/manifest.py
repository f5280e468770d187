"""Changes to an existing bundle's manifest (defaults, prosody table, file checksums): read it
whole, change it, write it atomically. The runtime reads manifests in ``emort.runtime.bundle``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from emort.runtime.atomic import check_writable, write_text_atomic
from emort.runtime.bundle import MANIFEST, Bundle, load_bundle


def writable_bundle(bundle_dir: str | Path) -> Bundle:
    """The bundle at ``bundle_dir``, after checking its manifest can be rewritten (one-line
    EmortError otherwise, before any work)."""
    b = load_bundle(bundle_dir)
    check_writable(b.path / MANIFEST, "bundle manifest")
    return b


def update_manifest(bundle: Bundle, change: Callable[[dict], None]) -> dict:
    """Apply ``change`` to the bundle's manifest (a dict, changed in place) and write it
    atomically; returns the manifest as written."""
    path = bundle.path / MANIFEST
    m = json.loads(path.read_text())
    change(m)
    write_text_atomic(path, json.dumps(m, indent=1))
    return m


def graph_name(model: str, digest: str) -> str:
    """A replaced or rewritten graph's file name: ``<model>-<sha256[:12]>.onnx`` (a new name, so the
    old file stays valid until the manifest stops naming it)."""
    return f"{model}-{digest[:12]}.onnx"


def read_by_another(bundle: Bundle, file: str, model: str | Iterable[str]) -> bool:
    """Whether a model of ``bundle`` other than ``model`` (a name, or several) reads ``file``: a
    manifest may point two models at one file, which then stays when one of them is replaced."""
    skip = {model} if isinstance(model, str) else set(model)
    return any(spec.file == file for k, spec in bundle.models.items() if k not in skip)


def replace_graph(bundle: Bundle, model: str, write: Callable[[Path], float], entry: dict, training: dict,
                  before_commit: Callable[[], object] | None = None) -> dict:
    """Put a new graph for ``model`` (e.g. ``stats``, ``ser_clip``) into ``bundle``, replacing the
    one there: ``write(path)`` writes it and returns its parity error; it is named
    ``<model>-<sha256[:12]>.onnx``, then the manifest is rewritten atomically with ``entry`` (its
    ``models.<model>``, "file" filled in), ``training`` (its ``training.<model>``), the checksum and
    the parity, then the old graph is removed. A failure at any point leaves a bundle that loads
    (the old graph, or the new one). ``before_commit``: run once the new graph is written and
    checked, just before the manifest names it (e.g. removing a graph the new one makes stale).
    Returns the manifest as written."""
    import os

    from emort.runtime.bundle import sha256_file

    old = bundle.models[model].file if model in bundle.models else None
    tmp = bundle.path / f".{model}.onnx.{os.getpid()}.tmp"
    try:
        err = write(tmp)
        digest = sha256_file(tmp)
        name = graph_name(model, digest)
        os.replace(tmp, bundle.path / name)
    finally:
        if tmp.exists():
            tmp.unlink()

    drop = old is not None and old != name and not read_by_another(bundle, old, model)

    def change(m: dict) -> None:
        m["models"][model] = {**entry, "file": name}
        m.setdefault("training", {})[model] = training
        if drop:
            m["files"].pop(old, None)
        m["files"][name] = digest
        m.setdefault("parity", {})[model] = err

    try:
        if before_commit is not None:
            before_commit()
        manifest = update_manifest(bundle, change)
    except BaseException:
        if name != old:
            (bundle.path / name).unlink(missing_ok=True)
        raise
    if drop:
        (bundle.path / old).unlink(missing_ok=True)
    return manifest


def held_out_speakers(bundle) -> set[str]:
    """Speakers the table must not see: the project's validation and test speakers, and every
    speaker any of the bundle's models held out."""
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS)
    for rec in bundle.training.values():
        held |= set(rec.split.held_out_speakers) | set(rec.split.val_speakers) | set(rec.split.test_speakers)
    return held
