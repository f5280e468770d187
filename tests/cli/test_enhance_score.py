"""`emort enhance` / `emort score` as users run them: batch errors, resume, never overwrite, JSON schema."""

import json
import shutil
import subprocess
import sys

import soundfile as sf
from typer.testing import CliRunner

from emort.cli.app import app

runner = CliRunner()


def _clips(tmp_path, emodb_files, ravdess_files):
    src = tmp_path / "clips"
    (src / "sub").mkdir(parents=True)
    shutil.copy(emodb_files[0], src / emodb_files[0].name)
    shutil.copy(ravdess_files[0], src / "sub" / ravdess_files[0].name)
    (src / "broken.wav").write_bytes(b"RIFF not really a wav file")
    sf.write(src / "silent.wav", [0.0] * 22050, 22050)
    return src


def test_enhance_batch_resume_and_json(tiny, tmp_path, emodb_files, ravdess_files):
    src = _clips(tmp_path, emodb_files, ravdess_files)
    out = tmp_path / "out"
    rep = tmp_path / "r.json"
    args = ["enhance", str(src), "--emotion", "happiness", "--out", str(out), "--bundle", str(tiny["bundle"]), "--steps", "2", "--json", str(rep)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output  # two bad files -> non-zero, but the others are written
    assert "Traceback" not in r.output
    good = [out / (emodb_files[0].stem + ".wav"), out / "sub" / (ravdess_files[0].stem + ".wav")]
    for g, s in zip(good, [emodb_files[0], ravdess_files[0]]):
        assert g.exists()
        assert abs(sf.info(g).duration - sf.info(s).duration) < 0.01
        assert sf.info(g).samplerate == 22050
    data = json.loads(rep.read_text())
    assert {"bundle", "results"} <= set(data)
    ok = [x for x in data["results"] if "output" in x]
    bad = [x for x in data["results"] if "error" in x]
    assert len(ok) == 2 and len(bad) == 2
    for x in ok:
        assert {"path", "duration_s", "prediction", "scores", "output", "seconds", "scores_before", "scores_after"} <= set(x)
        assert abs(sum(x["scores_after"].values()) - 1) < 1e-4
    assert all(set(x) == {"path", "error"} for x in bad)
    assert not list(out.rglob("*.tmp*"))

    # resume: existing outputs are skipped, not rewritten
    mtimes = {g: g.stat().st_mtime_ns for g in good}
    r2 = runner.invoke(app, args)
    assert all(g.stat().st_mtime_ns == mtimes[g] for g in good)
    assert "2" in r2.output  # skipped count in the summary
    r3 = runner.invoke(app, args + ["--overwrite"])
    assert any(g.stat().st_mtime_ns != mtimes[g] for g in good)
    assert r3.exit_code == 1


def test_enhance_never_overwrites_input(tiny, tmp_path, emodb_files):
    src = tmp_path / "in"
    src.mkdir()
    import numpy as np

    wav, sr = sf.read(emodb_files[0], dtype="float32")
    sf.write(src / "a.wav", wav, sr)
    before = (src / "a.wav").read_bytes()
    r = runner.invoke(app, ["enhance", str(src), "-e", "sad", "--out", str(src), "--bundle", str(tiny["bundle"]), "--overwrite"])
    assert r.exit_code == 1
    assert "overwrite an input" in r.output
    assert (src / "a.wav").read_bytes() == before
    assert np.isfinite(wav).all()


def test_enhance_bad_emotion_and_bundle(tiny, tmp_path, emodb_files):
    r = runner.invoke(app, ["enhance", str(emodb_files[0]), "-e", "bored", "--bundle", str(tiny["bundle"]), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown emotion" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["enhance", str(emodb_files[0]), "-e", "sad", "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not a model bundle" in r.output
    r = runner.invoke(app, ["enhance", str(emodb_files[0]), "-e", "sad", "--bundle", str(tiny["bundle"]), "--device", "tensorrt", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not available" in r.output


def test_score_subprocess_json(tiny, tmp_path, emodb_files):
    rep = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "emort.cli.app", "score", *map(str, emodb_files[:2]), str(tmp_path / "missing.wav"), "--bundle", str(tiny["bundle"]),
           "--json", str(rep)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # the missing file fails, the others are scored
    assert "Traceback" not in r.stderr
    data = json.loads(rep.read_text())
    res = data["results"]
    assert len(res) == 3
    scored = [x for x in res if "scores" in x]
    assert len(scored) == 2
    for x in scored:
        assert x["prediction"] in data["bundle"]["labels"]
        assert abs(sum(x["scores"].values()) - 1) < 1e-4
        assert x["duration_s"] > 0


def test_plan_outputs_collisions_and_output_inside_input(tmp_path):
    from emort.cli.batch import discover, plan_outputs

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.wav").write_bytes(b"")
    (tmp_path / "a" / "y.flac").write_bytes(b"")
    (tmp_path / "a" / "y.wav").write_bytes(b"")
    jobs, missing = discover([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "nope")])
    assert len(missing) == 1 and "no such file" in missing[0]["error"]
    planned, errors = plan_outputs(jobs, tmp_path / "out")
    # a/x.wav and b/x.wav both want out/x.wav; a/y.flac and a/y.wav both want out/y.wav
    assert planned == []
    assert len(errors) == 4 and all("several inputs" in e["error"] for e in errors)
    # --out inside the input folder: earlier outputs there are not inputs (resume works)
    (tmp_path / "a" / "enh").mkdir()
    (tmp_path / "a" / "enh" / "x.wav").write_bytes(b"")
    jobs, _ = discover([str(tmp_path / "a")])
    planned, errors = plan_outputs([j for j in jobs if j.path.suffix == ".wav"], tmp_path / "a" / "enh")
    assert [j.path.name for j, _ in planned] == ["x.wav", "y.wav"]
    assert not errors
