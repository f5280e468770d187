"""The batch layer's output naming and scale-out: ``--out file.wav`` with one input (atomic, resumable,
not taken as input later), files named from different folders with one name mirrored instead of
refused, ``Shard`` splits that together do exactly one unsharded run (same bytes, same merged report),
``merge_reports``' refusals, and a ``compute`` that runs the edits elsewhere. A fake enhancer stands
in for the models."""

from __future__ import annotations

import filecmp
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emort.runtime import batch
from emort.runtime.batch import (
    MARKER,
    MARKER_LOCK,
    Shard,
    discover,
    enhance_files,
    merge_reports,
    plan_outputs,
    summarize,
)
from emort.runtime.editing import EditOptions
from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS


def write(path: Path, seed: int = 0, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.3 * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * (150 + 7 * seed) * t)).astype(np.float32), sr)
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
    scores_before: dict
    scores_after: dict | None
    change_db: float
    guidance: float
    seconds: float


class FakeEnhancer:
    """A deterministic edit that depends on the clip (so outputs differ per input): scales by 0.5 + mean |x|."""

    bundle = FakeBundle()

    def __init__(self):
        self.calls: list[int] = []

    def enhance(self, wav, sample_rate, emotion, options=None, vocoder="gain", score_output=False):
        self.calls.append(len(wav))
        scores = {**dict.fromkeys(EMOTIONS, 0.1), "angry": 0.5}
        return FakeResult(wav * (0.5 + float(np.abs(wav).mean())), sample_rate, emotion, dict.fromkeys(EMOTIONS, 1 / 6),
                          scores if score_output else None, 2.0, 7.5, 0.01)


def run(paths, out, emotion="angry", enh=None, **kw) -> list:
    return list(enhance_files(enh or FakeEnhancer(), [str(p) for p in paths], out, emotion, EditOptions(), **kw))


def report(records, shard: Shard | None = None, out: Path | None = None) -> dict:
    """The report as ``emort enhance --json`` writes it (the fields merge_reports reads)."""
    rep = {"emort_version": "x", "command": "enhance", "complete": True, "bundle": {"hash": FakeBundle.content_hash, "path": "/b"},
           "settings": {"emotion": "angry", "options": EditOptions().to_dict(), "vocoder": "gain", "device": "cpu", "out": str(out)},
           "summary": summarize(records, "angry"), "results": [r.to_dict() for r in records]}
    if shard is not None:
        rep["shard"] = shard.to_dict()
    return json.loads(json.dumps(rep))


def untimed(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results]


# --- one output file ---------------------------------------------------------------------------


def test_out_naming_a_wav_file_writes_that_file_and_resumes_as_a_folder_does(tmp_path):
    src = write(tmp_path / "one.wav")
    out = tmp_path / "result.wav"
    (rec,) = run([src], out)
    assert rec.status == "written" and rec.output == str(out)
    assert out.is_file() and sf.info(out).subtype == "PCM_16"  # a file, not a folder result.wav/
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, MARKER_LOCK, "one.wav", "result.wav"]  # no temp litter
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["scope"] == "files" and set(marker["outputs"]) == {"result.wav"}
    before = out.read_bytes()
    enh = FakeEnhancer()
    assert [(r.status, r.reason) for r in run([src], out, enh=enh)] == [("skipped", "done")] and not enh.calls
    (rec,) = run([src], out, "sad", enh=enh)
    assert (rec.status, rec.reason) == ("failed", "other-settings") and "emotion angry -> sad" in rec.error and not enh.calls
    assert out.read_bytes() == before
    assert run([src], out, "sad", overwrite=True)[0].status == "written"
    # A file emort did not make is not replaced.
    mine = tmp_path / "mine.wav"
    mine.write_bytes(b"my recording")
    (rec,) = run([src], mine)
    assert rec.reason == "unrecorded" and "no record of its settings" in rec.error and mine.read_bytes() == b"my recording"
    # The output is the input: refused.
    (rec,) = run([src], src)
    assert rec.reason == "collision" and "overwrite an input" in rec.error


