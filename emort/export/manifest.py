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


def commit_graphs(bundle: Bundle, change: Callable[[dict], None], old_files: Iterable[str] = (),
                  new_files: Iterable[str] = ()) -> dict:
    """Rewrite the bundle's manifest with ``change`` (:func:`update_manifest`), then remove each of
    ``old_files`` (graph files it may have stopped naming) that no model of the new manifest reads: its
    checksum goes with the same write, the file after it (a manifest may point two models at one file,
    which then stays). ``new_files``, written before the call, are removed if the rewrite fails. The
    bundle loads at every step. Returns the manifest as written."""
    old, new = set(old_files), set(new_files)

    def named(m: dict) -> set[str]:
        return {spec["file"] for spec in m["models"].values()}

    def apply(m: dict) -> None:
        change(m)
        for f in old - named(m):
            m["files"].pop(f, None)

    try:
        manifest = update_manifest(bundle, apply)
    except BaseException:
        for f in new - old:
            (bundle.path / f).unlink(missing_ok=True)
        raise
    for f in old - named(manifest):
        (bundle.path / f).unlink(missing_ok=True)
    return manifest


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

    def change(m: dict) -> None:
        m["models"][model] = {**entry, "file": name}
        m.setdefault("training", {})[model] = training
        m["files"][name] = digest
        m.setdefault("parity", {})[model] = err

    try:
        if before_commit is not None:
            before_commit()
    except BaseException:
        if name != old:
            (bundle.path / name).unlink(missing_ok=True)
        raise
    return commit_graphs(bundle, change, [old] if old is not None else [], [name])


def held_out_speakers(bundle) -> set[str]:
    """Speakers the table must not see: the project's validation and test speakers, and every
    speaker any of the bundle's models held out."""
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS)
    for rec in bundle.training.values():
        held |= set(rec.split.held_out_speakers) | set(rec.split.val_speakers) | set(rec.split.test_speakers)
    return held
