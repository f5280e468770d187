"""`emort enhance` / `emort score` output naming and scale-out as users run them, with the shipped bundle:
`--out file.wav`, files named from different folders, `--shard K/N` + `emort report merge` equal to one
unsharded run (same output bytes, same results), refusals in one line."""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.batch import MARKER
from emort.runtime.bundle import load_bundle
from emort.runtime.errors import EmortError

runner = CliRunner()


def speechy(seconds: float = 0.5, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal: a gliding harmonic tone, syllable-rate envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.2 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def put(path: Path, seed: int = 0, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speechy(sr=sr, seed=seed), sr)
    return path


def one_line_error(r) -> str:
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in r.output, r.output
    return err


def enhance(*args: str):
    return runner.invoke(app, ["enhance", *args, "--steps", "2"])


def untimed(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results]


def test_out_file_with_one_input_and_refusals(tmp_path):
    src = put(tmp_path / "one.wav")
    out = tmp_path / "result.wav"
    r = enhance(str(src), "-e", "sad", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert out.is_file() and sf.info(out).frames == sf.info(src).frames  # the file itself, not a folder result.wav/
    r = enhance(str(src), "-e", "sadness", "--out", str(out))
    assert r.exit_code == 0 and "done 1" in r.stdout  # resumed
    r = enhance(str(src), "-e", "angry", "--out", str(out))
    assert r.exit_code == 3 and "other settings (emotion sad -> angry)" in r.stderr
    put(tmp_path / "two.wav", seed=1)
    for args, why in (([str(src), str(tmp_path / "two.wav")], "2 inputs were given"), ([str(tmp_path)], "is a folder"),
                      ([str(src)], "writes WAV")):
        name = "x.flac" if why == "writes WAV" else "x.wav"
        r = enhance(*args, "-e", "sad", "--out", str(tmp_path / name))
        assert r.exit_code == 2 and why in one_line_error(r)
    assert not list(tmp_path.glob("x.*"))
    out_help = runner.invoke(app, ["enhance", "--help"]).output
    assert "--out NAME.wav writes" in out_help and "common folder" in out_help and "--shard K/N" in out_help


def test_named_files_from_different_folders_are_mirrored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put(Path("spk1/angry/001.wav"))
    put(Path("spk2/angry/001.wav"), seed=1)
    r = enhance("spk1/angry/001.wav", "spk2/angry/001.wav", "-e", "sad", "-o", "out")
    assert r.exit_code == 0, r.output
    assert sorted(p.as_posix() for p in Path("out").rglob("*.wav")) == ["out/spk1/angry/001.wav", "out/spk2/angry/001.wav"]


def test_enhance_shards_merge_into_the_unsharded_run(tmp_path):
    src = tmp_path / "clips"
    for k in range(6):
        put(src / f"spk{k % 2}" / f"c{k}.wav", seed=k)
    (src / "phone.m4a").write_bytes(b"x")
    r = enhance(str(src), "-e", "angry", "-o", str(tmp_path / "full"), "--json", str(tmp_path / "full.json"))
    assert r.exit_code == 0, r.output
    out = tmp_path / "sharded"
    for k in (1, 2, 3):
        r = enhance(str(src), "-e", "angry", "-o", str(out), "--shard", f"{k}/3", "--json", str(tmp_path / f"s{k}.json"))
        assert r.exit_code == 0, r.output
        assert f"shard {k}/3:" in r.stderr
    shards = [json.loads((tmp_path / f"s{k}.json").read_text()) for k in (1, 2, 3)]
    assert [s["shard"]["index"] for s in shards] == [1, 2, 3] and sum(s["shard"]["files"] for s in shards) == 6
    wavs = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*.wav"))
    assert len(wavs) == 6 and wavs == sorted(p.relative_to(out) for p in out.rglob("*.wav"))
    assert all(filecmp.cmp(tmp_path / "full" / p, out / p, shallow=False) for p in wavs)  # byte-identical
    r = runner.invoke(app, ["report", "merge", *(str(tmp_path / f"s{k}.json") for k in (3, 1, 2)), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    merged, full = json.loads((tmp_path / "m.json").read_text()), json.loads((tmp_path / "full.json").read_text())
    for x in full["results"]:
        if "output" in x:
            x["output"] = x["output"].replace(str(tmp_path / "full"), str(out))
    assert untimed(merged["results"]) == untimed(full["results"]) and merged["complete"]
    assert {k: v for k, v in merged["summary"].items() if k != "mean_rtf"} == {k: v for k, v in full["summary"].items() if k != "mean_rtf"}
    # An unsharded run over the shards' folder finds everything done.
    r = enhance(str(src), "-e", "angry", "-o", str(out))
    assert r.exit_code == 0 and "done 6" in r.stdout
    # Refusals: another setting, a missing shard (merged, exit 1), a report given twice, not a report.
    r = enhance(str(src), "-e", "angry", "-o", str(tmp_path / "o2"), "--amount", "2.5", "--shard", "2/3", "--json", str(tmp_path / "o.json"))
    assert r.exit_code == 0, r.output
    m = ["report", "merge", "--out", str(tmp_path / "x.json")]
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(tmp_path / "o.json")])
    default = load_bundle().defaults.amount_db  # the shards ran at the bundle's default amount
    assert r.exit_code == 2 and f"settings.options.amount_db (2.5 vs {default!r})" in one_line_error(r)
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(tmp_path / "s1.json")])
    assert r.exit_code == 2 and "again" in one_line_error(r)
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(src / "phone.m4a")])
    assert r.exit_code == 2 and "not a readable JSON report" in one_line_error(r)
    # a result that emort never writes, a shard index outside its split, --out naming an input: refused (2)
    bad = json.loads((tmp_path / "s2.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps({**bad, "results": ["not a result"]}))
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "a result is not one emort writes" in one_line_error(r)
    (tmp_path / "bad.json").write_text(json.dumps({**bad, "shard": {**bad["shard"], "index": 7}}))
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "is not a part of a 3-way split" in one_line_error(r)
    before = (tmp_path / "s1.json").read_text()
    r = runner.invoke(app, ["report", "merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--out", str(tmp_path / "s1.json")])
    assert r.exit_code == 2 and "is one of the reports to merge" in one_line_error(r) and (tmp_path / "s1.json").read_text() == before
    assert not (tmp_path / "x.json").exists()
    r = runner.invoke(app, [*m, str(tmp_path / "s1.json"), str(tmp_path / "s2.json")])
    assert r.exit_code == 1 and "shard(s) 3 missing" in r.stderr
    assert json.loads((tmp_path / "x.json").read_text())["missing_shards"] == [3]
    r = enhance(str(src), "-e", "angry", "-o", str(out), "--shard", "4/3")
    assert r.exit_code == 2 and "--shard '4/3'" in one_line_error(r)


def test_score_shards_keep_speakers_together(tmp_path):
    src = tmp_path / "clips"
    for k in range(8):
        put(src / f"spk{k % 3}" / f"c{k}.wav", seed=k)

    def score(*args: str, rep: str) -> dict:
        r = runner.invoke(app, ["score", str(src), "--per-speaker", "--json", str(tmp_path / rep), *args])
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / rep).read_text())

    full = score(rep="full.json")
    parts = [score("--shard", f"{k}/2", rep=f"s{k}.json") for k in (1, 2)]
    for p in parts:  # a speaker's clips are all in one shard (normalised together, as unsharded)
        groups = {x["speaker_group"] for x in p["results"]}
        assert all(not ({x["speaker_group"] for x in q["results"]} & groups) for q in parts if q is not p)
    r = runner.invoke(app, ["report", "merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m.json").read_text())["results"] == full["results"]
    assert not os.path.exists(src / MARKER)  # scoring writes nothing beside the clips
    # a shard of another batch (other inputs, same options) is refused, not merged as "complete"
    r = runner.invoke(app, ["score", str(src / "spk0"), "--per-speaker", "--shard", "2/2", "--json", str(tmp_path / "other.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "merge", str(tmp_path / "s1.json"), str(tmp_path / "other.json"), "--out", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "settings.inputs" in one_line_error(r) and not (tmp_path / "x.json").exists()


def test_speaker_folders_given_as_separate_arguments_spread_over_shards(tmp_path):
    """Each speaker folder an argument of its own: their keys differ (they were all "speaker:.",
    so one shard took every speaker and the others none)."""
    from emort.runtime.batch import discover, speaker_groups

    folders = [str(put(tmp_path / f"Actor_{k:02d}" / f"c{j}.wav", seed=k).parent) for k in range(12) for j in range(2)][::2]
    jobs, _ = discover(folders)
    groups, _ = speaker_groups(jobs)
    assert len(groups) == 12
    taken = []
    for k in (1, 2, 3):
        r = runner.invoke(app, ["score", *folders, "--per-speaker", "--no-voice", "--shard", f"{k}/3", "--json", str(tmp_path / f"s{k}.json")])
        assert r.exit_code == 0, r.output
        got = {x["speaker_group"] for x in json.loads((tmp_path / f"s{k}.json").read_text())["results"]}
        taken.append(got)
    assert sum(len(t) for t in taken) == 12 and all(0 < len(t) < 12 for t in taken), taken


def test_reference_by_pattern_says_when_speakers_of_two_folders_share_one_reference(tmp_path):
    """--speaker-pattern keeps speakers of different input folders apart, but --reference finds
    a speaker by the pattern's key alone: both folders' speaker 03 get the same reference clips,
    and the run says so (once) instead of mixing them silently."""
    for k in range(5):
        put(tmp_path / "emodb" / f"03a0{k}.wav", seed=k)
        put(tmp_path / "rav" / f"03r0{k}.wav", seed=10 + k)
        put(tmp_path / "ref" / f"03o0{k}.wav", seed=20 + k)
    put(tmp_path / "rav" / "08r00.wav", seed=30)
    put(tmp_path / "ref" / "08o00.wav", seed=31)
    r = runner.invoke(app, ["score", str(tmp_path / "emodb"), str(tmp_path / "rav"), "--speaker-pattern", r"^(\d\d)",
                            "--reference", str(tmp_path / "ref"), "--no-voice"])
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.stderr.splitlines() if "are all normalised with the reference clips of speaker '03'" in ln]
    assert len(notes) == 1 and "'08'" not in r.stderr.split("speaker '03'")[0], r.stderr


def test_enhance_refuses_a_report_on_the_outputs_path_before_any_work(tmp_path):
    src = put(tmp_path / "a.wav")
    out = tmp_path / "res"
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--json", str(out))
    assert r.exit_code == 2 and "the same path as the outputs" in one_line_error(r)
    assert not out.exists()


def test_ray_is_imported_only_with_ray_and_missing_ray_is_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    from emort.cli.cluster import check_reachable

    src = put(tmp_path / "a.wav")
    code = ("import sys; from typer.testing import CliRunner; from emort.cli.app import app; "
            f"r = CliRunner().invoke(app, ['enhance', {str(src)!r}, '-e', 'sad', '--steps', '1', '-o', {str(tmp_path / 'o')!r}]); "
            "assert r.exit_code == 0, r.output; assert 'ray' not in sys.modules, 'ray imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the cluster extra were not installed
    r = enhance(str(src), "-e", "sad", "-o", str(tmp_path / "o2"), "--ray", "local")
    assert r.exit_code == 2 and "pip install 'emort[cluster]'" in one_line_error(r)
    with pytest.raises(EmortError, match=r"--ray 127.0.0.1:1: nothing answers"):
        check_reachable("127.0.0.1:1")  # refused at once instead of Ray's minutes of retries (loopback only)
    check_reachable("local")
    check_reachable("auto")


def test_score_leaves_out_emort_outputs_inside_its_folders_and_scores_them_when_named(tmp_path):
    """As `emort enhance` does: outputs below an argument are not scored with the originals (per
    speaker they would be normalised together); named, an output folder is scored."""
    src = tmp_path / "clips"
    for k in range(3):
        put(src / f"c{k}.wav", seed=k)
    r = enhance(str(src), "-e", "sad", "-o", str(src / "sad"))
    assert r.exit_code == 0, r.output
    rep = tmp_path / "s.json"
    r = runner.invoke(app, ["score", str(src), "--json", str(rep)])
    assert r.exit_code == 0, r.output
    res = json.loads(rep.read_text())["results"]
    assert sorted(Path(x["path"]).name for x in res if x["status"] == "scored") == ["c0.wav", "c1.wav", "c2.wav"]
    assert any(x["status"] == "skipped" and x["reason"] == "emort-output" for x in res)
    r = runner.invoke(app, ["score", str(src / "sad"), "--json", str(rep)])
    assert r.exit_code == 0 and len([x for x in json.loads(rep.read_text())["results"] if x["status"] == "scored"]) == 3
    # a folder that holds nothing but emort's output folders (the default enhanced/) is scored whole
    for e in ("angry", "sad"):
        assert enhance(str(src / "c0.wav"), str(src / "c1.wav"), "-e", e, "-o", str(tmp_path / "enhanced" / e)).exit_code == 0
    r = runner.invoke(app, ["score", str(tmp_path / "enhanced"), "--json", str(rep)])
    assert r.exit_code == 0, r.output
    assert sorted(Path(x["path"]).parent.name for x in json.loads(rep.read_text())["results"] if x["status"] == "scored") == \
        ["angry", "angry", "sad", "sad"]


def test_a_mix_says_how_its_weights_were_rounded_and_refuses_a_weight_that_vanishes(tmp_path):
    src = put(tmp_path / "a.wav")
    r = enhance(str(src), "-e", "fear:2,happy:1", "-o", str(tmp_path / "m"))
    assert r.exit_code == 0 and "weights kept to two decimals, happy:0.33,fear:0.67" in r.stderr, r.output  # in label order
    r = enhance(str(src), "-e", "fear:0.5,happy:0.5", "-o", str(tmp_path / "m2"))
    assert r.exit_code == 0 and "two decimals" not in r.stderr
    r = enhance(str(src), "-e", "angry:1,sad:300", "-o", str(tmp_path / "m3"))
    assert r.exit_code == 2 and "rounds to 0.00" in one_line_error(r) and not (tmp_path / "m3").exists()


def test_identity_options_say_once_that_nothing_is_edited(tmp_path):
    src = put(tmp_path / "a.wav")
    r = enhance(str(src), "-e", "sad", "--strength", "0", "-o", str(tmp_path / "s0"))
    assert r.exit_code == 0 and r.stderr.count("--strength 0: no spectral edit") == 1, r.output


def test_a_report_path_ending_in_a_separator_is_a_usage_error(tmp_path):
    """`--json out/` names a folder: refused before any work (pathlib dropped the '/', so a file called out was written)."""
    src = put(tmp_path / "a.wav")
    for cmd in (["score", str(src)], ["enhance", str(src), "-e", "sad", "-o", str(tmp_path / "o")]):
        r = runner.invoke(app, [*cmd, "--json", str(tmp_path / "rep") + "/"])
        assert r.exit_code == 2 and "names a folder" in r.output and not (tmp_path / "rep").exists() and not (tmp_path / "o").exists()


def test_report_merge_out_naming_a_folder_is_a_usage_error(tmp_path):
    """`--out merged/` had written a file called `merged` (Path drops the separator), as `--json out/` did."""
    (tmp_path / "s1.json").write_text("{}")
    r = runner.invoke(app, ["report", "merge", str(tmp_path / "s1.json"), "--out", str(tmp_path / "merged") + "/"])
    assert r.exit_code == 2 and "names a folder" in r.output and not (tmp_path / "merged").exists()
    # nor a file named like audio (it would sit in a folder of clips as a fake one; a new user's report)
    r = runner.invoke(app, ["report", "merge", str(tmp_path / "s1.json"), "--out", str(tmp_path / "x.wav")])
    assert r.exit_code == 2 and not (tmp_path / "x.wav").exists(), r.output


def test_one_mix_written_in_another_order_is_the_same_target(tmp_path):
    """``sad:1,angry:2`` then ``angry:2,sad:1`` into one folder: refused as other settings, and
    by default two folders of the same outputs (a new user's report)."""
    src = put(tmp_path / "a.wav")
    assert enhance(str(src), "-e", "sad:1,angry:2", "-o", str(tmp_path / "m")).exit_code == 0
    r = enhance(str(src), "-e", "angry:2,sad:1", "-o", str(tmp_path / "m"))
    assert r.exit_code == 0 and "skipped: done 1" in r.output, r.output
    from emort.runtime.batch import default_out_dir, target_name
    from emort.runtime.settings import EMOTIONS

    assert target_name("sad:1,angry:2", EMOTIONS) == target_name("angry:2,sad:1", EMOTIONS) == "sad:0.33,angry:0.67"
    assert default_out_dir(target_name("angry:2,sad:1", EMOTIONS)) == Path("enhanced/sad-0.33+angry-0.67")


def test_a_speaker_pattern_that_matches_no_name_fails_in_two_lines_not_one_per_file(tmp_path):
    for k in range(4):
        put(tmp_path / "clips" / f"x{k}.wav", seed=k)
    r = runner.invoke(app, ["score", str(tmp_path / "clips"), "--speaker-pattern", r"^(\d\d)"])
    assert r.exit_code == 3
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(lines) == 2 and "gives no speaker" in lines[0], r.stderr
    assert lines[1] == "failed 3 more clip(s): file name gives no speaker with --speaker-pattern"


def test_a_mix_whose_folder_0_30_named_in_the_given_order_gets_a_note(tmp_path, monkeypatch):
    from emort.runtime.batch import mix_in_given_order
    from emort.runtime.settings import EMOTIONS

    assert mix_in_given_order("angry:0.7, sadness:0.3", "sad:0.30,angry:0.70", EMOTIONS) == "angry:0.70,sad:0.30"
    monkeypatch.chdir(tmp_path)
    src = put(tmp_path / "a.wav")
    (tmp_path / "enhanced" / "angry-0.70+sad-0.30").mkdir(parents=True)  # where 0.30 wrote this mix
    r = enhance(str(src), "-e", "angry:0.7,sad:0.3")
    assert r.exit_code == 0 and "0.30 and earlier wrote this mix to enhanced/angry-0.70+sad-0.30" in r.stderr, r.output
    assert (tmp_path / "enhanced" / "sad-0.30+angry-0.70" / "a.wav").is_file()


def test_an_out_folder_this_version_cannot_take_is_refused_before_any_work(tmp_path):
    """A newer emort's record was refused only after the models loaded, with a report written (a new user)."""
    src = put(tmp_path / "a.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": "emort-output", "format_version": 99, "outputs": {}}))
    r = enhance(str(src), "-e", "sad", "-o", str(out), "--json", str(tmp_path / "r.json"))
    assert r.exit_code == 2 and "written by a newer emort" in r.stderr and "backend:" not in r.output, r.output
    assert not (tmp_path / "r.json").exists()