def test_out_file_is_refused_in_one_line_unless_one_input_file_and_wav(tmp_path):
    a, b = write(tmp_path / "in" / "a.wav"), write(tmp_path / "in" / "b.wav", 1)
    cases = {((a, b), "x.wav"): "2 inputs were given", ((tmp_path / "in",), "x.wav"): "is a folder",
             ((a,), "x.flac"): "writes WAV", ((a,), "x.mp3"): "writes WAV", ((a, b), "x.m4a"): "writes WAV"}
    for (paths, name), why in cases.items():
        with pytest.raises(EmortError, match=why) as e:
            run(paths, tmp_path / name)
        assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value)
    assert not list(tmp_path.glob("x*"))
    # An existing folder with an audio extension (what earlier versions made) stays a folder.
    (tmp_path / "old.wav").mkdir()
    assert not batch.output_is_file(tmp_path / "old.wav")
    assert run([tmp_path / "in"], tmp_path / "old.wav")[0].output == str(tmp_path / "old.wav" / "a.wav")


def test_single_outputs_beside_inputs_are_not_taken_later_but_their_folder_is(tmp_path):
    src = tmp_path / "clips"
    write(src / "a.wav")
    write(src / "sub" / "b.wav", 1)
    run([src / "a.wav"], src / "a_angry.wav")
    run([src / "sub" / "b.wav"], src / "sub" / "b_angry.wav")
    for arg in (src, tmp_path):  # the folder as an argument, and found inside one
        jobs, records = discover([arg], skip_output_trees=True)
        assert sorted(j.path.name for j in jobs) == ["a.wav", "b.wav"]
        skipped = sorted(Path(r.path).name for r in records if r.reason == "emort-output")
        assert skipped == ["a_angry.wav", "b_angry.wav"] and all("not taken (name it to take it)" in r.note for r in records if r.note)
    jobs, _ = discover([src])  # scoring takes them
    assert len(jobs) == 4
    # A folder-run into a folder that holds its inputs records files too (0.23; it used to mark the
    # folder whole, which hid the originals beside the outputs from every later run).
    run([tmp_path / "clips" / "sub"], src)  # clips/sub/b.wav -> clips/b.wav
    jobs, records = discover([tmp_path], skip_output_trees=True)
    assert sorted(j.path.relative_to(src).as_posix() for j in jobs) == ["a.wav", "sub/b.wav"]
    assert sorted(Path(r.path).relative_to(src).as_posix() for r in records if r.reason == "emort-output") == [
        "a_angry.wav", "b.wav", "sub/b_angry.wav"]
    # A folder-run into a folder of its own is an output folder: skipped whole inside an input tree.
    run([tmp_path / "clips" / "sub"], tmp_path / "clips" / "out")
    jobs, records = discover([tmp_path], skip_output_trees=True)
    assert ("out", "emort-output") in [(Path(r.path).name, r.reason) for r in records]


# --- files named directly ----------------------------------------------------------------------


def test_files_named_from_different_folders_with_one_name_keep_their_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spk in ("spk1", "spk2"):
        write(Path(spk) / "angry" / "001.wav", seed=int(spk[-1]))
    write(Path("spk1") / "angry" / "002.wav", seed=9)
    write(Path("spk2") / "angry" / "003.wav", seed=8)
    recs = run(["spk1/angry/001.wav", "spk2/angry/001.wav", "spk1/angry/002.wav"], "out")
    assert [(r.status, r.output) for r in recs] == [("written", "out/spk1/angry/001.wav"), ("written", "out/spk2/angry/001.wav"),
                                                    ("written", "out/spk1/angry/002.wav")]
    assert filecmp.cmp("out/spk1/angry/001.wav", "out/spk2/angry/001.wav", shallow=False) is False
    # Without a clash, files named directly keep their names (as before); a clash in one folder is still refused.
    jobs, _ = discover(["spk1/angry/001.wav", "spk2/angry/003.wav"])
    planned, errors = plan_outputs(jobs, Path("flat"))
    assert [d.as_posix() for _, d in planned] == ["flat/001.wav", "flat/003.wav"] and not errors
    write(Path("spk1") / "angry" / "001.flac")
    jobs, _ = discover(["spk1/angry/001.wav", "spk1/angry/001.flac"])
    planned, errors = plan_outputs(jobs, Path("o"))
    assert not planned and len(errors) == 2 and all("several inputs" in e.error for e in errors)


