"""``emort export edit-basis``: natural within-speaker spectral variation measured on training
speakers only, written into a bundle's manifest without touching its weights; the edit's
``subspace`` option reads it, and outputs record its hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny import harmonic_tone, write_manifest_csv  # tests/tiny.py: the test helpers


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Two training speakers whose clips differ in level and brightness, and a TEST speaker
    (emodb/03): it must not count."""
    rows = []
    for spk, f0 in (("spk/a", 150.0), ("spk/b", 120.0), ("emodb/03", 200.0)):
        for k, emo in enumerate(("neutral", "angry", "sad")):
            p = tmp_path / "wav" / f"{spk.replace('/', '_')}_{emo}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            x = harmonic_tone(f0, 16000, 1.0, 0.1, harmonics=4 + 4 * k, pad_s=0.1) * (0.5 + 0.5 * k)
            sf.write(p, x, 16000)
            rows.append((str(p), emo, spk))
    return write_manifest_csv(tmp_path / "c.csv", rows)


def test_basis_from_training_speakers_into_the_manifest(tmp_path, corpus):
    from emort.export.edit_basis import add_edit_basis
    from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    before = json.loads((b / "manifest.json").read_text())
    entry = add_edit_basis(b, [f"csv={corpus}"], components=3)
    assert [s.split("/", 1)[1] for s in entry["source"]["speakers"]] == ["spk/a", "spk/b"]  # the test speaker left out
    assert entry["source"]["clips"] == 6 and "emodb/03" in entry["source"]["held_out_speakers"]
    loaded = load_bundle(b)  # checksums still hold: only the manifest changed
    k = len(loaded.edit_basis)
    assert 1 <= k <= 3 and loaded.edit_basis.shape[1] == loaded.mel.n_mels  # at most the offsets' rank (6 clips - 2 speakers)
    np.testing.assert_allclose(loaded.edit_basis @ loaded.edit_basis.T, np.eye(k), atol=1e-5)
    assert loaded.edit_hash == load_bundle(DEFAULT_BUNDLE).edit_hash  # outputs of the whole edit stay valid
    shipped = load_bundle(DEFAULT_BUNDLE)
    assert shipped.edit_basis is not None and loaded.basis_hash() != shipped.basis_hash()
    assert shipped.basis_hash(4) == load_bundle(DEFAULT_BUNDLE).basis_hash(4) != shipped.basis_hash(5)
    after = json.loads((b / "manifest.json").read_text())
    assert {k: v for k, v in after.items() if k != "edit_basis"} == {k: v for k, v in before.items() if k != "edit_basis"}


def test_a_basis_that_is_not_orthonormal_is_refused(tmp_path):
    from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle
    from emort.runtime.errors import BundleError

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    m = json.loads((b / "manifest.json").read_text())
    m["edit_basis"] = {"components": [[1.0] * 80, [0.5] * 80], "explained": [0.5, 0.5], "source": {}}
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="edit_basis"):
        load_bundle(b)


def test_a_subspace_without_a_basis_is_one_line_before_any_work(tmp_path):
    from emort import Enhancer
    from emort.runtime.bundle import DEFAULT_BUNDLE
    from emort.runtime.errors import EmortError

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    m = json.loads((b / "manifest.json").read_text())
    m.pop("edit_basis", None)
    m["defaults"]["subspace"] = 0
    (b / "manifest.json").write_text(json.dumps(m))
    enh = Enhancer.load(b, device="cpu")
    assert enh.options().subspace == 0
    with pytest.raises(EmortError, match="edit basis"):
        enh.options(subspace=4)


def test_defaults_beyond_the_basis_are_refused(tmp_path):
    from emort.export.defaults import set_defaults
    from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle
    from emort.runtime.errors import EmortError

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    n = len(load_bundle(b).edit_basis)
    with pytest.raises(EmortError, match="edit-basis components"):
        set_defaults(b, {"subspace": n + 1}, "test")
    assert set_defaults(b, {"subspace": n}, "test").subspace == n
    m = json.loads((b / "manifest.json").read_text())
    m.pop("edit_basis")
    m["defaults"]["subspace"] = 0
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EmortError, match="carries 0"):
        set_defaults(b, {"subspace": 4}, "test")


def test_export_edit_basis_command(tmp_path, corpus):
    from typer.testing import CliRunner

    from emort.cli.app import app
    from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    r = CliRunner().invoke(app, ["export", "edit-basis", "--data", f"csv={corpus}", "--bundle", str(b)])
    assert r.exit_code == 0, r.output
    assert "components from 6 clips of 2 speakers" in " ".join(r.output.split())
    assert load_bundle(b).edit_basis.shape[1] == load_bundle(b).mel.n_mels


def test_a_basis_smaller_than_the_default_subspace_is_refused(tmp_path, corpus):
    from emort.export.defaults import set_defaults
    from emort.export.edit_basis import add_edit_basis
    from emort.runtime.bundle import DEFAULT_BUNDLE
    from emort.runtime.errors import EmortError

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    set_defaults(b, {"subspace": 16}, "test")  # the shipped basis has more than 16 components
    before = (b / "manifest.json").read_text()
    with pytest.raises(EmortError, match="subspace of 16 components and this basis has"):
        add_edit_basis(b, [f"csv={corpus}"], components=32)  # 6 clips of 2 speakers: a few components at most
    assert (b / "manifest.json").read_text() == before  # the bundle still runs its own defaults
