"""``emort export prosody``: the table measured on training speakers only, with the runtime's own
F0 definition, written into a bundle's manifest without touching its weights."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny import harmonic_tone, write_manifest_csv  # tests/tiny.py: the test helpers

pytest.importorskip("pyworld", reason="the prosody table needs the [prosody] extra")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Training speakers: neutral at 150 Hz (1 s, glide 10%), angry an octave up (0.8 s, glide
    20%, 6 dB louder); one of them peak-normalised; and a TEST speaker (emodb/03) whose 'angry'
    is far lower: it must not count."""
    rows = []
    for spk, base in (("spk/a", 150.0), ("spk/b", 120.0), ("norm/c", 140.0), ("emodb/03", 200.0)):
        for k in range(3):  # 6 clips a speaker: enough for the peak-normalisation rule
            for emo, f0, dur, glide in (("neutral", base, 1.0, 0.1), ("angry", 2 * base if spk != "emodb/03" else base / 2, 0.8, 0.2)):
                p = tmp_path / "wav" / f"{spk.replace('/', '_')}_{emo}_{k}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                x = harmonic_tone(f0 * (1 + 0.01 * k), 16000, dur, glide, harmonics=9, pad_s=0.1) * (2.0 if emo == "angry" else 1.0)
                if spk == "norm/c":  # peak-normalised recordings (as EmoDB's): level carries nothing
                    x = 0.9 * x / np.abs(x).max()
                sf.write(p, x, 16000)
                rows.append((str(p), emo, spk))
    return write_manifest_csv(tmp_path / "c.csv", rows)


def test_table_from_training_speakers_into_the_manifest(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    from emort.export.prosody import add_prosody_table
    from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    before = json.loads((b / "manifest.json").read_text())
    table = add_prosody_table(b, [f"csv={corpus}"])
    assert load_bundle(b).prosody_hash != load_bundle(DEFAULT_BUNDLE).prosody_hash
    assert [s.split("/", 1)[1] for s in table["source"]["speakers"]] == ["norm/c", "spk/a", "spk/b"]  # the test speaker left out
    assert [s.split("/", 1)[1] for s in table["source"]["level_normalised_speakers"]] == ["norm/c"]
    assert "emodb/03" in table["source"]["held_out_speakers"]
    angry = table["emotions"]["angry"]
    assert angry["semitones"] == pytest.approx(12.0, abs=0.3)
    assert angry["tempo"] == pytest.approx(1.0 / 0.8, rel=0.05)
    assert angry["f0_range"] > 1.5  # twice the glide
    assert angry["loudness_db"] == pytest.approx(20 * np.log10(2.0), abs=0.5)  # norm/c's ~0 dB not averaged in
    assert angry["speakers"] == 3 and angry["loudness_speakers"] == 2
    loaded = load_bundle(b)  # checksums still hold: only the manifest's table changed
    assert loaded.prosody.of("angry").semitones == angry["semitones"]
    after = json.loads((b / "manifest.json").read_text())
    assert {k: v for k, v in after.items() if k != "prosody"} == {k: v for k, v in before.items() if k != "prosody"}


def test_training_statistics_use_the_runtime_definition(corpus, tmp_path, monkeypatch):
    """Parity: the cached per-file statistics equal the runtime's F0 contour's, exactly."""
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    from emort.runtime.audio import read_audio
    from emort.runtime.prosody import f0_contour, utterance_prosody
    from emort.runtime.settings import DEFAULT_MEL
    from emort.training.prosody_stats import STATS, file_prosody

    paths = [r[0] for r in csv.reader(open(corpus))][1:3]
    got = file_prosody(paths, DEFAULT_MEL)
    again = file_prosody(paths, DEFAULT_MEL)  # from the cache
    for p, row, row2 in zip(paths, got, again):
        a = read_audio(p)
        u = utterance_prosody(f0_contour(a.samples, a.sample_rate, DEFAULT_MEL), DEFAULT_MEL, a.samples, a.sample_rate)
        assert list(row[:4]) == [u[k] for k in STATS[:4]] and list(row) == list(row2)
        assert row[4] == pytest.approx(20 * np.log10(np.abs(a.samples).max()))