# --- shards ------------------------------------------------------------------------------------


def corpus(root: Path) -> Path:
    for k in range(9):
        write(root / f"s{k % 3}" / f"c{k}.wav", seed=k)
    (root / "notes.txt").write_text("x")
    (root / "phone.m4a").write_bytes(b"x")
    return root


def test_shards_together_do_exactly_one_unsharded_run(tmp_path):
    src = corpus(tmp_path / "in")
    full = run([src, tmp_path / "missing"], tmp_path / "full")
    parts, reports, done = [], [], []
    for k in (1, 2, 3):
        enh, shard = FakeEnhancer(), Shard(k, 3)
        recs = run([src, tmp_path / "missing"], tmp_path / "sharded", enh=enh, shard=shard)
        parts.append(recs)
        reports.append((f"shard{k}.json", report(recs, shard, tmp_path / "sharded")))
        done += [r.path for r in recs if r.status == "written"]
        assert shard.found == 9 and shard.taken == len(enh.calls)
        assert all(r.index is not None for r in recs)
    assert sorted(done) == sorted(r.path for r in full if r.status == "written") and len(done) == 9  # each file once
    assert all(0 < len([r for r in p if r.status == "written"]) < 9 for p in parts)
    assert [r.reason for r in parts[0] if r.status != "written"] == [r.reason for r in full if r.status != "written"]
    assert all(r.status == "written" for p in parts[1:] for r in p)  # shard 1 reports the paths not taken
    outputs = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*.wav"))
    assert outputs == sorted(p.relative_to(tmp_path / "sharded") for p in (tmp_path / "sharded").rglob("*.wav"))
    assert all(filecmp.cmp(tmp_path / "full" / p, tmp_path / "sharded" / p, shallow=False) for p in outputs)
    # The merged report is the unsharded one, whatever order the shard reports come in.
    merged = merge_reports(reports[::-1])
    for r in full:  # as if the unsharded run had written to the shards' folder
        r.output = r.output and r.output.replace(str(tmp_path / "full"), str(tmp_path / "sharded"))
    unsharded = report(full, out=tmp_path / "sharded")
    assert untimed(merged["results"]) == untimed(unsharded["results"]) and merged["summary"] == unsharded["summary"]
    assert merged["complete"] and [s["index"] for s in merged["shards"]] == [1, 2, 3] and "shard" not in merged
    # Each shard kept its own marker; together they resume an unsharded run, and the folder is an output folder.
    assert sorted(p.name for p in (tmp_path / "sharded").glob(".emort-output*")) == [
        MARKER, MARKER_LOCK, ".emort-output.shard-1-of-3.json", ".emort-output.shard-2-of-3.json", ".emort-output.shard-3-of-3.json"]
    enh = FakeEnhancer()
    assert {r.reason for r in run([src], tmp_path / "sharded", enh=enh) if r.status == "skipped"} >= {"done"} and not enh.calls
    jobs, records = discover([tmp_path], skip_output_trees=True)
    assert {Path(r.path).name for r in records if r.reason == "emort-output"} == {"full", "sharded"}


