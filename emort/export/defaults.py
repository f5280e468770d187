"""The bundle's default edit options (``manifest.defaults``), set in an existing bundle: the
options chosen on the validation speakers (``emort eval enhance --split val`` writes them to
``defaults.json``) become what ``emort enhance`` uses when no option is given."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from emort import __version__
from emort.export.manifest import update_manifest, writable_bundle
from emort.runtime.editing import EditOptions
from emort.runtime.errors import EmortError


def check_defaults(opts: EditOptions, basis_rows: int, source: str, where: str | Path = "a new bundle") -> None:
    """Raise EmortError (one line, naming ``source``) unless ``opts`` can be a bundle's defaults:
    valid edit options; a ``subspace`` / ``prosody_subspace`` the bundle's ``basis_rows`` edit-basis
    components cover (else every plain `emort enhance` with it would fail); no ``prosody`` (a run's
    choice: `emort enhance` always passes --prosody or not, so a default would be ignored)."""
    if opts.prosody:
        raise EmortError(f"{source}: prosody is chosen per run (emort enhance --prosody); the bundle sets what it does "
                         "(prosody_amount_db, pitch, tempo, loudness, prosody_renderer, prosody_contrast)")
    try:
        opts.validate()
    except EmortError as e:
        raise EmortError(f"{source}: not valid edit options ({e})") from None
    for name in ("subspace", "prosody_subspace"):
        k = getattr(opts, name)
        if k and k > basis_rows:
            raise EmortError(f"{source}: {name} {k} needs {k} edit-basis components (the edit basis of "
                             f"`emort export edit-basis`); {where} carries {basis_rows}")


def set_defaults(bundle_dir: str | Path, values: dict, source: str) -> EditOptions:
    """Merge ``values`` (edit options by name; keys :class:`EditOptions` does not know, such as an
    evaluation's notes, are ignored) into the bundle's defaults, validate them and write the
    manifest (``defaults``, and ``defaults_source``: ``source``, the values taken, the date and
    emort version, and under ``earlier`` the records of the calls before, oldest first, so each
    default keeps the evaluation it came from). Returns the new defaults. Raises EmortError (one line) for invalid options
    or a manifest that cannot be written; the weights and their checksums are untouched."""
    b = writable_bundle(bundle_dir)
    known = set(EditOptions.__dataclass_fields__)
    taken = {k: v for k, v in values.items() if k in known}
    if not taken:
        raise EmortError(f"{source}: no edit option to set (options: {', '.join(sorted(known))})")
    new = EditOptions.from_dict({**b.defaults.to_dict(), **taken})
    check_defaults(new, 0 if b.edit_basis is None else len(b.edit_basis), source, b.path)

    def record(m: dict) -> None:
        prev = m.get("defaults_source")
        earlier = []
        if isinstance(prev, dict):
            before = prev.get("earlier")
            earlier = [*(before if isinstance(before, list) else []), {k: v for k, v in prev.items() if k != "earlier"}]
        m.update(defaults=new.to_dict(), defaults_source={
            "source": source, "set": taken, "emort_version": __version__,
            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            **({"earlier": earlier} if earlier else {})})

    update_manifest(b, record)
    return new
