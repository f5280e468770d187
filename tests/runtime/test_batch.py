"""The batch layer behind `emort enhance` / `emort score`: discovery that accounts for every path, output
planning, the output-folder marker (no re-enhancing of earlier outputs, resume only with the same settings),
per-file failures. A fake enhancer stands in for the models: the layer depends only on the Enhancer contract."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emort.runtime import batch
from emort.runtime.batch import (
    MARKER,
    discover,
    enhance_files,
    exit_status,
    plan_outputs,
    summarize,
)
from emort.runtime.editing import EditOptions
from emort.runtime.errors import EmortError, LabelError
from emort.runtime.settings import EMOTIONS


def tone(seconds: float = 0.3, sr: int = 16000, f0: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write(path: Path, sr: int = 16000, channels: int = 1, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = tone(sr=sr)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr, **kw)
    return path


class FakeBundle:
    labels = list(EMOTIONS)
    content_hash = "0123456789abcdef"
    edit_hash = "fedcba9876543210"


@dataclass
class FakeResult:
    wav: np.ndarray
    sample_rate: int
    emotion: str
    options: EditOptions
    scores_before: dict
    scores_after: dict | None
    change_db: float
    guidance: float
    seconds: float
    source_mel: np.ndarray | None = None
    mel: np.ndarray | None = None
    change_db_at_max_cap: float | None = None


class FakeEnhancer:
    """Halves the signal; fails on files whose samples start at exactly 0.25."""

    bundle = FakeBundle()

    def __init__(self):
        self.calls: list[tuple[int, int, str]] = []

    def enhance(self, wav, sample_rate, emotion, options=None, vocoder="gain", score_output=False):
        self.calls.append((len(wav), sample_rate, emotion))
        if wav.ndim != 1:
            raise AssertionError("the batch layer hands the enhancer mono audio")
        if abs(float(wav[0]) - 0.25) < 1e-3:
            raise EmortError("model refused this clip")
        before = dict.fromkeys(EMOTIONS, 1 / 6)
        after = {**dict.fromkeys(EMOTIONS, 0.1), "angry": 0.5}
        return FakeResult(wav * 0.5, sample_rate, emotion, options, before, after if score_output else None, 2.0, 7.5, 0.03)


def run(enh, paths, out, emotion="angry", options=EditOptions(), **kw) -> list:
    return list(enhance_files(enh, [str(p) for p in paths], out, emotion, options, **kw))


def by_path(records) -> dict:
    return {Path(r.path).name: r for r in records}


# --- discovery ---------------------------------------------------------------------------------


def test_folders_take_every_format_the_reader_opens_and_account_for_the_rest(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "sub" / "b.caf", format="CAF")
    write(src / "sub" / "c.w64", format="W64")
    write(src / "d.flac", sr=48000, channels=2)
    for junk in ("e.m4a", "f.aac", "g.wma", "notes.txt", "README", ".DS_Store"):
        (src / junk).write_bytes(b"x")
    write(src / ".hidden.wav")
    write(src / ".cache" / "x.wav")
    jobs, records = discover([src, tmp_path / "nope"])
    assert [j.rel.as_posix() for j in jobs] == ["a.wav", "d.flac", "sub/b.caf", "sub/c.w64"]
    reasons = {(Path(r.path).name, r.status, r.reason) for r in records}
    assert {("e.m4a", "skipped", "unsupported"), ("f.aac", "skipped", "unsupported"), ("g.wma", "skipped", "unsupported"),
            (".hidden.wav", "skipped", "hidden"), (".cache", "skipped", "hidden"), ("nope", "failed", "missing")} <= reasons
    other = [r for r in records if r.reason == "not-audio"]
    assert len(other) == 1 and other[0].count == 3 and ".txt x1" in other[0].note  # notes.txt, README, .DS_Store
    assert summarize(records)["skipped"] == {"unsupported": 3, "hidden": 2, "not-audio": 3}
    assert all(r.note or r.error for r in records)
    # Named explicitly: any file is tried (a non-audio one fails when read), but a known unsupported one is refused.
    jobs, records = discover([src / "notes.txt", src / "e.m4a"])
    assert [j.path.name for j in jobs] == ["notes.txt"] and jobs[0].explicit
    assert records[0].status == "failed" and records[0].reason == "unsupported" and "convert it" in records[0].error


def test_the_extension_list_comes_from_libsndfile():
    assert {".wav", ".flac", ".caf", ".w64", ".aiff", ".mp3", ".ogg", ".opus"} <= batch.AUDIO_SUFFIXES
    assert ".mat" not in batch.AUDIO_SUFFIXES and ".raw" not in batch.AUDIO_SUFFIXES  # MATLAB data, headerless
    assert {".m4a", ".aac", ".wma"} <= batch.UNSUPPORTED_SUFFIXES and not batch.UNSUPPORTED_SUFFIXES & batch.AUDIO_SUFFIXES


def test_symlinked_folders_are_followed_once(tmp_path):
    src = tmp_path / "in"
    write(src / "a" / "x.wav")
    os.symlink(src, src / "a" / "loop")  # a cycle
    os.symlink(src / "a", src / "b")  # the same folder twice
    jobs, records = discover([src])
    assert [j.path.name for j in jobs] == ["x.wav"]
    # each second path to a searched folder is counted, not dropped without a word (a new user's report)
    assert [j.rel.as_posix() for j in jobs] == ["a/x.wav"]  # the folder itself, not the link to it
    assert sorted((Path(r.path).name, r.status, r.reason) for r in records) == [("b", "skipped", "duplicate"), ("loop", "skipped", "duplicate")]
    assert all("the same folder as" in r.note for r in records)


def test_a_link_loop_or_an_empty_path_is_one_failed_entry_and_the_rest_go_on(tmp_path):
    src = tmp_path / "in"
    write(src / "x.wav")
    os.symlink("loop.wav", src / "loop.wav")  # a link to itself
    jobs, records = discover([src, ""])
    assert [j.path.name for j in jobs] == ["x.wav"]  # the working folder is not walked for ""
    assert sorted((Path(r.path).name, r.status) for r in records) == [("''", "failed"), ("loop.wav", "failed")]


def test_a_file_whose_name_is_not_utf8_is_read_and_sharded(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 bytes: Python sees a surrogate
    try:
        write(tmp_path / "ok.wav")
        (tmp_path / name).write_bytes((tmp_path / "ok.wav").read_bytes())
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system does not take a name that is not UTF-8")
    a = batch.read_input(tmp_path / name)
    assert a.sample_rate == 16000 and len(a.samples) == len(tone())
    assert batch.Shard(1, 2).holds(name) != batch.Shard(2, 2).holds(name)  # hashed by its bytes, no error


def test_output_trees_are_not_inputs(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "angry" / "a.wav")
    (src / "angry" / MARKER).write_text("{}")
    write(src / "mine" / "a.wav")  # this run's output folder, not yet marked
    jobs, records = discover([src], skip_output_trees=True, exclude=src / "mine")
    assert [j.rel.as_posix() for j in jobs] == ["a.wav"]
    assert sorted((Path(r.path).name, r.reason) for r in records) == [("angry", "emort-output"), ("mine", "emort-output")]
    jobs, _ = discover([src])  # scoring takes them (judging outputs is what it is for)
    assert len(jobs) == 3
    jobs, _ = discover([src / "angry"], skip_output_trees=True)  # named explicitly: taken
    assert [j.path.name for j in jobs] == ["a.wav"]


def test_plan_outputs_collisions(tmp_path):
    for d in ("a", "b"):
        write(tmp_path / d / "x.wav")
    write(tmp_path / "a" / "y.flac")
    write(tmp_path / "a" / "y.wav")
    jobs, _ = discover([tmp_path / "a", tmp_path / "b"])
    planned, errors = plan_outputs(jobs, tmp_path / "out")
    # a/x.wav and b/x.wav both want out/x.wav; a/y.flac and a/y.wav both want out/y.wav
    assert planned == [] and len(errors) == 4 and all(e.reason == "collision" and "several inputs" in e.error for e in errors)
    planned, errors = plan_outputs(jobs[:1], tmp_path / "a")
    assert planned == [] and "overwrite an input" in errors[0].error


# --- enhance -----------------------------------------------------------------------------------


def test_enhance_writes_mono_pcm16_at_the_inputs_rate_and_goes_on_after_a_failure(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav", sr=16000)
    write(src / "sub" / "b.flac", sr=48000, channels=2)
    bad = np.full(4000, 0.25, np.float32)
    bad[1::2] = 0.2  # not a constant (read as silent since 0.25): the fake enhancer refuses it
    sf.write(src / "bad.wav", bad, 16000, subtype="FLOAT")
    (src / "broken.wav").write_bytes(b"RIFF not really a wav file")
    sf.write(src / "silent.wav", np.zeros(8000, np.float32), 16000)
    enh = FakeEnhancer()
    started = []
    recs = run(enh, [src], tmp_path / "out", "anger", on_start=started.append)
    assert started == [5]
    r = by_path(recs)
    assert {k: (v.status, v.reason) for k, v in r.items()} == {
        "a.wav": ("written", None), "b.flac": ("written", None), "bad.wav": ("failed", "error"),
        "broken.wav": ("failed", "unreadable"), "silent.wav": ("failed", "invalid-audio")}
    assert all(v.error.startswith(str(src)) and "\n" not in v.error for v in recs if v.status == "failed")
    for name, rate in (("a.wav", 16000), ("sub/b.wav", 48000)):
        info = sf.info(tmp_path / "out" / name)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (rate, 1, "PCM_16", int(0.3 * rate))
    a = r["a.wav"]
    assert a.emotion == "angry" and a.sample_rate == 16000 and a.duration_s == 0.3 and a.prediction == "angry"
    assert (a.change_db, a.guidance, a.seconds) == (2.0, 7.5, 0.03) and a.scores_before["angry"] == pytest.approx(1 / 6)
    assert set(a.to_dict()) == {"path", "status", "output", "emotion", "duration_s", "sample_rate", "scores_before", "scores_after",
                                "prediction", "change_db", "guidance", "seconds"}
    json.dumps([x.to_dict() for x in recs])
    s = summarize(recs, "angry")
    assert s["processed"] == 2 and s["failed"] == {"error": 1, "unreadable": 1, "invalid-audio": 1}
    assert s["mean_p_target_after"] == 0.5 and s["mean_change_db"] == 2.0 and s["mean_rtf"] == pytest.approx(0.1)
    assert exit_status(s) == batch.EXIT_FAILED
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp" in p.name]


def test_resume_skips_only_outputs_made_with_the_same_settings(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "b.wav")
    out = tmp_path / "out"
    enh = FakeEnhancer()
    assert [r.status for r in run(enh, [src], out)] == ["written", "written"]
    marker = json.loads((out / MARKER).read_text())
    (settings,) = marker["settings"].values()
    assert settings == {"emotion": "angry", "options": EditOptions().settings_dict(), "bundle": FakeBundle.edit_hash, "vocoder": "gain"}
    assert "pitch" not in settings["options"]  # prosody off: its controls change nothing and are not compared
    assert set(marker["outputs"]) == {"a.wav", "b.wav"}
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.wav")}

    enh.calls.clear()
    recs = run(enh, [src], out, "anger")  # same settings (an alias of the same target)
    assert [(r.status, r.reason) for r in recs] == [("skipped", "done")] * 2 and not enh.calls
    assert exit_status(summarize(recs)) == batch.EXIT_OK  # a finished batch resumed is a success

    for other in (dict(emotion="sad"), dict(options=replace(EditOptions(), amount_db=3.0)), dict(vocoder="griffinlim"),
                  dict(precision="bf16")):  # a bf16 denoiser's edit is not the fp32 output
        recs = run(enh, [src], out, **other)
        assert [(r.status, r.reason) for r in recs] == [("failed", "other-settings")] * 2 and not enh.calls
        assert "other settings" in recs[0].error and "--overwrite" in recs[0].error
    assert "precision fp32 -> bf16" in recs[0].error  # the last of them
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.wav")} == mtimes  # nothing replaced
    assert exit_status(summarize(recs)) == batch.EXIT_NOTHING

    recs = run(enh, [src], out, "sad", overwrite=True)
    assert [r.status for r in recs] == ["written"] * 2
    assert {s["emotion"] for s in json.loads((out / MARKER).read_text())["settings"].values()} >= {"sad"}
    assert [(r.status, r.reason) for r in run(enh, [src], out, "sad")] == [("skipped", "done")] * 2


def test_outputs_recorded_before_an_option_existed_still_resume(tmp_path):
    """A 0.5 marker records options without the prosody fields: with prosody off (their
    defaults) the outputs are the same settings; with prosody on they are other settings."""
    src = tmp_path / "in"
    write(src / "a.wav")
    out = tmp_path / "out"
    enh = FakeEnhancer()
    assert [r.status for r in run(enh, [src], out)] == ["written"]
    m = json.loads((out / MARKER).read_text())
    for st in m["settings"].values():
        del st["options"]["prosody"]
    (out / MARKER).write_text(json.dumps(m))
    enh.calls.clear()
    assert [(r.status, r.reason) for r in run(enh, [src], out)] == [("skipped", "done")] and not enh.calls
    recs = run(enh, [src], out, options=replace(EditOptions(), prosody=True))
    assert [(r.status, r.reason) for r in recs] == [("failed", "other-settings")] and "options.prosody" in recs[0].error
    # with prosody off, its controls are not compared (the CLI refuses them without --prosody)
    assert [r.reason for r in run(enh, [src], out, options=replace(EditOptions(), loudness=0.3))] == ["done"]
    # an option this version does not know (a newer emort's) is not dropped: other settings
    m = json.loads((out / MARKER).read_text())
    for st in m["settings"].values():
        st["options"]["future_option"] = 1.0
    (out / MARKER).write_text(json.dumps(m))
    recs = run(enh, [src], out)
    assert [r.reason for r in recs] == ["other-settings"] and "future_option" in recs[0].error


@pytest.mark.parametrize("renderer,resumes", [("stretch", False), ("world", True)])
def test_prosody_outputs_recorded_before_the_f0_range_resume_as_they_were_rendered(tmp_path, renderer, resumes):
    """A 0.28 marker has no ``pitch_range``: its stretch renderings kept the F0 range, which this
    version changes, so they are other settings even where ``pitch_range`` is None (a library
    caller's default: the pitch's share; a review found them skipped as done); world applied the
    range at the pitch's share then as now, so its outputs resume."""
    src = tmp_path / "in"
    write(src / "a.wav")
    out = tmp_path / "out"
    enh = FakeEnhancer()
    opts = replace(EditOptions(), prosody=True, pitch=0.5, prosody_renderer=renderer)
    assert [r.status for r in run(enh, [src], out, options=opts)] == ["written"]
    m = json.loads((out / MARKER).read_text())
    for st in m["settings"].values():
        assert st["options"]["pitch_range"] == 0.5  # recorded as applied
        del st["options"]["pitch_range"]
    (out / MARKER).write_text(json.dumps(m))
    recs = run(enh, [src], out, options=opts)
    assert [r.reason for r in recs] == (["done"] if resumes else ["other-settings"])
    if not resumes:
        assert "pitch_range" in recs[0].error