def test_the_split_depends_only_on_each_files_path_below_its_argument(tmp_path):
    a = corpus(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    write(b / "s1" / "new.wav", seed=20)  # a file added on one machine moves no other file

    def split(root: Path, k: int) -> set[str]:
        return {Path(r.output).relative_to(tmp_path / f"o{root.name}{k}").as_posix()
                for r in run([root], tmp_path / f"o{root.name}{k}", shard=Shard(k, 4)) if r.output}

    for k in (1, 2, 3, 4):
        assert split(a, k) == split(b, k) - {"s1/new.wav"}


def test_shard_parse_and_an_empty_shard_exits_ok(tmp_path):
    assert (Shard.parse("3/8").index, Shard.parse(" 3 / 8 ").count) == (3, 8) and str(Shard(1, 1)) == "1/1"
    for bad in ("0/4", "5/4", "3", "a/b", "-1/4", "1/0"):
        with pytest.raises(EmortError, match="expected K/N") as e:
            Shard.parse(bad)
        assert "\n" not in str(e.value)
    write(tmp_path / "in" / "a.wav")
    empty = next(Shard(k, 8) for k in range(1, 9) if not Shard(k, 8).holds("a.wav"))
    recs = run([tmp_path / "in"], tmp_path / "out", shard=empty)
    assert recs == [] and (empty.found, empty.taken) == (1, 0)
    assert batch.exit_status(summarize(recs), empty) == batch.EXIT_OK
    assert batch.exit_status(summarize([]), Shard(1, 2)) == batch.EXIT_NOTHING  # no audio at all


def test_merge_refuses_other_settings_bundles_splits_and_overlaps(tmp_path):
    src = corpus(tmp_path / "in")
    reps = [(f"s{k}.json", report(run([src], tmp_path / "o", shard=Shard(k, 2)), Shard(k, 2), tmp_path / "o")) for k in (1, 2)]
    assert merge_reports(reps)["complete"]
    part = merge_reports(reps[:1])
    assert not part["complete"] and part["missing_shards"] == [2]

    def refused(*pairs, match: str) -> None:
        with pytest.raises(EmortError, match=match) as e:
            merge_reports(list(pairs))
        assert "\n" not in str(e.value)

    other = json.loads(json.dumps(reps[1][1]))
    other["settings"]["options"]["amount_db"] = 3.0
    refused(reps[0], ("s2.json", other), match=r"s2.json: settings.options.amount_db")
    other = json.loads(json.dumps(reps[1][1]))
    other["bundle"]["hash"] = "feedfacefeedface"
    refused(reps[0], ("s2.json", other), match=r"s2.json: bundle")
    other = json.loads(json.dumps(reps[1][1]))
    other["settings"]["device"], other["bundle"]["path"] = "cuda", "/elsewhere"  # may differ: merged
    assert merge_reports([reps[0], ("s2.json", other)])["settings"]["device"] == ["cpu", "cuda"]
    refused(reps[0], reps[0], match="s1.json: shard 1/2 is s1.json again")
    third = report(run([src], tmp_path / "o3", shard=Shard(2, 3)), Shard(2, 3), tmp_path / "o")
    refused(reps[0], ("t.json", third), match="another split")
    overlap = json.loads(json.dumps(reps[1][1]))
    overlap["results"].append(reps[0][1]["results"][-1])
    refused(reps[0], ("s2.json", overlap), match="is also in s1.json")
    refused(("x.json", {"results": []}), match="not a JSON report")


# --- compute elsewhere -------------------------------------------------------------------------


def test_a_compute_that_reads_ahead_gives_the_same_outputs_and_records(tmp_path):
    """What --ray relies on: edits computed out of the loop (here: all read ahead first), the records,
    outputs and marker still made in order by the batch layer."""
    src = corpus(tmp_path / "in")
    (src / "s0" / "broken.wav").write_bytes(b"RIFF nope")
    enh = FakeEnhancer()
    seen: list[str] = []

    def greedy(requests):
        reqs = list(requests)  # reads every request before computing any
        seen.extend(r.path for r in reqs if r is not None)
        for r in reqs:
            yield None if r is None else r.run(enh)

    local = run([src], tmp_path / "local")
    remote = run([src], tmp_path / "remote", compute=greedy)
    assert len(seen) == 9 and len(enh.calls) == 9
    strip = lambda rs: [{k: v for k, v in r.to_dict().items() if k != "output"} for r in rs]  # noqa: E731
    assert strip(local) == strip(remote)
    for p in (tmp_path / "local").rglob("*.wav"):
        assert filecmp.cmp(p, tmp_path / "remote" / p.relative_to(tmp_path / "local"), shallow=False)
    assert set(json.loads((tmp_path / "remote" / MARKER).read_text())["outputs"]) == {
        p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*.wav")}
