"""`emort augment`: classic chains, emort edits, the manifest, resume and the held-out speakers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tiny import write_manifest_csv  # tests/tiny.py: the test helpers

from emort.runtime.errors import EmortError
from emort.training import corpora
from emort.training.augment_data import EMORT_SETTINGS, AugmentConfig

LETTERS = {"W": "angry", "T": "sad", "N": "neutral"}


def _csv(shared_data: Path, out: Path, speakers=("03", "09"), per_emotion: int = 2) -> Path:
    """A corpus named ``emodb`` (the CSV's stem): speaker 03 is a project test speaker."""
    rows, counts = [], {}
    for p in sorted((shared_data / "emodb" / "wav").glob("*.flac")):
        spk, e = p.stem[:2], LETTERS.get(p.stem[5])
        if spk in speakers and e and counts.get((spk, e), 0) < per_emotion:
            counts[(spk, e)] = counts.get((spk, e), 0) + 1
            rows.append((str(p.resolve()), e, spk))
    return write_manifest_csv(out / "emodb.csv", rows)


def test_classic_chain_is_reproducible_same_length_and_changes_the_audio():
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    from emort.training.augment_data import classic_chain

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    outs = {}
    for seed in (1, 1, 2, 3, 4, 5):
        desc, apply = classic_chain(seed, 16000)
        y = apply(x)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 0.99 + 1e-6
        assert not np.allclose(y, x)  # the level step alone always changes it
        outs.setdefault(seed, []).append((desc, y))
    (d1, y1), (d2, y2) = outs[1]
    assert d1 == d2 and np.array_equal(y1, y2)  # the same seed, the same copy
    assert len({d for v in outs.values() for d, _ in v}) > 1  # chains differ between seeds


def test_classic_augment_writes_manifest_skips_test_speakers_and_resumes(shared_data: Path, tmp_path: Path):
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    from emort.training.augment_data import AugmentConfig, augment

    data = [f"csv={_csv(shared_data, tmp_path)}"]
    out = tmp_path / "aug"
    cfg = AugmentConfig(data=data, out=str(out), kind="classic", copies=2)
    res = augment(cfg)
    assert res["sources"] == 6 and res["left_out"]["test speakers"] == 6  # speaker 03 never augmented
    assert res["left_out"]["other emotions"] == 0
    items = corpora.read_specs([f"csv={out / 'manifest.csv'}"])
    assert len(items) == 12 and {i.speaker for i in items} == {"emodb/09+classic"}
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert all(Path(r["source"]).name[:2] == "09" and r["kind"] == "classic" for r in rows)
    for it in items:  # labels follow the source
        src = next(r["source"] for r in rows if (out / r["path"]).resolve() == Path(it.path).resolve())
        assert LETTERS[Path(src).stem[5]] == it.emotion
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    seen: list = []
    augment(cfg, on_record=seen.append)  # a rerun keeps every output
    assert {r["status"] for r in seen} == {"done"} and {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes
    assert len(list(csv.DictReader(open(out / "manifest.csv")))) == 12
    with pytest.raises(EmortError, match="other settings"):
        augment(AugmentConfig(data=data, out=str(out), kind="classic", seed=1))


def test_classic_copies_of_two_sources_of_one_name_are_refused_before_anything_is_written(shared_data: Path, tmp_path: Path):
    """Classic copies are named by their source's file name; two sources of one name (the same clip
    in two speaker folders) are refused naming both, before --out gets a manifest (a new user found
    the refusal unnamed and an empty manifest.csv left behind)."""
    from emort.training.augment_data import AugmentConfig, augment

    clip = next((shared_data / "emodb" / "wav").glob("09*.flac"))
    rows = [(str(clip.resolve()), "neutral", "09")]
    twin = tmp_path / "twin" / clip.name
    twin.parent.mkdir()
    twin.write_bytes(clip.read_bytes())
    rows.append((str(twin.resolve()), "neutral", "11"))
    src = write_manifest_csv(tmp_path / "emodb.csv", rows)
    out = tmp_path / "aug"
    with pytest.raises(EmortError, match=f"share a file name .*{clip.name}.* and .*twin"):
        augment(AugmentConfig(data=[f"csv={src}"], out=str(out), kind="classic"))
    assert not out.exists()


def test_emort_augment_labels_edits_with_their_target(tiny, shared_data: Path, tmp_path: Path):
    from emort.training.augment_data import AugmentConfig, augment

    data = [f"csv={_csv(shared_data, tmp_path, speakers=('09',), per_emotion=1)}"]
    out = tmp_path / "aug"
    res = augment(AugmentConfig(data=data, out=str(out), kind="emort", targets="angry,sad", bundle=str(tiny["bundle"])))
    assert res["rows"] == 6  # 3 clips x 2 targets
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert sorted(r["emotion"] for r in rows) == ["angry"] * 3 + ["sad"] * 3
    assert all(r["path"].startswith(r["emotion"] + "/") and (out / r["path"]).is_file() for r in rows)
    # Own targets are labelled as the source.
    res = augment(AugmentConfig(data=data, out=str(tmp_path / "own"), kind="emort", bundle=str(tiny["bundle"])))
    own = list(csv.DictReader(open(tmp_path / "own" / "manifest.csv")))
    assert all(LETTERS[Path(r["source"]).stem[5]] == r["emotion"] and r["target"] == "own" for r in own)
    # A rerun resumes: every output is kept (the batch layer's "done"), the manifest is unchanged.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    seen: list = []
    augment(AugmentConfig(data=data, out=str(out), kind="emort", targets="angry,sad", bundle=str(tiny["bundle"])), on_record=seen.append)
    assert {r.reason for r in seen} == {"done"} and {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes
    assert list(csv.DictReader(open(out / "manifest.csv"))) == rows
    with pytest.raises(EmortError, match="unknown emotion"):
        augment(AugmentConfig(data=data, out=str(out), kind="emort", targets="angry,bored", bundle=str(tiny["bundle"])))
    # Other settings into the same folder: one line up front, nothing rewritten.
    with pytest.raises(EmortError, match="made with other settings"):
        augment(AugmentConfig(data=data, out=str(out), kind="emort", targets="angry,sad", seed=1, bundle=str(tiny["bundle"])))
    other = "mean" if json.loads((out / EMORT_SETTINGS).read_text())["options"]["contrast"] == "uncond" else "uncond"
    with pytest.raises(EmortError, match="made with other settings"):  # another direction is another edit
        augment(AugmentConfig(data=data, out=str(out), kind="emort", targets="angry,sad", contrast=other, bundle=str(tiny["bundle"])))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes
    assert "prosody_contrast" not in json.loads((out / EMORT_SETTINGS).read_text())["options"]  # a no-op here: not in the key
    # emort 0.21's key had no part (only the full edit existed): its folders still resume
    assert "part" not in json.loads((out / EMORT_SETTINGS).read_text())["options"]
    with pytest.raises(EmortError, match="--contrast"):
        augment(AugmentConfig(data=data, out=str(tmp_path / "c"), kind="classic", contrast="mean"))


def test_classic_augment_names_a_failing_clip_goes_on_and_lists_what_it_wrote(shared_data: Path, tmp_path: Path):
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    import soundfile as sf

    from emort.training.augment_data import AugmentConfig, augment

    src = _csv(shared_data, tmp_path, speakers=("09",), per_emotion=1)
    short = tmp_path / "short.wav"
    sf.write(short, (0.1 * np.random.default_rng(0).standard_normal(400)).astype(np.float32), 16000)  # 25 ms: too short for MP3
    with open(src, "a", newline="") as f:
        csv.writer(f).writerow([str(short), "sad", "09"])
    out = tmp_path / "aug"
    seen: list = []
    for seed in range(8):  # some chain draws MP3 for the short clip
        seen.clear()
        res = augment(AugmentConfig(data=[f"csv={src}"], out=str(out / str(seed)), kind="classic", seed=seed), on_record=seen.append)
        if any(r["status"] == "failed" for r in seen):
            break
    failed = [r for r in seen if r["status"] == "failed"]
    assert failed and "short.wav" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert res["rows"] == 3 and len(list(csv.DictReader(open(out / str(seed) / "manifest.csv")))) == 3  # the three others


def test_classic_overwrite_with_fewer_copies_lists_only_the_new_ones(shared_data: Path, tmp_path: Path):
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    from emort.training.augment_data import AugmentConfig, augment

    data = [f"csv={_csv(shared_data, tmp_path, speakers=('09',), per_emotion=1)}"]
    out = tmp_path / "aug"
    augment(AugmentConfig(data=data, out=str(out), kind="classic", copies=2))
    augment(AugmentConfig(data=data, out=str(out), kind="classic", copies=1, seed=1, overwrite=True))
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 3 and {r["copy"] for r in rows} == {"0"} and all('"seed": 1' in r["settings"] for r in rows)
    with pytest.raises(EmortError, match="--copies applies to --kind classic"):
        augment(AugmentConfig(data=data, out=str(tmp_path / "e"), kind="emort", copies=2))


def test_classic_copies_are_done_only_when_listed_from_the_same_source_and_settings(shared_data: Path, tmp_path: Path):
    """A clip of the same name from another corpus, or an interrupted --overwrite run with another
    seed, is refused (never relabelled as done); another source's rows stay listed."""
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    import shutil

    from emort.training.augment_data import AugmentConfig, augment

    a = [f"csv={_csv(shared_data, tmp_path, speakers=('09',), per_emotion=1)}"]
    out = tmp_path / "aug"
    augment(AugmentConfig(data=a, out=str(out), kind="classic"))
    # the same file names from another folder (another corpus, say): refused, not "done"
    other = tmp_path / "other" / "angry" / "spkx"
    other.mkdir(parents=True)
    rows_a = list(csv.DictReader(open(out / "manifest.csv")))
    for r in rows_a:
        shutil.copy(r["source"], other / Path(r["source"]).name)
    seen: list = []
    augment(AugmentConfig(data=[f"folders={tmp_path / 'other'}"], out=str(out), kind="classic"), on_record=seen.append)
    assert {r["status"] for r in seen} == {"failed"} and all("was made from" in r["error"] for r in seen)
    assert list(csv.DictReader(open(out / "manifest.csv"))) == rows_a  # a's rows, unchanged
    # an interrupted --overwrite run with another seed: the files it did not reach are refused next time
    first = sorted(out.rglob("*.wav"))[0]

    reached: list = []

    def stop_after_one(rec):  # Ctrl-C once the first copy is made
        reached.append(rec)
        if len(reached) > 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        augment(AugmentConfig(data=a, out=str(out), kind="classic", seed=1, overwrite=True), on_record=stop_after_one)
    seen = []
    augment(AugmentConfig(data=a, out=str(out), kind="classic", seed=1), on_record=seen.append)
    assert sorted(r["status"] for r in seen) == ["done", "failed", "failed"], seen
    assert all("other settings" in r["error"] for r in seen if r["status"] == "failed")
    assert first.exists()


def test_a_second_source_keeps_the_first_ones_rows_and_copies_inside_out_are_not_sources(shared_data: Path, tmp_path: Path):
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    import shutil

    from emort.training.augment_data import AugmentConfig, augment

    for name, stems in (("ca", ("09a01Wa", "09a01Na")), ("cb", ("11a01Wc", "11a01Nd"))):
        d = tmp_path / name / "wav"
        d.mkdir(parents=True)
        for s in stems:
            matches = sorted((shared_data / "emodb" / "wav").glob(f"{s[:6]}*.flac"))  # speaker, text, emotion
            shutil.copy(matches[0], d / matches[0].name)
    out = tmp_path / "aug"
    augment(AugmentConfig(data=[f"emodb={tmp_path / 'ca'}"], out=str(out), kind="classic"))
    augment(AugmentConfig(data=[f"emodb={tmp_path / 'cb'}"], out=str(out), kind="classic"))
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 4 and len(list(out.rglob("*.wav"))) == 4  # every file on disk is listed
    # --out inside the corpus: earlier copies are never taken as sources
    inner = tmp_path / "ca" / "aug"
    res = augment(AugmentConfig(data=[f"emodb={tmp_path / 'ca'}"], out=str(inner), kind="classic"))
    again = augment(AugmentConfig(data=[f"emodb={tmp_path / 'ca'}"], out=str(inner), kind="classic"))
    assert res["sources"] == again["sources"] == 2 and again["left_out"]["inside --out"] == 2  # the first run's copies


@pytest.mark.parametrize("bad", [{"amount_db": 30.0}, {"shard": "3/2"}, {"contrast": "median"}])
def test_an_invalid_emort_option_writes_nothing(tmp_path: Path, bad: dict):
    import soundfile as sf

    from emort.training.augment_data import AugmentConfig, augment

    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "09a01Fa.wav", np.zeros(16000, np.float32), 16000)  # EmoDB name, a training speaker
    out = tmp_path / "out"
    with pytest.raises(EmortError):
        augment(AugmentConfig(data=[f"emodb={src}"], out=str(out), kind="emort", **bad))
    assert not out.exists()  # no folder, no empty manifest.csv a later --data would read


def test_a_clashing_corpus_added_later_lists_each_copy_once(tiny, shared_data: Path, tmp_path: Path):
    """A second corpus whose file names clash with the first moves every output below the common
    folder (the batch layer's clash rule): the manifest keeps one row per source and target, not
    the earlier path beside the new one (training data listed twice)."""
    import shutil

    from emort.training.augment_data import AugmentConfig, augment

    clips = sorted((shared_data / "emodb" / "wav").glob("09a0*.flac"))[:2]
    rows = {}
    for name in ("ca", "cb"):
        d = tmp_path / name
        d.mkdir()
        for c in clips:
            shutil.copy(c, d / c.name)  # the same file names in both folders
        rows[name] = write_manifest_csv(tmp_path / f"{name}.csv", [(str(d / c.name), "angry", "09") for c in clips])
    out = tmp_path / "aug"
    cfg = dict(out=str(out), kind="emort", targets="sad", bundle=str(tiny["bundle"]))
    augment(AugmentConfig(data=[f"csv={rows['ca']}"], **cfg))
    augment(AugmentConfig(data=[f"csv={rows['ca']}", f"csv={rows['cb']}"], **cfg))
    listed = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(listed) == 4 and len({(r["source"], r["emotion"]) for r in listed}) == 4, listed
    assert all((out / r["path"]).is_file() for r in listed)


def test_no_sources_left_because_out_holds_the_corpus_says_so(shared_data: Path, tmp_path: Path):
    import shutil

    from emort.training.augment_data import AugmentConfig, source_items

    d = tmp_path / "wrap" / "emo"
    d.mkdir(parents=True)
    clip = sorted((shared_data / "emodb" / "wav").glob("09a0*W*.flac"))[0]
    shutil.copy(clip, d / clip.name)
    data = [f"csv={write_manifest_csv(tmp_path / 'emo.csv', [(str(d / clip.name), 'angry', '09')])}"]
    with pytest.raises(EmortError, match=r"inside --out 1.*give --out a folder outside it"):
        source_items(AugmentConfig(data=data, out=str(tmp_path / "wrap"), kind="classic"))


def test_a_shard_that_holds_no_clips_exits_0(tiny, shared_data: Path, tmp_path: Path):
    """Job arrays: an `emort augment --shard K/N` part that holds none of the clips succeeds (exit
    0, as enhance and score do), and the parts together list every copy once."""
    from typer.testing import CliRunner

    from emort.cli.app import app

    data = f"csv={_csv(shared_data, tmp_path, speakers=('09',), per_emotion=1)}"
    codes = []
    for k in range(1, 9):
        r = CliRunner().invoke(app, ["augment", data, "--out", str(tmp_path / "aug"), "--targets", "sad",
                                     "--bundle", str(tiny["bundle"]), "--shard", f"{k}/8"])
        codes.append(r.exit_code)
    assert set(codes) == {0}, codes
    assert len(list(csv.DictReader(open(tmp_path / "aug" / "manifest.csv")))) == 3


def test_shards_finishing_together_lose_no_manifest_rows(tmp_path: Path):
    """Each shard's read-modify-write of manifest.csv is done under a lock: writers racing (threads
    here, each with its own lock file handle as separate processes have) keep every row."""
    from concurrent.futures import ThreadPoolExecutor

    from emort.training.augment_data import MANIFEST, _write_manifest

    def rows(k: int) -> list[dict]:
        return [{"path": f"sad/{k}_{j}.wav", "emotion": "sad", "speaker": f"x/{k}+emort", "source": f"/src/{k}_{j}.flac",
                 "kind": "emort", "target": "sad", "copy": 0, "settings": "{}"} for j in range(20)]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: _write_manifest(tmp_path / MANIFEST, rows(k)), range(16)))
    listed = list(csv.DictReader(open(tmp_path / MANIFEST)))
    assert len(listed) == 16 * 20 and len({r["path"] for r in listed}) == 320


