"""The bundle's ``edit_basis`` (natural within-speaker spectral variation): measured on the
training speakers, written into an existing bundle's manifest (weights and checksums untouched)."""

from __future__ import annotations

from pathlib import Path

from emort.export.manifest import held_out_speakers, update_manifest, writable_bundle
from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS

#: Components kept in the manifest (the edit uses the first ``EditOptions.subspace`` of them).
STORED_COMPONENTS = 32


def add_edit_basis(bundle_dir: str | Path, data: list[str], components: int = STORED_COMPONENTS) -> dict:
    """Measure :func:`emort.training.edit_basis.natural_basis` on the training speakers of
    ``data`` (``KIND=PATH`` specs; validation, test and every speaker a model of the bundle held
    out are dropped) and write its first ``components`` rows into the manifest as
    ``edit_basis``: ``{"components": [[...n_mels] x k], "explained": [...k], "source": {...}}``.
    Returns that entry. Raises EmortError (one line) when the manifest cannot be written or no
    speaker with two clips is left."""
    from emort.training import corpora
    from emort.training.edit_basis import natural_basis

    b = writable_bundle(bundle_dir)
    items = corpora.only_canonical(corpora.read_specs(data), tuple(b.labels) if b.labels else EMOTIONS)
    held = held_out_speakers(b)
    train = [i for i in items if corpora.source_speaker(i.speaker_key) not in held]
    try:
        comps, explained, used = natural_basis(train, b.mel)
    except ValueError:
        raise EmortError(f"{', '.join(data)}: no training speaker with two clips or more (held out: {len(held)} speakers of {b.path})") from None
    k = min(components, len(comps))
    need = max(b.defaults.subspace or 0, b.defaults.prosody_subspace or 0)
    if k < need:  # else every plain `emort enhance` with this bundle fails
        raise EmortError(f"{b.path}: its defaults edit in a subspace of {need} components and this basis has {k} "
                         f"({used} clips); give more data, or lower the defaults first (`emort export defaults`)")
    entry = {"components": [[round(float(v), 7) for v in row] for row in comps[:k]],
             "explained": [round(float(v), 6) for v in explained[:k]],
             "source": {"what": "principal components of each clip's mean log-mel (dB, active frames) minus its speaker's mean clip",
                        "clips": int(used), "speakers": sorted({i.speaker_key for i in train}), "held_out_speakers": sorted(held)}}
    return update_manifest(b, lambda m: m.update(edit_basis=entry))["edit_basis"]