def test_files_emort_did_not_make_are_never_replaced_without_overwrite(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "b.wav")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.wav").write_bytes(b"my own recording")
    recs = run(FakeEnhancer(), [src], out)
    assert [(r.status, r.reason) for r in recs] == [("failed", "unrecorded"), ("written", None)]
    assert "no record of its settings" in recs[0].error and (out / "a.wav").read_bytes() == b"my own recording"
    # The folder is marked now; the user's file still has no record, so a later run leaves it alone too.
    recs = run(FakeEnhancer(), [src], out)
    assert [(r.status, r.reason) for r in recs] == [("failed", "unrecorded"), ("skipped", "done")]
    assert (out / "a.wav").read_bytes() == b"my own recording"
    assert run(FakeEnhancer(), [src], out, overwrite=True)[0].status == "written"


def test_earlier_outputs_inside_the_input_tree_are_not_enhanced_again(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "day1" / "b.wav")
    enh = FakeEnhancer()
    run(enh, [src], src / "angry")
    enh.calls.clear()
    recs = run(enh, [src], src / "sad", "sad")
    assert [r.path for r in recs if r.status == "written"] == [str(src / "a.wav"), str(src / "day1" / "b.wav")]
    skipped = [r for r in recs if r.status == "skipped"]
    assert [(Path(r.path).name, r.reason) for r in skipped] == [("angry", "emort-output")] and "not taken (name it to take it)" in skipped[0].note
    assert len(enh.calls) == 2 and not (src / "sad" / "angry").exists()
    # Resuming into a folder inside the input tree: its own outputs are not inputs either.
    recs = run(enh, [src], src / "sad", "sad")
    assert sorted(r.reason for r in recs) == ["done", "done", "emort-output", "emort-output"]


