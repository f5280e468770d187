"""`emort enhance` / `emort score` as users run them, with the shipped bundle: outputs, JSON, resume,
earlier outputs, --json checked first, every skip accounted for, exit codes, --reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.batch import MARKER

runner = CliRunner()


def speechy(seconds: float = 0.6, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal: a gliding harmonic tone, syllable-rate envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.2 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def put(path: Path, sr: int = 16000, channels: int = 1, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = speechy(sr=sr, seed=seed)
    sf.write(path, np.stack([x, 0.5 * x], 1) if channels == 2 else x, sr, **kw)
    return path


def enhance(*args: str):
    return runner.invoke(app, ["enhance", *args, "--steps", "2"])


def one_line_error(r) -> str:
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in r.output, r.output
    return err


def test_enhance_outputs_json_and_every_skip_counted(tmp_path):
    src = tmp_path / "clips"
    put(src / "a.wav", sr=16000)
    put(src / "day1" / "b.flac", sr=48000, channels=2, seed=1)
    put(src / "day1" / "c.caf", sr=22050, seed=2, format="CAF")
    (src / "broken.wav").write_bytes(b"RIFF not really a wav file")
    sf.write(src / "silent.wav", np.zeros(8000, np.float32), 16000)
    (src / "phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (src / "notes.txt").write_text("x")
    out, rep = tmp_path / "out", tmp_path / "r.json"
    r = enhance(str(src), "-e", "happiness", "-o", str(out), "--json", str(rep), "--sampler", "direction")
    assert r.exit_code == 1, r.output  # two bad files: exit 1, the others are written
    assert "Traceback" not in r.output and "--sampler is deprecated" in r.stderr
    assert "phone.m4a" in r.stderr and "not a format this reader decodes" in r.stderr
    for name, src_file in (("a.wav", src / "a.wav"), ("day1/b.wav", src / "day1" / "b.flac"), ("day1/c.wav", src / "day1" / "c.caf")):
        o, i = sf.info(out / name), sf.info(src_file)
        assert (o.samplerate, o.frames, o.channels, o.subtype) == (i.samplerate, i.frames, 1, "PCM_16")
    data = json.loads(rep.read_text())
    assert data["complete"] and data["settings"]["emotion"] == "happy" and data["settings"]["options"]["method"] == "direction"
    assert data["summary"]["processed"] == 3
    assert data["summary"]["failed"] == {"unreadable": 1, "invalid-audio": 1}
    assert data["summary"]["skipped"] == {"unsupported": 1, "not-audio": 1}
    assert data["summary"]["mean_change_db"] > 0 and data["summary"]["mean_rtf"] > 0
    written = [x for x in data["results"] if x["status"] == "written"]
    for x in written:
        assert {"path", "output", "duration_s", "sample_rate", "scores_before", "scores_after", "prediction", "change_db", "guidance",
                "seconds"} <= set(x)
        assert abs(sum(x["scores_after"].values()) - 1) < 1e-4
    assert {x["sample_rate"] for x in written} == {16000, 48000, 22050}
    assert all(x["error"].startswith(str(src)) for x in data["results"] if x["status"] == "failed")
    assert "mean change (dB)" in r.stdout.replace("\n", " ") or "change" in r.stdout
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.suffix == ".probe"]


def test_resume_respects_the_settings(tmp_path):
    src = tmp_path / "in"
    put(src / "a.wav")
    put(src / "b.wav", seed=1)
    out = tmp_path / "out"
    assert enhance(str(src), "-e", "sad", "-o", str(out)).exit_code == 0
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    r = enhance(str(src), "-e", "sadness", "-o", str(out))  # the same settings: resumed, nothing redone
    assert r.exit_code == 0 and "done 2" in r.stdout
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--amount", "3")
    assert r.exit_code == 3, r.output  # every file refused: nothing done
    refused = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(refused) == 2 and all("other settings (options.amount_db" in ln and "--overwrite" in ln for ln in refused)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.wav")} == mtimes
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--amount", "3", "--overwrite")
    assert r.exit_code == 0 and all(p.stat().st_mtime_ns != mtimes[p] for p in mtimes)


def test_earlier_outputs_in_the_input_tree_are_not_enhanced_again(tmp_path):
    src = tmp_path / "in"
    put(src / "a.wav")
    assert enhance(str(src), "-o", str(src / "angry"), "-e", "angry").exit_code == 0
    rep = tmp_path / "r.json"
    r = enhance(str(src), "-o", str(src / "sad"), "-e", "sad", "--json", str(rep))
    assert r.exit_code == 0, r.output
    assert sorted(p.relative_to(src / "sad").as_posix() for p in (src / "sad").rglob("*.wav")) == ["a.wav"]
    assert "not taken (name it to take it)" in r.stderr
    assert json.loads(rep.read_text())["summary"]["skipped"] == {"emort-output": 1}


def test_the_default_out_is_one_folder_per_target(tmp_path, monkeypatch):
    put(tmp_path / "in" / "a.wav")
    monkeypatch.chdir(tmp_path)
    assert enhance("in", "-e", "angry").exit_code == 0
    assert enhance("in", "-e", "angry:0.7,sad:0.3").exit_code == 0
    assert (tmp_path / "enhanced" / "angry" / "a.wav").is_file()
    assert (tmp_path / "enhanced" / "sad-0.30+angry-0.70" / "a.wav").is_file()
    assert (tmp_path / "enhanced" / "angry" / MARKER).is_file()


def test_a_bad_json_path_fails_in_one_line_before_any_work(tmp_path):
    put(tmp_path / "in" / "a.wav")
    (tmp_path / "reports").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for bad in (tmp_path / "reports", tmp_path / "file.txt" / "r.json"):
        for cmd in (["enhance", "-e", "sad", "-o", str(tmp_path / "out")], ["score"]):
            r = runner.invoke(app, [*cmd, str(tmp_path / "in"), "--json", str(bad)])
            assert r.exit_code == 2 and str(bad) in one_line_error(r)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.wav", "file.txt", "in", "reports"]  # no temp litter


def test_nothing_to_do_exits_3(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    for cmd in (["enhance", "-e", "sad", "-o", str(tmp_path / "out")], ["score"]):
        r = runner.invoke(app, [*cmd, str(tmp_path / "in")])
        assert r.exit_code == 3, r.output
        assert "1 file(s) without an audio extension" in r.stderr


def test_bad_emotion_bundle_and_device_are_one_line(tmp_path):
    put(tmp_path / "a.wav")
    r = enhance(str(tmp_path / "a.wav"), "-e", "bored", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "unknown emotion" in one_line_error(r)
    r = enhance(str(tmp_path / "a.wav"), "-e", "sad", "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "not a model bundle" in one_line_error(r)
    r = enhance(str(tmp_path / "a.wav"), "-e", "sad", "--device", "tensorrt", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "not available" in one_line_error(r)
    r = enhance(str(tmp_path / "a.wav"), "-e", "sad", "--method", "euler", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "unknown method" in one_line_error(r)
    r = enhance(str(tmp_path / "a.wav"), "-e", "sad", "--amount", "99", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "amount" in one_line_error(r)


def test_enhance_never_overwrites_an_input(tmp_path):
    src = tmp_path / "in"
    put(src / "a.wav")
    before = (src / "a.wav").read_bytes()
    r = enhance(str(src), "-e", "sad", "--out", str(src), "--overwrite")
    assert r.exit_code == 3 and "overwrite an input" in r.stderr
    assert (src / "a.wav").read_bytes() == before


def test_help_states_the_bundles_defaults_the_output_format_and_exit_codes():
    from emort.runtime.bundle import load_bundle

    d = load_bundle(verify=False).defaults
    out = runner.invoke(app, ["enhance", "--help"]).output
    assert "16-bit PCM" in out and "own sample rate" in out and "Exit status" in out and "3 nothing done" in out
    assert "--method" in out and "--sampler" not in out and "--max-band-db" in out and "enhanced/<emotion>" in out
    assert f"[default: ({d.steps})]" in out and f"({d.method})" in out
    assert (f"({d.amount_db:g} dB" if d.amount_db is not None else f"--guidance {d.guidance:g}") in " ".join(out.split())  # wrapped
    if d.prosody_amount_db is not None:
        assert f"{d.prosody_amount_db:g} dB with --prosody" in " ".join(out.split())
    assert "--overwrite " in out and "--no-overwrite" not in out  # a flag, shown as one
    out = runner.invoke(app, ["score", "--help"]).output
    assert "--reference ORIGINALS" in out and "Exit status" in out


def test_score_subprocess_json(tmp_path):
    put(tmp_path / "a.wav")
    put(tmp_path / "b.flac", sr=44100, seed=1)
    rep = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "emort.cli.app", "score", str(tmp_path / "a.wav"), str(tmp_path / "b.flac"), str(tmp_path / "missing.wav"),
           "--json", str(rep)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # the missing file fails, the others are scored
    assert "Traceback" not in r.stderr and "missing.wav: no such file" in r.stderr
    data = json.loads(rep.read_text())
    scored = [x for x in data["results"] if x["status"] == "scored"]
    assert len(data["results"]) == 3 and len(scored) == 2
    for x in scored:
        assert x["prediction"] in data["bundle"]["labels"] and x["method"] == "single-clip"
        assert abs(sum(x["scores"].values()) - 1) < 1e-4 and x["duration_s"] > 0
    assert {x["sample_rate"] for x in scored} == {16000, 44100}


def _without_file_permissions() -> list[str] | None:
    """A command prefix under which chmod 000 denies reading: none needed for a normal user; root needs
    its DAC-override capabilities dropped (setpriv); None where neither works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_unreadable_files_and_folders_are_reported(tmp_path):
    prefix = _without_file_permissions()
    if prefix is None:
        pytest.skip("cannot make a file unreadable here (root without setpriv)")
    src = tmp_path / "in"
    put(src / "ok.wav")
    locked = put(src / "locked.wav", seed=1)
    put(src / "locked_dir" / "x.wav", seed=2)
    locked.chmod(0)
    (src / "locked_dir").chmod(0)
    rep = tmp_path / "s.json"
    try:
        r = subprocess.run([*prefix, sys.executable, "-m", "emort.cli.app", "score", str(src), "--json", str(rep)],
                           capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o644)
        (src / "locked_dir").chmod(0o755)
    assert r.returncode == 1, r.stderr
    assert f"{locked}: permission denied" in r.stderr and f"{src / 'locked_dir'}: permission denied" in r.stderr
    assert "System error" not in r.stderr
    data = json.loads(rep.read_text())
    assert data["summary"]["failed"] == {"permission": 2} and data["summary"]["processed"] == 1