def test_a_csv_of_corpus_speakers_holds_out_the_split_by_the_voice_behind_the_key(shared_data: Path, tmp_path: Path):
    """A CSV's keys are '<csv stem>/<speaker>': a CSV naming 'emodb/03' (test) and 'emodb/10'
    (validation) holds them out all the same, and copies are named by the source voice."""
    pytest.importorskip("audiomentations", reason="classic augmentation needs the [augment] extra")
    from emort.training.augment_data import AugmentConfig, augment

    rows = []
    for p in sorted((shared_data / "emodb" / "wav").glob("*.flac")):
        if p.stem[:2] in ("03", "10", "09") and p.stem[5] == "W" and sum(r[2] == f"emodb/{p.stem[:2]}" for r in rows) < 1:
            rows.append((str(p.resolve()), "angry", f"emodb/{p.stem[:2]}"))
    assert len(rows) == 3
    data = [f"csv={write_manifest_csv(tmp_path / 'list.csv', rows)}"]
    res = augment(AugmentConfig(data=data, out=str(tmp_path / "aug"), kind="classic"))
    assert res["sources"] == 1 and res["left_out"]["test speakers"] == 1 and res["left_out"]["validation speakers"] == 1
    copies = corpora.read_specs([f"csv={tmp_path / 'aug' / 'manifest.csv'}"])
    assert [i.source_speaker_key for i in copies] == ["emodb/09"]  # held out with emodb/09 when read back
    # augment's own manifest as a source: its validation speaker's copies stay out too
    res = augment(AugmentConfig(data=data, out=str(tmp_path / "val"), kind="classic", include_val=True))
    res = augment(AugmentConfig(data=[f"csv={tmp_path / 'val' / 'manifest.csv'}"], out=str(tmp_path / "again"), kind="classic"))
    assert res["sources"] == 1 and res["left_out"]["validation speakers"] == 1