def test_run_level_errors(tmp_path):
    write(tmp_path / "in" / "a.wav")
    with pytest.raises(LabelError):
        run(FakeEnhancer(), [tmp_path / "in"], tmp_path / "out", "bored")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EmortError, match="file is a file, not a folder; give another --out"):  # before any work
        run(FakeEnhancer(), [tmp_path / "in"], tmp_path / "file" / "out")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MARKER).write_text("{not json")
    with pytest.raises(EmortError, match="unreadable record"):
        run(FakeEnhancer(), [tmp_path / "in"], tmp_path / "bad")


def test_a_damaged_record_is_named_not_a_type_error_mid_batch(tmp_path):
    """Entries of the wrong type (a hand-edited record) fail the run at the start, naming the
    record, as unreadable JSON does (they failed mid-batch with a bare TypeError)."""
    src = write(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    assert [r.status for r in run(FakeEnhancer(), [src], out)] == ["written"]
    good = json.loads((out / MARKER).read_text())
    for damage in (lambda m: m["settings"].update({k: [1] for k in m["settings"]}),
                   lambda m: m["outputs"]["a.wav"].update(input=5),
                   lambda m: m["outputs"]["a.wav"].update(time="x")):
        bad = json.loads(json.dumps(good))
        damage(bad)
        (out / MARKER).write_text(json.dumps(bad))
        with pytest.raises(EmortError, match="unreadable record"):
            run(FakeEnhancer(), [src], out)
    (out / MARKER).write_text(json.dumps(good))
    assert [(r.status, r.reason) for r in run(FakeEnhancer(), [src], out)] == [("skipped", "done")]


def test_an_unwritable_output_fails_that_file_only(tmp_path):
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "b.wav")
    out = tmp_path / "out"
    (out / "a.wav").mkdir(parents=True)  # the output path is taken by a folder
    (out / MARKER).write_text(json.dumps({"format": "emort-output", "settings": {}, "outputs": {}}))
    recs = run(FakeEnhancer(), [src], out, overwrite=True)
    assert [(r.status, r.reason) for r in recs] == [("failed", "write"), ("written", None)]
    assert recs[0].error.startswith(f"{src / 'a.wav'}: cannot write {out / 'a.wav'}")


def test_stopping_early_keeps_the_record_of_what_was_written(tmp_path):
    src = tmp_path / "in"
    for n in "abc":
        write(src / f"{n}.wav")
    out = tmp_path / "out"
    gen = enhance_files(FakeEnhancer(), [str(src)], out, "angry", EditOptions())
    assert next(gen).status == "written"
    assert next(gen).status == "written"
    gen.close()  # e.g. Ctrl-C in the caller
    recorded = set(json.loads((out / MARKER).read_text())["outputs"])
    # every output on disk is recorded (the one being written when the caller stopped too: c.wav)
    assert recorded >= {"a.wav", "b.wav"} and recorded == {p.name for p in out.glob("*.wav")}


