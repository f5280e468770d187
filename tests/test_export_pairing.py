"""Export refuses a diffusion model paired with an SER other than the one it was conditioned on."""

import json
import shutil

import pytest

pytest.importorskip("torch", reason="export needs the [train,export] extras")

from emort.runtime.errors import EmortError  # noqa: E402


def test_diffusion_records_its_ser_and_export_checks_it(tiny, tmp_path):
    from emort.export.onnx import write_bundle
    from emort.runtime.bundle import sha256_file

    conf = json.loads((tiny["diffusion"] / "diffusion.json").read_text())
    assert conf["ser_sha256"] == sha256_file(tiny["ser"] / "ser.safetensors")

    other = tmp_path / "other_ser"
    shutil.copytree(tiny["ser"], other)
    from safetensors.torch import load_file, save_file

    w = load_file(str(other / "ser.safetensors"))
    w["head.bias"] = w["head.bias"] + 1.0  # a different SER (another embedding space in general)
    save_file(w, str(other / "ser.safetensors"))
    with pytest.raises(EmortError, match="embeddings of another SER"):
        write_bundle(tmp_path / "b", ser_run=other, diffusion_run=tiny["diffusion"])
    assert not (tmp_path / "b").exists()


def test_export_steps_override_is_recorded(tiny, tmp_path):
    from typer.testing import CliRunner

    from emort.cli.app import app
    from emort.runtime.bundle import load_bundle

    d = tmp_path / "defaults.json"
    d.write_text(json.dumps({"strength": 0.4, "guidance": 5.0, "steps": 16, "sampler": "direction", "intensity": 1.0, "seed": 0}))
    out = tmp_path / "b"
    r = CliRunner().invoke(app, ["export", "onnx", "--ser", str(tiny["ser"]), "--diffusion", str(tiny["diffusion"]), "--out", str(out),
                                 "--defaults", str(d), "--steps", "8"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    # a 0.4-style defaults file (raw guidance, "sampler") is written in today's typed form
    assert {k: m["defaults"][k] for k in ("strength", "guidance", "steps", "method", "amount_db")} == {
        "strength": 0.4, "guidance": 5.0, "steps": 8, "method": "direction", "amount_db": None}
    assert "sampler" not in m["defaults"]
    assert m["training"]["defaults_override"] == {"steps": 8, "defaults_file": str(d)}
    assert load_bundle(out).defaults.steps == 8
    assert m["name"] == "b"  # a user's bundle is named by its folder unless --name says otherwise (0.31: emort-default)
