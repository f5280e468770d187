"""The bundle's default edit options (``manifest.defaults``), set in an existing bundle: the
options chosen on the validation speakers (``emort eval enhance --split val`` writes them to
``defaults.json``) become what ``emort enhance`` uses when no option is given."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from emort import __version__
from emort.runtime.atomic import check_writable, write_text_atomic
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.editing import EditOptions
from emort.runtime.errors import EmortError


def set_defaults(bundle_dir: str | Path, values: dict, source: str) -> EditOptions:
    """Merge ``values`` (edit options by name; keys :class:`EditOptions` does not know, such as an
    evaluation's notes, are ignored) into the bundle's defaults, validate them and write the
    manifest (``defaults``, and ``defaults_source``: ``source``, the values taken, the date and
    emort version). Returns the new defaults. Raises EmortError (one line) for invalid options
    or a manifest that cannot be written; the weights and their checksums are untouched."""
    b = load_bundle(bundle_dir)
    check_writable(b.path / MANIFEST, "bundle manifest")
    known = set(EditOptions.__dataclass_fields__)
    taken = {k: v for k, v in values.items() if k in known}
    if not taken:
        raise EmortError(f"{source}: no edit option to set (options: {', '.join(sorted(known))})")
    new = EditOptions.from_dict({**b.defaults.to_dict(), **taken})
    new.validate()
    mf = b.path / MANIFEST
    m = json.loads(mf.read_text())
    m["defaults"] = new.to_dict()
    m["defaults_source"] = {"source": source, "set": taken, "emort_version": __version__,
                            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    write_text_atomic(mf, json.dumps(m, indent=1))
    return new
