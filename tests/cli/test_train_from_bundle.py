"""`emort train diffusion --ser BUNDLE --init-from BUNDLE`: the bundle's graphs become run folders
inside OUT, kept across a resume, and a resume refuses another SER (not another bundle with the same SER) (the training itself
is replaced by a stub that records its config)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.bundle import DEFAULT_BUNDLE

pytest.importorskip("torch", reason="train diffusion needs the [train] extra")
pytest.importorskip("onnx", reason="a bundle as a run folder needs the [export] extra")

runner = CliRunner()


@pytest.fixture
def calls(monkeypatch):
    import emort.training.diffusion as diffusion

    seen: list = []

    def fake_train(cfg):
        seen.append(cfg)
        return {"steps": cfg.steps}

    monkeypatch.setattr(diffusion, "train_diffusion", fake_train)
    return seen


def _train(out: Path):
    return runner.invoke(app, ["train", "diffusion", "--data", "emodb=unused", "--ser", str(DEFAULT_BUNDLE),
                               "--init-from", str(DEFAULT_BUNDLE), "--out", str(out), "--steps", "1"])


def test_a_bundle_becomes_the_runs_ser_and_start_and_stays_so_on_resume(calls, tmp_path):
    out = tmp_path / "run"
    r = _train(out)
    assert r.exit_code == 0, r.output
    assert calls[-1].ser == str(out / "ser_from_bundle") and calls[-1].init_from == str(out / "init_from_bundle")
    assert (out / "ser_from_bundle" / "ser.json").exists() and (out / "init_from_bundle" / "diffusion.json").exists()
    written = (out / "ser_from_bundle" / "ser.safetensors").stat().st_mtime_ns
    (out / "diffusion_last.state.pt").write_bytes(b"")  # a run to resume
    os.utime(out / "ser_from_bundle" / "ser.safetensors", ns=(written, written))
    r = _train(out)
    assert r.exit_code == 0, r.output
    assert calls[-1].ser == str(out / "ser_from_bundle") and calls[-1].init_from == str(out / "init_from_bundle")
    assert (out / "ser_from_bundle" / "ser.safetensors").stat().st_mtime_ns == written  # kept, not rewritten


def test_resuming_with_another_bundles_ser_is_one_error_line(calls, tmp_path):
    out = tmp_path / "run"
    assert _train(out).exit_code == 0
    cfg_file = out / "ser_from_bundle" / "ser.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["bundle_ser_key"] = "0123456789abcdef"  # the run began on another bundle's SER
    cfg["norm"]["mean"][0] += 1.0
    cfg_file.write_text(json.dumps(cfg))
    (out / "diffusion_last.state.pt").write_bytes(b"")
    n = len(calls)
    r = _train(out)
    assert r.exit_code == 2 and len(calls) == n
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "another SER" in lines[0] and "0123456789abcdef" in lines[0]


def test_a_bundle_whose_scoring_graphs_changed_still_resumes(calls, tmp_path):
    """Only the SER counts: a run recorded on a bundle whose content hash differs (here: a new
    statistics classifier) resumes; so does a 0.9 run folder, which recorded only the bundle's
    content hash (0.10's changed), once its SER is found to be this bundle's; one whose SER
    differs is refused."""
    out = tmp_path / "run"
    assert _train(out).exit_code == 0
    cfg_file = out / "ser_from_bundle" / "ser.json"
    cfg = json.loads(cfg_file.read_text())
    key = cfg["bundle_ser_key"]
    cfg["bundle_content_hash"] = "0123456789abcdef"  # the bundle changed elsewhere; its SER key is the same
    cfg_file.write_text(json.dumps(cfg))
    (out / "diffusion_last.state.pt").write_bytes(b"")
    r = _train(out)
    assert r.exit_code == 0, r.output
    assert json.loads(cfg_file.read_text())["bundle_content_hash"] == "0123456789abcdef"  # kept: not rewritten

    del cfg["bundle_ser_key"]  # a run folder written by 0.9, on a bundle whose content hash was another
    cfg_file.write_text(json.dumps(cfg))
    r = _train(out)
    assert r.exit_code == 0, r.output
    assert json.loads(cfg_file.read_text())["bundle_ser_key"] == key  # recognised, and recorded for next time

    cfg["norm"]["mean"][0] += 1.0  # a 0.9 folder (no key) whose SER was not this bundle's
    cfg_file.write_text(json.dumps(cfg))
    r = _train(out)
    assert r.exit_code == 2
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "a bundle with content hash 0123456789abcdef" in lines[0] and f"SER key {key}" in lines[0]


def test_a_key_written_another_way_is_checked_against_the_ser_itself_and_a_broken_record_is_one_line(calls, tmp_path):
    out = tmp_path / "run"
    assert _train(out).exit_code == 0
    cfg_file = out / "ser_from_bundle" / "ser.json"
    cfg = json.loads(cfg_file.read_text())
    key = cfg["bundle_ser_key"]
    cfg["bundle_ser_key"] = "dd272e115ae7aa93"  # what an earlier 0.10 build recorded for the same SER
    cfg_file.write_text(json.dumps(cfg))
    (out / "diffusion_last.state.pt").write_bytes(b"")
    r = _train(out)
    assert r.exit_code == 0, r.output
    assert json.loads(cfg_file.read_text())["bundle_ser_key"] == key
    cfg_file.write_text("{not json")
    r = _train(out)
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and f"{cfg_file}: unreadable" in lines[0] and "Traceback" not in r.output


@pytest.mark.parametrize(("result", "line"), [
    ({"steps": 30, "started_at": 0}, "trained 30 steps;"),
    ({"steps": 30, "started_at": 20, "device": "cuda:0"}, "trained 10 steps (20 -> 30) on cuda:0;"),
    ({"steps": 20, "started_at": 20}, "is at step 20 already: nothing to train"),
])
def test_the_last_line_says_what_this_run_trained(monkeypatch, tmp_path, result, line):
    """A resumed run names the steps it added; one with nothing left says so (0.31 printed "trained 20 steps")."""
    import emort.training.diffusion as diffusion

    monkeypatch.setattr(diffusion, "train_diffusion", lambda cfg: result)
    r = _train(tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert line in " ".join(r.output.split()), r.output