def test_mixed_targets_name_their_folder_and_probability():
    assert batch.target_name("angry:0.7,sadness:0.3", EMOTIONS) == "sad:0.30,angry:0.70"  # in label order
    assert batch.default_out_dir("sad:0.30,angry:0.70") == Path("enhanced/sad-0.30+angry-0.70")
    assert batch.default_out_dir("angry") == Path("enhanced/angry")
    assert batch.default_out_dir("fear", prosody=True) == Path("enhanced/fear-prosody")  # not the plain edit's folder
    scores = {**dict.fromkeys(EMOTIONS, 0.0), "angry": 0.6, "sad": 0.2}
    assert batch.target_probability(scores, "angry:0.70,sad:0.30") == pytest.approx(0.7 * 0.6 + 0.3 * 0.2)


def test_report_path_never_replaces_a_non_json_file(tmp_path):
    import pytest

    from emort.runtime.atomic import check_writable
    from emort.runtime.errors import EmortError

    audio = tmp_path / "a.flac"
    audio.write_bytes(b"fLaC")
    for bad in (audio, tmp_path, audio / "r.json"):
        with pytest.raises(EmortError):
            check_writable(bad, "--json report")
    assert audio.read_bytes() == b"fLaC"
    old = tmp_path / "old.json"
    old.write_text("{}")
    check_writable(old, "--json report")  # an earlier report may be replaced
    check_writable(tmp_path / "new" / "r.json", "--json report")
    assert not list((tmp_path / "new").iterdir())  # the probe leaves nothing behind


