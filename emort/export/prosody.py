"""The bundle's prosody table (``manifest.prosody``): measured on training speakers, written
into an existing bundle's manifest (the weights and their checksums are untouched)."""

from __future__ import annotations

from pathlib import Path

from emort.export.manifest import held_out_speakers, update_manifest, writable_bundle
from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS


def add_prosody_table(bundle_dir: str | Path, data: list[str]) -> dict:
    """Measure the table on the training speakers of ``data`` (``KIND=PATH`` specs; held-out
    speakers dropped, see :func:`held_out_speakers`) and write it into the bundle's manifest
    Returns the table as written. Raises EmortError (one line) when the manifest cannot be
    written or no training speaker with neutral clips is left."""
    from emort.training import corpora
    from emort.training.prosody_stats import prosody_table

    b = writable_bundle(bundle_dir)
    items = corpora.only_canonical(corpora.read_specs(data), tuple(b.labels) if b.labels else EMOTIONS)
    held = held_out_speakers(b)
    train = [i for i in items if corpora.source_speaker(i.speaker_key) not in held]
    table = prosody_table(train, b.mel)
    if not table.source.get("speakers"):
        raise EmortError(f"{', '.join(data)}: no training speaker with neutral clips (the table measures each speaker "
                         f"against its own neutral clips; held out: {len(held)} speakers of {b.path})")
    table.source["held_out_speakers"] = sorted(held)
    return update_manifest(b, lambda m: m.update(prosody=table.to_dict()))["prosody"]