def test_an_emort_folder_resumes_across_controls_that_cannot_change_a_copy(tiny, shared_data: Path, tmp_path: Path):
    """The marker of emort <= 0.27 recorded every option, the prosody controls too: a bundle whose
    prosody defaults differ still resumes the folder; a real difference is named."""
    from emort.runtime.editing import EditOptions
    from emort.training.augment_data import AugmentConfig, augment

    data = [f"csv={_csv(shared_data, tmp_path, speakers=('09',), per_emotion=1)}"]
    out = tmp_path / "aug"
    cfg = dict(data=data, out=str(out), kind="emort", targets="sad", bundle=str(tiny["bundle"]))
    augment(AugmentConfig(**cfg))
    marker = json.loads((out / EMORT_SETTINGS).read_text())
    old = EditOptions.from_dict(marker["options"]).to_dict()
    old.pop("prosody_contrast")
    old.update(pitch=0.6, prosody_amount_db=5.0)  # controls a no-prosody edit never reads
    (out / EMORT_SETTINGS).write_text(json.dumps({"options": old, "bundle": marker["bundle"]}, sort_keys=True))
    seen: list = []
    augment(AugmentConfig(**cfg), on_record=seen.append)
    assert {r.reason for r in seen} == {"done"}
    with pytest.raises(EmortError, match=r"seed: 0 -> 1"):
        augment(AugmentConfig(**{**cfg, "seed": 1}))


