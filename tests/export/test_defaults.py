"""emort export defaults: options chosen on validation speakers written into an existing bundle."""

from __future__ import annotations

import json
import shutil

import pytest

from emort.export.defaults import set_defaults
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.errors import EmortError


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(load_bundle(None).path, dst)
    return dst


def test_defaults_from_an_evaluation_file_are_merged_validated_and_recorded(copy):
    before = load_bundle(copy)
    evaluation = {"amount_db": 2.0, "steps": 3, "method": "direction", "rule": "worst cell", "split": "val"}
    new = set_defaults(copy, evaluation, "reports/enhance_val/defaults.json")
    b = load_bundle(copy)  # checksums still verify: the weights are untouched
    assert b.defaults == new and new.steps == 3 and new.amount_db == 2.0
    assert new.max_band_db == before.defaults.max_band_db and new.strength == before.defaults.strength  # the rest kept
    assert b.content_hash == before.content_hash
    src = json.loads((copy / MANIFEST).read_text())["defaults_source"]
    assert src["source"] == "reports/enhance_val/defaults.json" and src["set"] == {"amount_db": 2.0, "steps": 3, "method": "direction"}
    # a second call keeps the first's record (and those before it) under "earlier"
    set_defaults(copy, {"prosody_amount_db": 4.0}, "docs/eval/conversion/defaults.json")
    src2 = json.loads((copy / MANIFEST).read_text())["defaults_source"]
    assert src2["set"] == {"prosody_amount_db": 4.0} and src2["earlier"][-1] == {k: v for k, v in src.items() if k != "earlier"}
    assert src2["earlier"][:-1] == src.get("earlier", [])
    assert load_bundle(copy).defaults.amount_db == 2.0  # the first call's value stays


def test_invalid_or_empty_defaults_are_one_line_and_change_nothing(copy):
    text = (copy / MANIFEST).read_text()
    with pytest.raises(EmortError) as e:
        set_defaults(copy, {"steps": 0}, "--steps 0")
    assert "\n" not in str(e.value)
    with pytest.raises(EmortError, match="no edit option"):
        set_defaults(copy, {"rule": "x"}, "notes.json")
    assert (copy / MANIFEST).read_text() == text


def test_the_cli_sets_defaults(copy, tmp_path):
    from typer.testing import CliRunner

    from emort.cli.app import app

    f = tmp_path / "defaults.json"
    f.write_text(json.dumps({"amount_db": 1.0, "split": "val"}))
    r = CliRunner().invoke(app, ["export", "defaults", "--bundle", str(copy), "--defaults", str(f), "--steps", "5"])
    assert r.exit_code == 0, r.output
    d = load_bundle(copy).defaults
    assert (d.amount_db, d.steps) == (1.0, 5)
    r = CliRunner().invoke(app, ["export", "defaults", "--bundle", str(copy), "--defaults", str(tmp_path / "missing.json")])
    assert r.exit_code != 0 and "missing.json" in r.output


def test_export_refuses_a_non_global_ser_as_the_bundles_ser(tiny, tmp_path):
    """The bundle's `ser` is normalised with the training set's statistics (and conditions the
    diffusion model): an utterance-normalised run is refused in one line, not shipped mislabelled."""
    import json
    import shutil

    from emort.export.onnx import write_bundle
    from emort.runtime.errors import EmortError

    run = tmp_path / "ser_utt"
    shutil.copytree(tiny["ser"], run)
    cfg = json.loads((run / "ser.json").read_text())
    cfg["train"]["norm"] = "utterance"
    (run / "ser.json").write_text(json.dumps(cfg))
    with pytest.raises(EmortError, match="norm = 'utterance'") as e:
        write_bundle(tmp_path / "b", ser_run=run, diffusion_run=tiny["diffusion"])
    assert "\n" not in str(e.value) and not (tmp_path / "b" / "manifest.json").exists()


def test_prosody_is_not_a_default_and_export_onnx_checks_its_defaults_first(copy):
    """`prosody` is a run's choice (emort enhance always passes --prosody or not): a default was
    written and ignored. `export onnx --defaults` checks what it writes as `export defaults` does
    (a strength of 5 or a subspace without a basis made every later enhance fail)."""
    pytest.importorskip("torch", reason="export onnx needs the [train] extra")
    from emort.export.onnx import checked_defaults

    with pytest.raises(EmortError, match="prosody is chosen per run"):
        set_defaults(copy, {"prosody": True}, "d.json")
    assert "prosody" not in json.loads((copy / MANIFEST).read_text()).get("defaults_source", {}).get("set", {})
    assert checked_defaults({"amount_db": 0.5, "steps": 4})["amount_db"] == 0.5
    for bad, match in (({"strength": 5}, "strength"), ({"subspace": 8}, "edit basis"), ({"prosody": True}, "per run")):
        with pytest.raises(EmortError, match=match):
            checked_defaults(bad)