def test_resume_does_not_take_an_output_of_another_input_as_done(tmp_path):
    """Same settings, same output name, a different clip (a second folder into the same --out,
    or a re-recorded input): refused as other-input, never reported done."""
    import soundfile as sf

    from emort.runtime import batch
    from emort.runtime.editing import EditOptions

    class FakeBundle:
        labels = ["neutral", "happy", "sad", "angry", "fear", "disgust"]
        content_hash = "h"
        edit_hash = "e"

    class Fake:
        bundle = FakeBundle()

        def enhance(self, wav, sr, emotion, options=None, vocoder="gain", score_output=False, **_):
            from types import SimpleNamespace

            return SimpleNamespace(wav=wav, sample_rate=sr, emotion=emotion, scores_before={}, scores_after=None,
                                   change_db=0.0, guidance=0.0, seconds=0.0)

    rng = np.random.default_rng(0)
    for take, n in (("take1", 8000), ("take2", 9000)):
        (tmp_path / take).mkdir()
        sf.write(tmp_path / take / "a.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    out = tmp_path / "out"
    opts = EditOptions(amount_db=1.0)
    first = list(batch.enhance_files(Fake(), [str(tmp_path / "take1")], out, "angry", opts))
    assert [r.status for r in first] == ["written"]
    again = list(batch.enhance_files(Fake(), [str(tmp_path / "take1")], out, "angry", opts))
    assert [(r.status, r.reason) for r in again] == [("skipped", "done")]
    other = list(batch.enhance_files(Fake(), [str(tmp_path / "take2")], out, "angry", opts))
    assert [(r.status, r.reason) for r in other] == [("failed", "other-input")]
    assert sf.info(str(out / "a.wav")).frames == 8000  # the first output is kept, not replaced


def test_resume_does_not_take_a_changed_output_as_done(tmp_path):
    """An output replaced or edited since emort wrote it (another program, a report written over
    it) is not "done": refused as output-changed, kept as it is, and redone with overwrite."""
    import soundfile as sf

    from emort.runtime import batch
    from emort.runtime.editing import EditOptions

    class Fake:
        class bundle:  # noqa: N801 - the attributes enhance_files reads
            labels = ["neutral", "happy", "sad", "angry", "fear", "disgust"]
            content_hash = "h"
            edit_hash = "e"

        def enhance(self, wav, sr, emotion, options=None, vocoder="gain", score_output=False, **_):
            from types import SimpleNamespace

            return SimpleNamespace(wav=wav, sample_rate=sr, emotion=emotion, scores_before={}, scores_after=None,
                                   change_db=0.0, guidance=0.0, seconds=0.0)

    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    out, opts = tmp_path / "out", EditOptions(amount_db=1.0)
    assert [r.status for r in batch.enhance_files(Fake(), [str(tmp_path / "in")], out, "angry", opts)] == ["written"]
    size = (out / "a.wav").stat().st_size
    (out / "a.wav").write_bytes(b"j" * size)  # the same size, other bytes
    again = list(batch.enhance_files(Fake(), [str(tmp_path / "in")], out, "angry", opts))
    assert [(r.status, r.reason) for r in again] == [("failed", "output-changed")] and "changed since emort wrote it" in again[0].error
    assert (out / "a.wav").read_bytes() == b"j" * size  # kept: never replaced without --overwrite
    redo = list(batch.enhance_files(Fake(), [str(tmp_path / "in")], out, "angry", opts, overwrite=True))
    assert [r.status for r in redo] == ["written"] and sf.info(str(out / "a.wav")).frames == 8000
    assert [(r.status, r.reason) for r in batch.enhance_files(Fake(), [str(tmp_path / "in")], out, "angry", opts)] == [("skipped", "done")]
    import os
    import shutil

    copied = tmp_path / "copied"  # a copy that keeps sizes but not times (cp -r, rsync without -t) still resumes
    shutil.copytree(out, copied, copy_function=shutil.copy)
    os.utime(copied / "a.wav", ns=(1, 1))
    assert [(r.status, r.reason) for r in batch.enhance_files(Fake(), [str(tmp_path / "in")], copied, "angry", opts)] == [("skipped", "done")]


def test_report_path_never_takes_an_audio_name(tmp_path):
    """--json named like audio is refused before any work, even when no such file exists yet: an
    output of the same run could take that name (a report written over an enhanced clip)."""
    import pytest

    from emort.runtime.atomic import check_writable
    from emort.runtime.batch import AUDIO_SUFFIXES
    from emort.runtime.errors import EmortError

    for name in ("out.wav", "out.FLAC"):
        with pytest.raises(EmortError, match="audio extension"):
            check_writable(tmp_path / name, "--json report", never=AUDIO_SUFFIXES)
    check_writable(tmp_path / "report.json", "--json report", never=AUDIO_SUFFIXES)


def test_report_path_never_replaces_the_output_record(tmp_path):
    import pytest

    from emort.runtime.atomic import check_writable
    from emort.runtime.errors import EmortError

    with pytest.raises(EmortError):
        check_writable(tmp_path / ".emort-output.json", "--json report")


def test_score_reads_ahead_but_reports_in_order_with_a_failure_in_the_middle(tiny, emodb_files, tmp_path):
    """More files than the read-ahead window, one unreadable among them: records come in path
    order, the bad file is one failed record, and every score equals the clip scored alone."""
    from emort.runtime.scorer import Scorer

    n = batch.READ_AHEAD + 5
    for k in range(n):
        src = emodb_files[k % len(emodb_files)]
        (tmp_path / f"{k:02d}.flac").write_bytes(src.read_bytes())
    (tmp_path / "05.flac").write_bytes(b"not audio at all")
    scorer = Scorer.load(tiny["bundle"], device="cpu")
    import threading

    where, inner = [], scorer.score_mels
    scorer.score_mels = lambda mels: (where.append(threading.current_thread().name), inner(mels))[1]
    recs = list(batch.score_files(scorer, [tmp_path]))
    del scorer.score_mels
    assert len(where) == n - 1 and all(t.startswith("emort-read") for t in where)  # scored whole in the workers
    assert [Path(r.path).name for r in recs] == [f"{k:02d}.flac" for k in range(n)]
    assert [r.status for r in recs].count("failed") == 1 and recs[5].status == "failed" and recs[5].reason == "unreadable"
    for r in recs:
        if r.status == "scored":
            a = batch.read_input(Path(r.path))
            assert r.scores == pytest.approx(scorer.score(a.samples, a.sample_rate).scores, abs=1e-6)


def test_enhance_decodes_the_next_file_while_one_is_edited(tmp_path, monkeypatch):
    """The next input is read in a reader thread while the current one is edited (records, outputs
    and failures as before); inputs whose header gives a decoded size over the read-ahead limit,
    or no header at all, are read in turn, in this thread."""
    import threading

    for i in range(4):
        write(tmp_path / "in" / f"c{i}.wav")
    (tmp_path / "in" / "c2.wav").write_bytes(b"not audio")
    reads: list[tuple[str, str]] = []
    inner = batch.read_input

    def spy(path):
        reads.append((Path(path).name, threading.current_thread().name))
        return inner(path)

    monkeypatch.setattr(batch, "read_input", spy)
    enh = FakeEnhancer()
    recs = by_path(run(enh, [tmp_path / "in"], tmp_path / "out"))
    assert [recs[f"c{i}.wav"].status for i in range(4)] == ["written", "written", "failed", "written"]
    assert "c2.wav" in recs["c2.wav"].error and len(enh.calls) == 3
    assert sorted(n for n, _ in reads) == ["c0.wav", "c1.wav", "c2.wav", "c3.wav"]  # each file read once
    where = dict(reads)
    assert all(where[f"c{i}.wav"].startswith("emort-read") for i in (0, 1, 3))
    assert where["c2.wav"] == threading.current_thread().name  # no readable header: read in turn, its error in order
    assert (sf.read(tmp_path / "out" / "c3.wav")[0] * 2 == pytest.approx(tone(), abs=1e-4))

    reads.clear()
    monkeypatch.setattr(batch, "ENHANCE_READ_AHEAD_BYTES", 0)  # every file "large": read in turn, here
    run(FakeEnhancer(), [tmp_path / "in"], tmp_path / "out2")
    assert [n for n, _ in reads] == ["c0.wav", "c1.wav", "c2.wav", "c3.wav"]
    assert all(t == threading.current_thread().name for _, t in reads)


def test_the_read_ahead_limit_is_the_decoded_size_not_the_file_size(tmp_path, monkeypatch):
    import threading

    for i in range(2):
        write(tmp_path / "in" / f"c{i}.flac")  # FLAC: the file is a fraction of its decoded float32 size
    size = (tmp_path / "in" / "c1.flac").stat().st_size
    decoded = batch._decoded_bytes(tmp_path / "in" / "c1.flac")
    assert decoded == len(tone()) * 4 and size < decoded
    reads = []
    inner = batch.read_input
    monkeypatch.setattr(batch, "read_input", lambda p: (reads.append(threading.current_thread().name), inner(p))[1])
    monkeypatch.setattr(batch, "ENHANCE_READ_AHEAD_BYTES", (size + decoded) // 2)  # the file fits, its samples do not
    assert [r.status for r in run(FakeEnhancer(), [tmp_path / "in"], tmp_path / "out")] == ["written"] * 2
    assert reads == [threading.current_thread().name] * 2


def test_outputs_are_written_while_the_next_edit_runs_and_recorded_when_a_run_stops(tmp_path, monkeypatch):
    """Writes run in a writer thread (overlapping the next edit); a caller that stops after the
    first record still finds every output it caused recorded, so a re-run skips them."""
    import threading

    files = [write(tmp_path / "in" / f"c{i}.wav") for i in range(4)]
    where = []
    inner = batch.write_wav_atomic
    monkeypatch.setattr(batch, "write_wav_atomic", lambda *a: (where.append(threading.current_thread().name), inner(*a))[1])
    gen = enhance_files(FakeEnhancer(), [str(p) for p in files], tmp_path / "out", "angry", EditOptions())
    first = next(gen)
    assert first.status == "written" and Path(first.output).exists()
    gen.close()  # stops early: the output being written when it stopped is recorded too
    assert where and all(t.startswith("emort-write") for t in where)
    written = sorted(p.name for p in (tmp_path / "out").glob("*.wav"))
    again = by_path(run(FakeEnhancer(), files, tmp_path / "out"))
    assert all(again[n].reason == "done" for n in written)
    assert [again[f"c{i}.wav"].status for i in range(4)].count("skipped") == len(written) >= 2


def test_an_input_changed_while_its_edit_ran_is_not_taken_as_done(tmp_path):
    """The input's size and time are the ones it had when it was read: rewritten during its
    edit, the next run refuses the output (other-input) instead of skipping it as done."""
    src = write(tmp_path / "in" / "a.wav")

    class Rewrites(FakeEnhancer):
        def enhance(self, wav, sample_rate, emotion, **kw):
            sf.write(src, tone(0.5), 16000)  # the user saves a new take while this one is edited
            return super().enhance(wav, sample_rate, emotion, **kw)

    out = tmp_path / "out"
    assert [r.status for r in run(Rewrites(), [src], out)] == ["written"]
    again = run(FakeEnhancer(), [src], out)
    assert [(r.status, r.reason) for r in again] == [("failed", "other-input")]


def test_an_input_changed_after_it_was_read_ahead_is_not_taken_as_done(tmp_path, monkeypatch):
    """The next file is decoded while this one is edited: its identity is the one from before
    that read, so a new take saved after the read (while file 1 is edited) is refused next run."""
    from emort.runtime import batch

    srcs = [write(tmp_path / "in" / f"{k}.wav") for k in (1, 2)]
    real_read = batch.read_input

    def read_then_rewrite(path):
        audio = real_read(path)
        if Path(path).name == "2.wav":  # saved again just after emort read it
            sf.write(srcs[1], tone(0.5), 16000)
        return audio

    class Slow(FakeEnhancer):  # file 1's edit outlasts file 2's read ahead (and its rewrite)
        def enhance(self, wav, sample_rate, emotion, **kw):
            time.sleep(0.3)
            return super().enhance(wav, sample_rate, emotion, **kw)

    monkeypatch.setattr(batch, "read_input", read_then_rewrite)
    out = tmp_path / "out"
    assert [r.status for r in run(Slow(), [tmp_path / "in"], out)] == ["written", "written"]
    monkeypatch.setattr(batch, "read_input", real_read)
    again = by_path(run(FakeEnhancer(), [tmp_path / "in"], out))
    assert (again["1.wav"].status, again["1.wav"].reason) == ("skipped", "done")
    assert (again["2.wav"].status, again["2.wav"].reason) == ("failed", "other-input")


def test_a_record_that_cannot_be_written_fails_the_run(tmp_path, monkeypatch):
    """Outputs written but not recorded would be refused by the next run: one failed record
    names the marker and the way out, so the exit status is not 0."""
    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "b.wav")

    real, calls = batch.OutputMarker.flush, []

    def full(self):  # the folder is made and marked, then the disk fills up
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        real(self)

    monkeypatch.setattr(batch.OutputMarker, "flush", full)
    recs = run(FakeEnhancer(), [src], tmp_path / "out")
    assert [(r.status, r.reason) for r in recs] == [("written", None), ("written", None), ("failed", "write")]
    assert recs[-1].path.endswith(MARKER) and "--overwrite" in recs[-1].error and "\n" not in recs[-1].error
    assert batch.exit_status(batch.summarize(recs, "angry")) == batch.EXIT_FAILED


def test_an_output_folder_that_holds_the_inputs_hides_only_its_outputs(tmp_path):
    """--out the input folder itself: the marker records the files, so a later run over the
    parent folder still takes the originals and skips the outputs."""
    spk = tmp_path / "corpus" / "spk1"
    write(spk / "a.flac", format="FLAC")
    assert [r.status for r in run(FakeEnhancer(), [spk], spk)] == ["written"]
    assert json.loads((spk / MARKER).read_text())["scope"] == "files"
    recs = by_path(run(FakeEnhancer(), [tmp_path / "corpus"], tmp_path / "out2", emotion="happy"))
    assert recs["a.flac"].status == "written" and recs["a.wav"].reason == "emort-output"


def test_no_shortfall_note_when_the_edit_is_off(tmp_path):
    """--strength 0 returns the input: no note that the amount was not reached (which names the
    band cap as the cause); an edit that does stop short still gets it."""
    src = write(tmp_path / "in" / "a.wav")

    class NoChange(FakeEnhancer):
        def enhance(self, *a, **kw):
            return replace(super().enhance(*a, **kw), change_db=0.0)

    off = run(NoChange(), [src], tmp_path / "off", options=EditOptions(amount_db=0.5, strength=0.0))
    short = run(NoChange(), [src], tmp_path / "short", options=EditOptions(amount_db=0.5))
    assert off[0].status == "written" and off[0].note is None
    assert short[0].note is not None and "reached 0.00 of 0.5 dB" in short[0].note


@pytest.mark.parametrize(("change", "k", "at_max_cap", "cap", "says", "not_says"), [
    (0.10, 100.0, 1.90, 12.0, "bands are capped at 12 dB: --max-band-db 40 would reach 1.90 dB", "weak"),
    (0.10, 100.0, 0.101, 12.0, "weak in this clip: its multiplier stopped at its limit, 100; a larger --max-band-db would not help", "capped"),
    (0.10, 100.0, None, 40.0, "weak in this clip: its multiplier stopped at its limit, 100", "would not help"),
    (0.0, 0.0, None, 12.0, "the model made no usable edit toward angry", "multiplier"),
])
def test_the_shortfall_note_names_its_cause(tmp_path, change, k, at_max_cap, cap, says, not_says):
    """A calibrated edit stops short where the multiplier reaches its limit (or nothing is edited):
    the band cap is named only where the largest cap would reach clearly more (0.31 named it always,
    and a new user raised it to 40 dB for the same 0.10 dB)."""
    src = write(tmp_path / "in" / "a.wav")

    class Short(FakeEnhancer):
        def enhance(self, *a, **kw):
            return replace(super().enhance(*a, **kw), change_db=change, guidance=k, change_db_at_max_cap=at_max_cap)

    note = run(Short(), [src], tmp_path / "o", options=EditOptions(amount_db=2.0, max_band_db=cap))[0].note
    assert f"reached {change:.2f} of 2 dB" in note and says in note and not_says not in note, note


def test_a_write_that_fails_on_a_full_disk_says_so(tmp_path, monkeypatch):
    from collections import namedtuple

    class LibsndfileError(RuntimeError):  # what soundfile raises, with libsndfile's bare wording
        pass

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(batch.shutil, "disk_usage", lambda p: usage(100, 100, 0))
    assert batch._write_cause(LibsndfileError("System error."), tmp_path / "a.wav") == "System error.; the disk is full"
    assert batch._write_cause(OSError(28, "No space left on device"), tmp_path / "a.wav") == "No space left on device"
    monkeypatch.setattr(batch.shutil, "disk_usage", lambda p: usage(100, 0, 1 << 30))
    assert batch._write_cause(LibsndfileError("System error."), tmp_path / "a.wav") == "System error."


def test_record_to_dict_is_asdict_without_nones_and_a_copy():
    """to_dict is dataclasses.asdict (without the Nones) made flat-fast: the same dict, and the
    report's dicts are copies, so a later change of the record does not reach a report built."""
    from dataclasses import asdict

    from emort.runtime.batch import EnhanceRecord, ScoreRecord

    for r in (ScoreRecord("a.flac", "scored", prediction="sad", scores={"sad": 0.9, "angry": 0.1}, method="single-clip", duration_s=2.0),
              EnhanceRecord("b.wav", "written", output="o.wav", scores_before={"sad": 0.5}, scores_after={"sad": 0.7}, change_db=0.5)):
        d = r.to_dict()
        assert d == {k: v for k, v in asdict(r).items() if v is not None}
        next(v for v in d.values() if isinstance(v, dict))["sad"] = -1.0
        assert -1.0 not in [x for v in asdict(r).values() if isinstance(v, dict) for x in v.values()]


def test_a_line_break_in_a_file_name_keeps_the_whole_cause_on_one_line(tmp_path):
    """The message was cut at its first line break, inside the path: the cause was lost."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "sil\nent.wav", np.zeros(8000, np.float32), 16000)
    (rec,) = run(FakeEnhancer(), [src], tmp_path / "out")
    assert rec.status == "failed" and "\n" not in rec.error
    assert rec.error.startswith(str(src / "sil\\nent.wav")) and "silent" in rec.error


class IdentityEnhancer(FakeEnhancer):
    def enhance(self, wav, sample_rate, emotion, options=None, vocoder="gain", score_output=False):
        res = super().enhance(wav, sample_rate, emotion, options, vocoder, score_output)
        return replace(res, wav=np.asarray(wav, np.float32))  # the input, unchanged (as at --amount 0)


def test_an_input_above_full_scale_is_noted_where_the_16_bit_output_clips_it(tmp_path):
    src = tmp_path / "in"
    x = tone()
    write(src / "ok.wav")
    sf.write(src / "over.wav", 4 * x, 16000, subtype="FLOAT")  # peak 1.8: a float file can hold it
    r = by_path(run(IdentityEnhancer(), [src], tmp_path / "out"))
    assert r["ok.wav"].status == "written" and r["ok.wav"].note is None
    assert r["over.wav"].status == "written" and "above full scale" in r["over.wav"].note and "+5.1 dBFS" in r["over.wav"].note


def test_two_runs_into_one_folder_keep_each_others_records(tmp_path):
    """Two runs writing into one output folder at once: each marker was read before the other
    wrote, and the last write dropped the first run's records, so every later run refused those
    outputs (a new user's report). The write merges what the file holds under a lock."""
    from emort.runtime.batch import MARKER_LOCK, OutputMarker

    out = tmp_path / "out"
    out.mkdir()
    src = write(tmp_path / "in" / "a.wav")
    first, second = OutputMarker(out), OutputMarker(out)  # both read an empty folder
    for m, name in ((first, "x.wav"), (second, "y.wav")):
        write(out / name)
        m.record(out / name, src, {"emotion": "angry"})
    first.flush()
    second.flush()
    stored = json.loads((out / MARKER).read_text())["outputs"]
    assert set(stored) == {"x.wav", "y.wav"}
    again = OutputMarker(out)
    assert again.settings_of(out / "x.wav") == {"emotion": "angry"} == again.settings_of(out / "y.wav")
    # a later record of one output wins, whichever process writes last
    write(out / "x.wav", sr=22050)
    second.record(out / "x.wav", src, {"emotion": "sad"})
    second.flush()
    first.flush()
    assert OutputMarker(out).settings_of(out / "x.wav") == {"emotion": "sad"}
    assert (out / MARKER_LOCK).is_file()


def test_markers_recording_at_once_lose_no_record(tmp_path):
    """Two writers of one folder's record at the same time (threads here, processes in use):
    each flush reads what the other wrote under the lock, so every record is kept."""
    import threading

    from emort.runtime.batch import OutputMarker

    out = tmp_path / "out"
    out.mkdir()
    src = write(tmp_path / "in" / "a.wav")
    (out / "o.wav").write_bytes(b"x")
    markers = [OutputMarker(out), OutputMarker(out)]

    def work(m: OutputMarker, tag: str) -> None:
        for i in range(40):
            dst = out / f"{tag}{i}.wav"
            dst.write_bytes(b"x")
            m.record(dst, src, {"emotion": tag})
            m.flush()

    threads = [threading.Thread(target=work, args=(m, t)) for m, t in zip(markers, "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads((out / MARKER).read_text())["outputs"]) == 80


class SlowEnhancer(FakeEnhancer):
    def enhance(self, *a, **kw):
        time.sleep(0.03)  # long enough for the other run to reach the same files
        return super().enhance(*a, **kw)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="claims use Linux open-file-description locks")
def test_two_runs_at_once_do_not_make_the_same_outputs(tmp_path):
    """Two runs into one folder at once both made every output (a new user's report, 0.30): each
    now skips what the other is making (``in-progress``) or has recorded (``done``)."""
    import threading

    src = tmp_path / "in"
    for i in range(12):
        write(src / f"c{i:02d}.wav")
    out = tmp_path / "out"
    results: dict[str, list] = {}

    def go(tag: str) -> None:
        results[tag] = run(SlowEnhancer(), [src], out)

    threads = [threading.Thread(target=go, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = [Path(r.output).name for recs in results.values() for r in recs if r.status == "written"]
    assert sorted(written) == [f"c{i:02d}.wav" for i in range(12)]  # each made once, by one of the runs
    others = [r for recs in results.values() for r in recs if r.status != "written"]
    # what the other run was making is decided once it is recorded: done (the same settings), never left open
    assert others and {(r.status, r.reason) for r in others} == {("skipped", "done")}
    assert all(exit_status(summarize(recs)) == 0 for recs in results.values())
    again = run(FakeEnhancer(), [src], out)  # and every output is recorded: a third run takes all as done
    assert {(r.status, r.reason) for r in again} == {("skipped", "done")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="claims use Linux open-file-description locks")
def test_an_output_another_run_holds_is_skipped_and_made_once_it_is_free(tmp_path, monkeypatch):
    from emort.runtime.atomic import Claims
    from emort.runtime.batch import MARKER_LOCK

    monkeypatch.setattr(batch, "CLAIM_WAIT_S", 0.3)  # the other run never lets go here

    src = tmp_path / "in"
    write(src / "a.wav")
    write(src / "b.wav")
    out = tmp_path / "out"
    other = Claims(out / MARKER_LOCK)  # another run, making a.wav
    assert other.take("a.wav")
    r = by_path(run(FakeEnhancer(), [src], out, overwrite=True))
    # failed, not skipped: whose settings it will have is not known, so the exit status says so
    assert (r["a.wav"].status, r["a.wav"].reason) == ("failed", "in-progress") and str(out / "a.wav") in r["a.wav"].error
    assert r["b.wav"].status == "written" and not (out / "a.wav").exists()
    assert summarize(r.values())["failed"] == {"in-progress": 1} and exit_status(summarize(r.values())) == 1
    other.release("a.wav")
    r = by_path(run(FakeEnhancer(), [src], out))
    assert r["a.wav"].status == "written" and r["b.wav"].reason == "done"
    other.close()


def test_a_claim_is_given_up_once_the_record_is_written(tmp_path):
    """Given up before its record reached the file, another run would find the output there with
    no record and refuse it as made by something else."""
    from emort.runtime.atomic import Claims
    from emort.runtime.batch import MARKER_LOCK, OutputMarker

    out = tmp_path / "out"
    src = write(tmp_path / "in" / "a.wav")
    claims = Claims(out / MARKER_LOCK)
    m = OutputMarker(out)
    m.claims = claims
    assert claims.take("x.wav")
    write(out / "x.wav")
    m._write_cost = 1e9  # as when writing the record is slow: kept in memory for now
    m._last_write = time.monotonic()
    m.record(out / "x.wav", src, {"emotion": "angry"})
    assert "x.wav" in claims._held
    m.close()
    assert "x.wav" not in claims._held and OutputMarker(out).settings_of(out / "x.wav") == {"emotion": "angry"}
    claims.close()


def test_a_record_from_a_newer_emort_or_a_folder_in_its_place_is_refused_in_one_line(tmp_path):
    """A newer record was rewritten as this version's, its records lost; a folder named like the
    record blamed the output folder (a new user's report)."""
    src = write(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": "emort-output", "format_version": 99, "emort_version": "9.0", "outputs": {}}))
    with pytest.raises(EmortError, match=r"written by a newer emort \(9\.0, record format 99; this one reads 1\)"):
        run(FakeEnhancer(), [src], out)
    assert json.loads((out / MARKER).read_text())["format_version"] == 99  # left as it was
    other = tmp_path / "out2"
    (other / MARKER).mkdir(parents=True)
    with pytest.raises(EmortError, match=r"\.emort-output\.json: not a file"):
        run(FakeEnhancer(), [src], other)


def test_a_file_reached_twice_is_taken_once_and_the_other_path_is_counted(tmp_path):
    src = tmp_path / "in"
    real = write(src / "sub" / "real.wav")
    (src / "alias.wav").symlink_to(Path("sub") / "real.wav")
    jobs, records = discover([src, real])
    assert [j.rel.as_posix() for j in jobs] == ["sub/real.wav"]  # the file itself, not the link that sorted first
    dup = [r for r in records if r.reason == "duplicate"]
    assert sorted(Path(r.path).name for r in dup) == ["alias.wav", "real.wav"]  # the link, and the file named again
    assert all(r.status == "skipped" and "the same file as" in r.note and "sub/real.wav" in r.note for r in dup)
    assert summarize(records)["skipped"] == {"duplicate": 2}


def test_an_input_above_full_scale_is_noted_where_the_edit_limits_it(tmp_path):
    """The edit's output is limited to full scale: its level moved without a word (a new user's report)."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "over.wav", 4 * tone(), 16000, subtype="FLOAT")

    class Limiting(FakeEnhancer):
        def enhance(self, wav, sample_rate, emotion, options=None, vocoder="gain", score_output=False):
            res = super().enhance(wav, sample_rate, emotion, options, vocoder, score_output)
            return replace(res, wav=np.clip(np.asarray(wav, np.float32), -0.999, 0.999))

    (r,) = run(Limiting(), [src], tmp_path / "out")
    assert r.status == "written" and "+5.1 dBFS, above full scale; the output is limited" in r.note



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="claims use Linux open-file-description locks")
def test_two_runs_at_once_with_other_settings_each_refuse_the_others_outputs(tmp_path):
    """A run that skipped what the other was making exited 0, though those files then held the other
    run's settings (a new user's report): each waits for the other's record, then refuses them."""
    import threading

    src = tmp_path / "in"
    for i in range(10):
        write(src / f"c{i:02d}.wav")
    out = tmp_path / "out"
    results: dict = {}

    def go(tag: str, amount: float) -> None:
        results[tag] = run(SlowEnhancer(), [src], out, options=EditOptions(amount_db=amount))

    threads = [threading.Thread(target=go, args=a) for a in (("a", 0.5), ("b", 2.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = {tag: {Path(r.output).name for r in recs if r.status == "written"} for tag, recs in results.items()}
    assert not written["a"] & written["b"] and len(written["a"] | written["b"]) == 10
    for tag, recs in results.items():
        refused = {Path(r.output).name for r in recs if r.reason == "other-settings"}
        assert refused == {f"c{i:02d}.wav" for i in range(10)} - written[tag]  # every file: made by this run, or refused
        assert exit_status(summarize(recs)) == (0 if not refused else 1)


def test_a_folder_another_run_made_after_this_one_started_is_read_for_its_record(tmp_path, monkeypatch):
    """The output folder did not exist when this run started; the other run made and recorded the
    output while this one waited: read as done, not refused as unrecorded (a review)."""
    from emort.runtime.atomic import Claims

    src = write(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    first = [True]

    class Racing(Claims):
        def take(self, name, wait_s=0.0):
            if first[0]:  # the other run makes a.wav between this run's start and its claim
                first[0] = False
                monkeypatch.setattr(batch, "Claims", Claims)
                assert [r.status for r in run(FakeEnhancer(), [src], out)] == ["written"]
                return False
            return super().take(name, wait_s)

    monkeypatch.setattr(batch, "Claims", Racing)
    (r,) = run(FakeEnhancer(), [src], out)
    assert (r.status, r.reason) == ("skipped", "done"), r.error


def test_a_recorded_mix_of_three_keeps_its_weights_when_put_in_label_order():
    """0.30 kept a mix in its user's order; parsed again, a three-way mix's rounded weights were
    renormalised (fear 0.75 -> 0.76) and the output refused (a review)."""
    old = "angry:0.12,sad:0.12,fear:0.75"
    assert batch._canonical_target(old, EMOTIONS) == "sad:0.12,angry:0.12,fear:0.75"
    assert batch._canonical_target("angry", EMOTIONS) == "angry" and batch._canonical_target("x:1,y:2", EMOTIONS) == "x:1,y:2"


def test_records_of_a_sharded_run_into_the_folder_are_read_when_refreshing(tmp_path):
    from emort.runtime.batch import OutputMarker, Shard

    out = tmp_path / "out"
    src = write(tmp_path / "in" / "a.wav")
    mine = OutputMarker(out)  # an unsharded run, reading an empty folder
    sharded = OutputMarker(out, Shard.parse("1/2"))
    write(out / "x.wav")
    sharded.record(out / "x.wav", src, {"emotion": "angry"})
    sharded.flush()
    assert mine.settings_of(out / "x.wav") is None
    mine.refresh()
    assert mine.settings_of(out / "x.wav") == {"emotion": "angry"}


def test_the_file_itself_is_taken_over_a_link_to_it_that_sorts_first(tmp_path):
    src = tmp_path / "in"
    write(src / "zz.wav")
    (src / "aa.wav").symlink_to("zz.wav")
    jobs, records = discover([src])
    assert [j.path.name for j in jobs] == ["zz.wav"]
    assert [(Path(r.path).name, r.reason) for r in records] == [("aa.wav", "duplicate")] and "the same file as" in records[0].note


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="claims use Linux open-file-description locks")
def test_the_wait_for_another_runs_outputs_is_one_budget_for_all_of_them(tmp_path, monkeypatch):
    from emort.runtime.atomic import Claims
    from emort.runtime.batch import MARKER_LOCK

    monkeypatch.setattr(batch, "CLAIM_WAIT_S", 0.5)
    src = tmp_path / "in"
    for i in range(6):
        write(src / f"c{i}.wav")
    out = tmp_path / "out"
    other = Claims(out / MARKER_LOCK)  # a stopped run holding every output
    assert all(other.take(f"c{i}.wav") for i in range(6))
    t0 = time.monotonic()
    recs = run(FakeEnhancer(), [src], out)
    assert time.monotonic() - t0 < 2.0  # not 6 x 0.5 s
    assert {(r.status, r.reason) for r in recs} == {("failed", "in-progress")}
    other.close()