def test_score_reference_keeps_an_edit_common_to_all_of_a_speakers_clips(tmp_path, emodb_root):
    clips = sorted((emodb_root / "wav").glob("03*.flac"))[::5][:6]
    orig, quiet = tmp_path / "orig", tmp_path / "quiet"
    for f in clips:
        (orig / "spk03").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, orig / "spk03" / f.name)
        wav, sr = sf.read(f, dtype="float32")
        put_dir = quiet / "spk03"
        put_dir.mkdir(parents=True, exist_ok=True)
        sf.write(put_dir / f.with_suffix(".wav").name, 0.5 * wav, sr, subtype="FLOAT")  # -6 dB on every clip

    def scores(*args: str) -> dict:
        rep = tmp_path / "s.json"
        r = runner.invoke(app, ["score", *args, "--json", str(rep)])
        assert r.exit_code == 0, r.output
        res = json.loads(rep.read_text())["results"]
        return {Path(x["path"]).stem: x for x in res}

    base = scores(str(orig), "--per-speaker")
    alone = scores(str(quiet), "--per-speaker")
    ref = scores(str(quiet), "--reference", str(orig))
    same = scores(str(orig), "--reference", str(orig))
    assert {x["method"] for x in base.values()} == {"per-speaker+stats"} and {x["method"] for x in ref.values()} == {"reference+stats"}
    assert all(x["reference_size"] == 6 and x["group_size"] == 6 for x in ref.values())

    def gap(a: dict, b: dict) -> float:
        return max(abs(a[k]["scores"][e] - b[k]["scores"][e]) for k in a for e in a[k]["scores"])

    assert gap(base, alone) < 1e-3  # per-speaker normalisation removes a gain common to the speaker ...
    assert gap(base, same) < 1e-6  # ... a reference of the clips themselves is the same thing ...
    assert gap(base, ref) > 0.02  # ... but the originals' statistics keep it
    # Matched by file-name pattern too; a speaker the reference lacks fails, one line per file.
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (quiet / "spk03").iterdir():
        shutil.copy(f, flat / f.name)
    shutil.copy(flat / sorted(os.listdir(flat))[0], flat / "09x99Xx.wav")
    shutil.copy(flat / sorted(os.listdir(flat))[0], flat / "09x98Xx.wav")
    rep = tmp_path / "p.json"
    r = runner.invoke(app, ["score", str(flat), "--speaker-pattern", r"^(\d\d)", "--reference", str(orig), "--json", str(rep)])
    assert r.exit_code == 1, r.output
    res = {Path(x["path"]).stem: x for x in json.loads(rep.read_text())["results"]}
    for stem in ("09x98Xx", "09x99Xx"):
        assert res[stem]["reason"] == "no-reference" and "no reference clips for this speaker" in res[stem]["error"]
    # one line for the speaker's first clip, one for the rest: the cause is the speaker's, not each clip's
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(failed) == 2 and "no reference clips" in failed[0] and failed[1].startswith("failed 1 more clip(s) of speaker 09"), r.stderr
    assert gap({k: res[k] for k in ref}, ref) < 1e-6
    # emort's outputs below the reference folder are not originals (they counted as reference clips)
    r = enhance(str(orig / "spk03"), "-e", "angry", "-o", str(orig / "spk03" / "angry"))
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["score", str(flat), "--speaker-pattern", r"^(\d\d)", "--reference", str(orig), "--json", str(rep)])
    res = {Path(x["path"]).stem: x for x in json.loads(rep.read_text())["results"]}
    assert {res[k]["reference_size"] for k in ref} == {6} and gap({k: res[k] for k in ref}, ref) < 1e-6
    r = runner.invoke(app, ["score", str(quiet), "--reference", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "--reference" in one_line_error(r)


def test_an_empty_file_says_so_and_a_folder_without_audio_prints_no_table(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.wav").write_bytes(b"")
    put(tmp_path / "in" / "a.wav")
    rep = tmp_path / "r.json"
    r = runner.invoke(app, ["score", str(tmp_path / "in"), "--json", str(rep)])
    assert r.exit_code == 1, r.output
    res = {Path(x["path"]).name: x for x in json.loads(rep.read_text())["results"]}
    assert res["empty.wav"]["reason"] == "invalid-audio" and res["empty.wav"]["error"].endswith("empty.wav: empty file (0 bytes)")
    assert "empty file (0 bytes)" in r.stderr and res["a.wav"]["status"] == "scored"
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("x")
    r = runner.invoke(app, ["score", str(tmp_path / "none")])
    assert r.exit_code == 3 and "prediction" not in r.stdout, r.output  # no table header without a row


def test_an_unknown_vocoder_is_a_usage_error_before_any_work(tmp_path):
    src = put(tmp_path / "a.wav")
    r = enhance(str(src), "-e", "sad", "--vocoder", "foo", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "--vocoder 'foo'" in one_line_error(r) and not (tmp_path / "out").exists()


def test_the_interrupted_line_prints_any_report_path():
    from emort.cli.common import say_interrupted

    say_interrupted({"processed": 1}, Path("runs/[/b]x.json"))  # rich markup in a path: printed, not parsed


def test_single_clip_scoring_of_a_speaker_sized_folder_points_to_per_speaker(tmp_path):
    for k in range(5):
        put(tmp_path / "spk" / f"{k}.wav", seed=k)
    r = runner.invoke(app, ["score", str(tmp_path / "spk")])
    assert r.exit_code == 0 and "--per-speaker reads them better" in r.stderr, r.output
    assert "--clip-stats reads each alone better" in " ".join(r.stderr.split())  # the shipped bundle carries stats_clip
    r = runner.invoke(app, ["score", str(tmp_path / "spk"), "--clip-stats"])
    assert r.exit_code == 0 and "--clip-stats reads" not in " ".join(r.stderr.split())
    r = runner.invoke(app, ["score", str(tmp_path / "spk" / "0.wav")])
    assert r.exit_code == 0 and "--per-speaker" not in r.stderr  # one clip: nothing to point to
    r = runner.invoke(app, ["score", str(tmp_path / "spk"), "--per-speaker"])
    assert r.exit_code == 0 and "reads them better" not in r.stderr


def test_eval_ser_refuses_a_file_as_its_report_folder_before_any_work(tmp_path):
    pytest.importorskip("torch", reason="emort eval needs the [train] extra")
    (tmp_path / "report.md").write_text("x")
    r = runner.invoke(app, ["eval", "ser", str(tmp_path / "no_run"), "--data", f"csv={tmp_path / 'x.csv'}", "--out", str(tmp_path / "report.md")])
    assert r.exit_code == 2 and "--out is a file" in one_line_error(r)


def test_enhance_prosody_flags_report_the_change(tmp_path):
    pytest.importorskip("pyworld", reason="--prosody needs the [prosody] extra")
    src = put(tmp_path / "in" / "a.wav", sr=22050)
    out = tmp_path / "out"
    r = enhance(str(src), "--emotion", "sad", "--out", str(out), "--prosody", "--tempo", "2", "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    rec = report["results"][0]
    assert report["summary"]["mean_tempo"] == rec["tempo"] and report["summary"]["mean_f0_shift_st"] == rec["f0_shift_st"]
    assert report["summary"]["mean_f0_range"] == rec["f0_range"]
    assert "prosody (mean applied): F0" in r.stdout
    assert rec["status"] == "written" and rec["tempo"] != 1.0 and rec["f0_range"] > 0 and rec["f0_shift_st"] is not None
    y, sr = sf.read(out / "a.wav")
    assert sr == 22050 and abs(len(y) - len(speechy(sr=22050)) / rec["tempo"]) <= 1  # the record's tempo is rounded
    # the prosody settings are part of what resume compares
    again = enhance(str(src), "--emotion", "sad", "--out", str(out), "--prosody", "--tempo", "1")
    assert again.exit_code == 3 and "other settings" in again.output and "tempo" in again.output  # refused: nothing done
    plain = enhance(str(src), "--emotion", "sad", "--out", str(tmp_path / "plain"), "--json", str(tmp_path / "p.json"))
    assert plain.exit_code == 0
    assert json.loads((tmp_path / "p.json").read_text())["results"][0].get("tempo") is None
    assert "mean_tempo" not in json.loads((tmp_path / "p.json").read_text())["summary"]
    bad = enhance(str(src), "--emotion", "sad", "--out", str(tmp_path / "x"), "--prosody", "--pitch", "3")
    assert bad.exit_code == 2 and "pitch" in one_line_error(bad)
    alone = enhance(str(src), "--emotion", "sad", "--out", str(tmp_path / "x"), "--tempo", "0.5")
    assert alone.exit_code == 2 and "--tempo: only with --prosody" in one_line_error(alone)
    lone = enhance(str(src), "--emotion", "sad", "--out", str(tmp_path / "x"), "--ray-workers", "4")
    assert lone.exit_code == 2 and "--ray-workers: only with --ray" in one_line_error(lone)
    marker = json.loads((out / MARKER).read_text())
    assert all(s.get("prosody_table") for s in marker["settings"].values())  # the table is part of the settings
    # the conversion amount: recorded as the amount it resolved to, so a re-run skips the output,
    # while an output made at another amount (0.14's --prosody edited at 0.5 dB) is refused
    from emort.runtime.bundle import load_bundle

    d = load_bundle(verify=False).defaults
    (st,) = marker["settings"].values()
    assert st["options"]["amount_db"] == d.prosody_amount_db and "prosody_amount_db" not in st["options"]
    same = enhance(str(src), "--emotion", "sad", "--out", str(out), "--prosody", "--tempo", "2")
    assert same.exit_code == 0 and "skipped" in same.output.lower()
    older = enhance(str(src), "--emotion", "sad", "--out", str(out), "--prosody", "--tempo", "2", "--amount", str(d.amount_db))
    assert older.exit_code == 3 and "amount_db" in " ".join(older.output.split())


def test_score_results_table_is_plain_aligned_text():
    """The per-file results print as plain columns (a rich Table took longer to lay out than the
    scoring of 408 files): one line per scored or failed file, numbers right-aligned, no markup."""
    from types import SimpleNamespace

    from emort.cli.score import results_table

    labels = ["neutral", "angry"]
    recs = [SimpleNamespace(path="a/[x].wav", status="scored", prediction="angry", scores={"neutral": 0.25, "angry": 0.75}),
            SimpleNamespace(path="b/long_name.wav", status="failed", prediction=None, scores=None),
            SimpleNamespace(path="c.wav", status="skipped", prediction=None, scores=None)]
    lines = results_table(recs, labels).splitlines()
    assert lines[0] == "emort score"
    assert lines[1].split() == ["file", "prediction", "neutral", "angry"]
    assert lines[2].split() == ["a/[x].wav", "angry", "0.25", "0.75"]  # brackets kept: no markup
    assert lines[3].split() == ["b/long_name.wav", "failed"]
    assert len(lines) == 4  # skipped files are reported elsewhere
    assert lines[1].index("prediction") == lines[2].index("angry") == lines[3].index("failed")
    assert lines[1].endswith("angry") and lines[2].endswith("0.75")  # right-aligned under the header


def test_an_empty_folder_says_no_audio_was_found(tmp_path):
    from emort.cli.app import app

    (tmp_path / "clips").mkdir()
    for cmd in (["enhance", str(tmp_path / "clips"), "-e", "angry", "-o", str(tmp_path / "out")], ["score", str(tmp_path / "clips")]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 3 and "no audio files found in" in r.stderr and str(tmp_path / "clips") in r.stderr.replace("\n", "")


def test_an_amount_the_band_cap_stops_short_is_said_per_file(tmp_path):
    """With every band capped at 1 dB, a 5 dB request cannot be reached: the file is written
    with what was reached, and a note line names it (the JSON keeps the applied change_db)."""
    src = put(tmp_path / "a.wav")
    r = enhance(str(src), "-e", "angry", "--amount", "5", "--max-band-db", "1", "-o", str(tmp_path / "o"),
                "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert rec["status"] == "written" and rec["change_db"] <= 1.0
    assert f"{src}: reached {rec['change_db']:.2f} of 5 dB" in r.stderr and "--max-band-db" in r.stderr
    r = enhance(str(src), "-e", "angry", "--amount", "0.5", "-o", str(tmp_path / "o2"))
    assert r.exit_code == 0 and "reached" not in r.stderr  # reached: no note


@pytest.mark.parametrize(("flag", "given", "shown", "other", "bad", "message"), [
    ("--contrast", "mean", "contrast mean", ["--contrast", "uncond"], "none", "contrast must be uncond or mean, got 'none'"),
    ("--part", "Level", "level part", [], "tilt", "part must be one of full, dynamic, level, got 'tilt'"),  # [] : the default, full
])
def test_edit_options_are_recorded_with_the_outputs(tmp_path, flag, given, shown, other, bad, message):
    field = flag.lstrip("-")
    src = tmp_path / "in"
    put(src / "a.wav")
    out, rep = tmp_path / "out", tmp_path / "r.json"
    r = enhance(str(src), "-e", "sad", "-o", str(out), flag, given, "--json", str(rep))
    assert r.exit_code == 0, r.output
    assert shown in r.stderr
    assert json.loads(rep.read_text())["settings"]["options"][field] == given.lower()
    r = enhance(str(src), "-e", "sad", "-o", str(out), *other)  # another edit: refused, not redone
    assert r.exit_code == 3 and f"options.{field}" in r.stderr
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o2"), flag, bad)
    assert r.exit_code == 2 and one_line_error(r).endswith(message)


def test_an_out_or_reference_that_is_a_file_is_a_usage_error(tmp_path):
    src = tmp_path / "in"
    put(src / "a.wav")
    taken = tmp_path / "existing.txt"
    taken.write_text("x")
    r = enhance(str(src), "-e", "sad", "-o", str(taken))
    assert r.exit_code == 2 and one_line_error(r).endswith(f"--out {taken}: exists and is not a folder; give a folder, "
                                                            "or (with one input file) a name ending in .wav")
    assert "backend:" not in r.stderr  # refused before any work
    r = runner.invoke(app, ["score", str(src), "--reference", str(taken)])
    assert r.exit_code == 2 and one_line_error(r).endswith(f"--reference {taken}: not a folder; give the folder that holds the original clips")
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o"), "--contrast", "MEAN")  # case as typed
    assert r.exit_code == 0 and "contrast mean" in r.stderr


def test_a_json_report_named_like_audio_is_refused_before_any_work(tmp_path):
    """`-o x.wav --json x.wav` (or a report path inside the output folder named like an output)
    would write the report over the enhanced clip: a usage error, nothing written."""
    src = tmp_path / "in"
    put(src / "a.wav")
    out = tmp_path / "x.wav"
    r = enhance(str(src / "a.wav"), "-e", "sad", "-o", str(out), "--json", str(out))
    assert r.exit_code == 2 and "audio extension" in one_line_error(r) and "backend:" not in r.stderr
    assert not out.exists()
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o"), "--json", str(tmp_path / "o" / "a.wav"))
    assert r.exit_code == 2 and not (tmp_path / "o").exists()
    r = runner.invoke(app, ["score", str(src), "--json", str(tmp_path / "s.flac")])
    assert r.exit_code == 2 and "audio extension" in one_line_error(r)


def _three_clips(tmp_path):
    src = tmp_path / "in"
    for k in range(3):
        put(src / f"{k}.wav", seed=k)
    return src


def _ctrl_c_after_one(real):
    """A batch-layer generator that yields one record, then stops as Ctrl-C would."""
    def stopped_after_one(*args, **kwargs):
        gen = real(*args, **kwargs)
        yield next(gen)
        gen.close()  # the batch layer's own clean-up, as when the caller stops
        raise KeyboardInterrupt
    return stopped_after_one


def test_ctrl_c_reports_what_was_done_and_exits_130(tmp_path, monkeypatch):
    """Ctrl-C during a batch: no traceback, the JSON report says "complete": false, one line says
    how to carry on, exit status 130; the same command then skips what was finished."""
    import json

    from emort.runtime import batch

    src = _three_clips(tmp_path)
    real = batch.enhance_files
    monkeypatch.setattr(batch, "enhance_files", _ctrl_c_after_one(real))
    report = tmp_path / "r.json"
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o"), "--json", str(report))
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert "interrupted after 1 file(s) done in this run" in r.stderr and "run the same command again" in r.stderr
    assert json.loads(report.read_text())["complete"] is False
    monkeypatch.setattr(batch, "enhance_files", real)
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o"))  # the output being written at the stop is kept too
    assert r.exit_code == 0 and "skipped: done" in r.stdout and sorted(p.name for p in (tmp_path / "o").glob("*.wav")) == ["0.wav", "1.wav", "2.wav"]


def test_ctrl_c_during_score_writes_the_report_and_exits_130(tmp_path, monkeypatch):
    import json

    from emort.runtime import batch

    src = _three_clips(tmp_path)
    monkeypatch.setattr(batch, "score_files", _ctrl_c_after_one(batch.score_files))
    report = tmp_path / "s.json"
    r = runner.invoke(app, ["score", str(src), "--json", str(report)])
    assert r.exit_code == 130 and "Traceback" not in r.output and "interrupted after 1 file(s) done in this run" in r.stderr
    rep = json.loads(report.read_text())
    assert rep["complete"] is False and len(rep["results"]) == 1


def test_sigterm_stops_a_batch_as_ctrl_c_does_and_the_rerun_resumes(tmp_path):
    """SIGTERM (a scheduler ending a job-array task) mid-batch: exit 143, the report written with
    "complete": false, and every output written so far recorded, so the same command resumes
    (without the handler the last output was left unrecorded and the rerun refused it)."""
    import signal
    import time

    src = tmp_path / "in"
    src.mkdir()
    t = np.arange(48000) / 16000
    for k in range(40):
        sf.write(src / f"{k:02d}.wav", (0.2 * np.sin(2 * np.pi * (120 + 3 * k) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    out, report = tmp_path / "o", tmp_path / "r.json"
    code = (f"import sys; sys.argv = ['emort', 'enhance', {str(src)!r}, '-e', 'sad', '--steps', '2', '-o', {str(out)!r}, '--json', {str(report)!r}]\n"
            "from emort.cli.entry import main\nmain()")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.wav")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "Traceback" not in err and "interrupted after" in err, err
    assert json.loads(report.read_text())["complete"] is False
    written = sorted(f.name for f in out.glob("*.wav"))
    assert 0 < len(written) < 40
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--json", str(tmp_path / "r2.json"))
    assert r.exit_code == 0, r.output
    again = {Path(x["output"]).name: (x["status"], x.get("reason")) for x in json.loads((tmp_path / "r2.json").read_text())["results"]}
    assert all(again[n] == ("skipped", "done") for n in written), again


def test_subspace_is_recorded_resumed_and_bounded(tmp_path):
    """``--subspace K``: the JSON and the marker record the basis's hash of those K rows; a re-run
    with other K is refused (resume compares them); a K beyond the basis is one line, exit 2,
    before any output."""
    from emort.runtime.bundle import load_bundle

    b = load_bundle(verify=False)
    src, out, rep = tmp_path / "clips", tmp_path / "out", tmp_path / "r.json"
    put(src / "a.wav")
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--subspace", "4", "--amount", "1", "--json", str(rep))
    assert r.exit_code == 0, r.output
    data = json.loads(rep.read_text())
    assert data["settings"]["options"]["subspace"] == 4 and data["settings"]["edit_basis"] == b.basis_hash(4)
    assert data["results"][0]["change_db"] == pytest.approx(1.0, abs=1e-6)
    (st,) = json.loads((out / MARKER).read_text())["settings"].values()
    assert st["edit_basis"] == b.basis_hash(4) != b.basis_hash(8)
    same = enhance(str(src), "-e", "sad", "-o", str(out), "--subspace", "4", "--amount", "1")
    assert same.exit_code == 0 and "skipped" in same.output.lower()
    other = enhance(str(src), "-e", "sad", "-o", str(out), "--amount", "1")
    assert other.exit_code == 3 and "options.subspace 4 -> 0" in " ".join(other.output.split())
    big = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "big"), "--subspace", str(len(b.edit_basis) + 1))
    assert big.exit_code == 2 and "subspace must be at most" in one_line_error(big)
    assert not (tmp_path / "big").exists()


def test_a_prosody_target_the_table_lacks_is_one_usage_error_before_any_file(tmp_path):
    from emort.runtime.bundle import DEFAULT_BUNDLE

    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, b)
    m = json.loads((b / "manifest.json").read_text())
    m["prosody"]["emotions"].pop("fear")  # a table made from data without fear
    (b / "manifest.json").write_text(json.dumps(m))
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        sf.write(src / f"{k}.wav", speechy(seed=k), 16000)
    r = enhance(str(src), "--emotion", "fear", "--prosody", "--bundle", str(b), "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "no row for fear" in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_backend_line_keeps_the_reasons_brackets(tmp_path, monkeypatch):
    """`--precision auto` without OpenVINO said "pip install 'emort'": rich took `[openvino]` for markup."""
    from emort.runtime import openvino_cpu

    monkeypatch.setattr(openvino_cpu, "bf16_status", lambda flags=None: (False, "OpenVINO is not installed (pip install 'emort[openvino]')"))
    put(tmp_path / "a.wav")
    r = enhance(str(tmp_path / "a.wav"), "-e", "sad", "--precision", "auto", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert "pip install 'emort[openvino]'" in r.output.replace("\n", "")


def test_score_clip_stats_reads_each_clip_with_the_single_clip_classifier(tmp_path):
    for k in range(2):
        put(tmp_path / "in" / f"c{k}.wav", seed=k)
    r = runner.invoke(app, ["score", str(tmp_path / "in"), "--clip-stats", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert {x["method"] for x in rep["results"]} == {"single-clip+stats"} and rep["settings"]["clip_stats"]
    assert "stats_clip" in rep["model"]
    assert all(x.get("fused") for x in rep["results"])
    for extra in (["--per-speaker"], ["--no-voice"], ["--no-stats"], ["--no-level-robust"]):
        bad = runner.invoke(app, ["score", str(tmp_path / "in"), "--clip-stats", *extra])
        assert bad.exit_code == 2 and "--clip-stats" in bad.output, extra


def test_a_line_break_in_a_file_name_stays_on_its_line(tmp_path):
    """A failed file's line and the score table showed a file name with a line break on two lines."""
    src = tmp_path / "in"
    put(src / "ok.wav")
    sf.write(src / "sil\nent.wav", np.zeros(8000, np.float32), 16000)
    r = enhance(str(src), "-e", "sad", "--out", str(tmp_path / "out"))
    assert r.exit_code == 1
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(failed) == 1 and "sil\\nent.wav" in failed[0] and "silent" in failed[0], r.stderr
    r = runner.invoke(app, ["score", str(src)])
    assert r.exit_code == 1
    rows = [ln for ln in r.stdout.splitlines() if "ent.wav" in ln]
    assert len(rows) == 1 and "sil\\nent.wav" in rows[0] and "failed" in rows[0], r.stdout


def test_a_file_below_the_lowest_sample_rate_is_refused_and_the_batch_goes_on(tmp_path):
    """0.32 scored and edited a 100 Hz file as if it held speech; below 8 kHz a file is refused in one
    line naming it and its rate, the other files are done, and the exit status says some failed."""
    src = tmp_path / "in"
    put(src / "ok.wav")
    low = src / "low.wav"
    sf.write(low, speechy(sr=4000), 4000)
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "out"), "--json", str(tmp_path / "e.json"))
    assert r.exit_code == 1, r.output
    assert f"{low}: sample rate 4000 Hz is below 8000 Hz" in r.output
    assert (tmp_path / "out" / "ok.wav").exists() and not (tmp_path / "out" / "low.wav").exists()
    r = runner.invoke(app, ["score", str(low)])
    assert r.exit_code == 3 and "4000 Hz is below 8000 Hz" in r.output, r.output