def test_out_naming_a_file_is_one_error_line(tmp_path: Path):
    from emort.training.augment_data import AugmentConfig, augment

    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(EmortError, match="--out .*is a file"):
        augment(AugmentConfig(data=[f"emodb={tmp_path}"], out=str(f), kind="emort"))
    assert f.read_text() == "x"


def test_marker_of_a_newer_emort_is_refused_and_a_plus_in_a_folder_speaker_is_kept():
    from emort.runtime.editing import EditOptions
    from emort.training.augment_data import _marker_differences, _marker_options, _speaker

    new = {"options": _marker_options(EditOptions()), "bundle": "h"}
    assert _marker_differences(json.dumps(new), new, EditOptions) == ""
    newer = {**new, "options": {**new["options"], "future_option": 1}}  # an option this version does not know
    assert "future_option: 1 -> None" in _marker_differences(json.dumps(newer), new, EditOptions)
    item = corpora.Item(path="/x/a.wav", emotion="sad", speaker="anna+bob", corpus="folders")
    assert _speaker(item, "emort") == "folders/anna+bob+emort"  # two voices keep two keys


def test_out_below_a_file_is_one_error_line(tmp_path: Path):
    from emort.training.augment_data import AugmentConfig, augment

    f = tmp_path / "afile"
    f.write_text("x")
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.wav").write_bytes(b"")
    with pytest.raises(EmortError, match="cannot make the folder"):
        augment(AugmentConfig(data=[f"csv={write_manifest_csv(tmp_path / 'l.csv', [(str(d / 'x.wav'), 'sad', '09')])}"],
                              out=str(f / "sub"), kind="classic"))


def test_clips_outside_an_emotion_folder_are_counted_as_left_out(tmp_path):
    import soundfile as sf

    from emort.training.augment_data import source_items
    from emort.training.corpora import folders_not_read

    root = tmp_path / "in"
    for rel in ("angry/s1/a.wav", "sad/s1/b.wav", "weird/c.wav", "top.wav"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, 0.1 * np.sin(np.arange(16000) / 10.0).astype(np.float32), 16000)
    assert folders_not_read(root) == 2
    kept, left = source_items(AugmentConfig(data=[f"folders={root}"], out=str(tmp_path / "aug"), kind="classic"))
    assert len(kept) == 2 and left["not in an emotion folder"] == 2
