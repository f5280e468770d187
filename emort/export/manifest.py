"""Changes to an existing bundle's manifest (defaults, prosody table, file checksums): read it
whole, change it, write it atomically. The runtime reads manifests in ``emort.runtime.bundle``."""

from __future__ import annotations

import json
from collections.abc import Callable
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
