"""Per-speaker scoring: the bundle's speaker-normalised SER, its group normalisation, and `emort score --per-speaker`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.audio import read_audio
from emort.runtime.bundle import load_bundle
from emort.runtime.errors import BundleError, EmortError
from emort.runtime.frontend import fit_norm
from emort.runtime.scorer import Scorer

runner = CliRunner()


def test_fit_norm_exact():
    a = np.array([[0.0, 2.0], [1.0, 1.0]], np.float32)
    b = np.array([[4.0], [1.0]], np.float32)
    mean, std = fit_norm([a, b])
    assert np.allclose(mean, [2.0, 1.0]) and np.allclose(std, [np.sqrt(8 / 3), 1e-3])  # constant band: floored std


def test_bundle_ships_the_speaker_scorer(tiny):
    b = load_bundle(tiny["bundle"])
    assert b.has_speaker_scorer
    spec = b.manifest["models"]["ser_speaker"]
    assert spec["norm"] == "speaker" and spec["file"] in b.manifest["files"]
    assert b.manifest["parity"]["ser_speaker"] < 1e-3
    assert b.manifest["training"]["ser_speaker"]["train"]["norm"] == "speaker"


def test_group_scores_ignore_what_is_constant_in_the_speaker(tiny, emodb_files):
    s = Scorer.load(tiny["bundle"], device="cpu", per_speaker=True)
    seen: list[list[np.ndarray]] = []
    score_mels = s.score_mels
    s.score_mels = lambda mels: (seen.append(mels), score_mels(mels))[1]  # what the SER graph is fed
    mels = [s.log_mel(a.samples, a.sample_rate) for a in map(read_audio, emodb_files[:4])]
    base = s.score_group(mels)
    assert len(base) == len(mels) >= 2 and all(abs(sum(x.scores.values()) - 1) < 1e-5 for x in base)
    z = np.concatenate(seen[-1], axis=1)
    assert np.allclose(z.mean(1), 0, atol=1e-4)  # the group is z-scored with its own statistics
    # A level change of the whole group (a constant in log-mel) or a per-band channel
    # colouring is normalised away: the SER sees the same input and gives the same scores.
    tilt = np.linspace(-1.0, 1.0, mels[0].shape[0], dtype=np.float32)[:, None]
    for moved in ([m + 2.0 for m in mels], [m + tilt for m in mels]):
        out = s.score_group(moved)
        for a, b in zip(seen[0], seen[-1]):
            assert np.allclose(a, b, atol=1e-4)
        for x, y in zip(base, out):
            assert max(abs(x.scores[k] - y.scores[k]) for k in x.scores) < 1e-4
    # The company sets the statistics: a clip normalised on its own is fed differently.
    s.score_group(mels[:1])
    assert not np.allclose(seen[-1][0], seen[0][0], atol=1e-2)
    with pytest.raises(EmortError):  # one clip alone cannot be speaker-normalised
        s.score(np.ones(22050, np.float32), 22050)


def test_per_speaker_needs_a_bundle_that_has_it(tiny, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny["bundle"], dst)
    m = json.loads((dst / "manifest.json").read_text())
    del m["models"]["ser_speaker"]
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="no speaker-normalised SER"):
        Scorer.load(dst, device="cpu", per_speaker=True)
    r = runner.invoke(app, ["score", str(tmp_path), "--bundle", str(dst), "--per-speaker"])
    assert r.exit_code != 0 and "no speaker-normalised SER" in r.output


def test_export_refuses_a_global_run_as_speaker_scorer(tiny, tmp_path):
    pytest.importorskip("torch")
    from emort.export.onnx import write_bundle
    from emort.runtime.errors import EmortError

    with pytest.raises(EmortError, match="not trained with --norm speaker"):
        write_bundle(tmp_path / "x", ser_run=tiny["ser"], diffusion_run=tiny["diffusion"], speaker_ser_run=tiny["ser"])


def test_cli_per_speaker_groups_by_folder(tiny, tmp_path, emodb_files, ravdess_files):
    src = tmp_path / "clips"
    for spk, files in (("a", emodb_files[:3]), ("b", ravdess_files[:2])):
        (src / spk).mkdir(parents=True)
        for f in files:
            shutil.copy(f, src / spk / f.name)
    (src / "a" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    rep = tmp_path / "s.json"
    r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--per-speaker", "--json", str(rep)])
    assert r.exit_code == 1  # the broken file fails; the rest are scored
    data = json.loads(rep.read_text())
    assert data["normalisation"].startswith("per speaker")
    scored = [x for x in data["results"] if "scores" in x]
    assert len(scored) == 5 and sum("error" in x for x in data["results"]) == 1
    sizes = {x["speaker_group"]: x["group_size"] for x in scored}
    assert sizes == {str(src / "a"): 3, str(src / "b"): 2}
    assert "only 2 clip(s)" in r.output  # a small group is flagged
    # The CLI matches the API on the same group.
    s = Scorer.load(tiny["bundle"], device="cpu", per_speaker=True)
    b_files = sorted((src / "b").iterdir())
    api = s.score_group([s.log_mel(a.samples, a.sample_rate) for a in map(read_audio, b_files)])
    cli = {x["path"]: x["scores"] for x in scored}
    for f, sc in zip(b_files, api):
        assert max(abs(cli[str(f)][k] - sc.scores[k]) for k in sc.scores) < 1e-6


def test_a_per_speaker_ser_cannot_condition_or_be_the_global_scorer(tiny, tmp_path):
    pytest.importorskip("torch")
    from emort.export.onnx import write_bundle
    from emort.runtime.errors import EmortError
    from emort.training.diffusion import DiffusionTrainConfig, train_diffusion

    with pytest.raises(EmortError, match="pass it as --speaker-ser"):
        write_bundle(tmp_path / "x", ser_run=tiny["ser_speaker"], diffusion_run=tiny["diffusion"])
    with pytest.raises(EmortError, match="per-speaker SER"):
        train_diffusion(DiffusionTrainConfig(data=[f"csv={tiny['manifest']}"], ser=str(tiny["ser_speaker"]), out=str(tmp_path / "d"),
                                             steps=1, progress=False))


def test_a_scoring_failure_is_one_line_per_file_not_a_traceback(tiny, tmp_path, emodb_files, monkeypatch):
    src = tmp_path / "c"
    src.mkdir()
    for f in emodb_files[:2]:
        shutil.copy(f, src / f.name)

    def boom(self, mels):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Scorer, "score_mels", boom)
    rep = tmp_path / "s.json"
    for extra in ([], ["--per-speaker"]):
        r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--json", str(rep), *extra])
        assert r.exit_code == 3 and isinstance(r.exception, SystemExit), r.output  # nothing scored: a clean exit 3, no uncaught error
        res = json.loads(rep.read_text())["results"]
        assert len(res) == 2 and all("out of memory" in x["error"] for x in res)
    assert Scorer.load(tiny["bundle"], device="cpu", per_speaker=True).score_group([]) == []


def test_speaker_groups_by_folder_and_by_pattern(tmp_path, monkeypatch):
    from emort.runtime.batch import Job, speaker_groups
    from emort.runtime.errors import EmortError

    def named(groups):
        return {g.name: [j.path.name for j in g.jobs] for g in groups}

    monkeypatch.chdir(tmp_path)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    jobs = [Job(Path("a/03a01Fa.wav"), Path("03a01Fa.wav")), Job(Path("b/../a/08b02Wb.wav"), Path("08b02Wb.wav")),
            Job(tmp_path / "a" / "03b09Nc.wav", Path("03b09Nc.wav")), Job(Path("b/notes.wav"), Path("notes.wav"))]
    groups, errors = speaker_groups(jobs)
    assert errors == [] and [len(g.jobs) for g in groups] == [3, 1]  # a/, b/../a and /abs/a are one folder
    one_root = [Job(Path("c") / j.path.name, Path(j.path.name)) for j in jobs]  # all found under one argument, c/
    groups, errors = speaker_groups(one_root, r"^(\d\d)")
    assert named(groups) == {"03": ["03a01Fa.wav", "03b09Nc.wav"], "08": ["08b02Wb.wav"]}
    assert len(errors) == 1 and "notes.wav" in errors[0].error and "gives no speaker" in errors[0].error
    groups, _ = speaker_groups(one_root, r"^\d\d")  # no group: the whole match names the speaker
    assert set(named(groups)) == {"03", "08"}
    # Alternation: the group that took part names the speaker; an empty match names none.
    alt = [Job(Path("c/03a01Fa.wav"), Path("03a01Fa.wav")), Job(Path("c/03-01-05-01-01-01-21.wav"), Path("03-01-05-01-01-01-21.wav"))]
    groups, errors = speaker_groups(alt, r"^(\d\d)[a-z]|-(\d\d)$")
    assert set(named(groups)) == {"03", "21"} and errors == []
    mixed = [alt[0], Job(Path("c/notes.wav"), Path("notes.wav"))]
    groups, errors = speaker_groups(mixed, r"^(\d*)")  # matches "notes" with an empty group
    assert named(groups) == {"03": ["03a01Fa.wav"]} and len(errors) == 1 and "notes.wav" in errors[0].path
    assert len(speaker_groups(alt, "(z*)")[1]) == 2  # matches everywhere, names nobody: every file refused
    # groups that all match empty: the whole match names the speaker, as --speaker-pattern's help says
    groups, errors = speaker_groups([Job(Path("c/spkA.wav"), Path("spkA.wav"))], r"^spk(\d*)")
    assert set(named(groups)) == {"spk"} and errors == []
    # Two input arguments keep their speakers apart (EmoDB's 03 is not RAVDESS's 03).
    two = [Job(Path("a/03a01Fa.wav"), Path("03a01Fa.wav")), Job(Path("b/03a02Fa.wav"), Path("03a02Fa.wav"))]
    groups, _ = speaker_groups(two, r"^(\d\d)")
    assert len(groups) == 2 and all(g.name.endswith(":03") and g.match == "03" for g in groups)
    with pytest.raises(EmortError, match="not a valid regular expression"):
        speaker_groups(jobs, "^(")


def test_score_mels_caps_the_batch_and_gives_the_same_scores(tiny, monkeypatch):
    import emort.runtime.scorer as scorer_mod

    s = Scorer.load(tiny["bundle"], device="cpu")
    rng = np.random.default_rng(0)
    mels = [rng.normal(size=(s.bundle.mel.n_mels, 40)).astype(np.float32) for _ in range(5)]
    whole = s.score_mels(mels)
    seen = []
    run = s.ser

    def spy(**kw):
        seen.append(kw["mel"].shape[0])
        return run(**kw)

    monkeypatch.setattr(scorer_mod, "MAX_BATCH", 2)
    monkeypatch.setattr(s, "ser", spy)
    capped = s.score_mels(mels)
    assert seen == [2, 2, 1]
    for a, b in zip(whole, capped):
        assert a.prediction == b.prediction and max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-5


def test_cli_speaker_pattern_groups_by_file_name(tiny, tmp_path, emodb_files):
    src = tmp_path / "one_folder"  # EmoDB's layout: several speakers in one folder
    src.mkdir()
    by_spk: dict[str, list] = {}
    for f in emodb_files:
        if len(by_spk.setdefault(f.name[:2], [])) < 3:
            by_spk[f.name[:2]].append(f)
            shutil.copy(f, src / f.name)
    assert len(by_spk) >= 2
    (src / "readme.wav").write_bytes(b"RIFF")  # matches no speaker: reported, not scored
    rep = tmp_path / "s.json"
    r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--speaker-pattern", r"^(\d\d)", "--json", str(rep)])
    assert r.exit_code == 1, r.output
    data = json.loads(rep.read_text())
    assert "pattern" in data["normalisation"]
    scored = [x for x in data["results"] if "scores" in x]
    assert {x["speaker_group"] for x in scored} == set(by_spk) and all(x["group_size"] == len(by_spk[x["speaker_group"]]) for x in scored)
    assert [x for x in data["results"] if "error" in x][0]["path"].endswith("readme.wav")
    # Each group is normalised on its own: the same as the API on that speaker's clips.
    s = Scorer.load(tiny["bundle"], device="cpu", per_speaker=True)
    spk, files = next(iter(sorted(by_spk.items())))
    api = s.score_group([s.log_mel(a.samples, a.sample_rate) for a in (read_audio(src / f.name) for f in files)])
    cli = {Path(x["path"]).name: x["scores"] for x in scored}
    for f, sc in zip(files, api):
        assert max(abs(cli[f.name][k] - sc.scores[k]) for k in sc.scores) < 1e-6
    r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--speaker-pattern", "^("])
    assert r.exit_code == 2 and "not a valid regular expression" in r.output and "Traceback" not in r.output


def test_log_mel_and_score_take_the_sample_rate(emodb_files):
    """48 kHz audio is resampled, not read as if it were at the bundle's rate."""
    import soxr

    s = Scorer.load(device="cpu")
    a = read_audio(emodb_files[0])
    rate = s.bundle.mel.sample_rate
    x48 = soxr.resample(a.samples, a.sample_rate, 48000, quality="HQ").astype(np.float32)
    m, m48 = s.log_mel(a.samples, a.sample_rate), s.log_mel(x48, 48000)
    assert m.shape == m48.shape and m.shape[0] == s.bundle.mel.n_mels
    assert np.abs(m - m48).mean() < 0.05
    wrong = s.log_mel(x48, rate)  # the same samples claimed at the bundle's rate: another (longer, lower) signal
    assert wrong.shape[1] > 2 * m.shape[1]
    got, ref = s.score(x48, 48000), s.score(np.stack([a.samples, a.samples], 1), a.sample_rate)  # any rate, any channel layout
    assert got.prediction in s.bundle.labels and max(abs(got.scores[k] - ref.scores[k]) for k in ref.scores) < 0.02


def test_score_speaker_normalises_with_the_reference_when_given(shared_data):
    s = Scorer.load(device="cpu", per_speaker=True)
    files = sorted((shared_data / "emodb" / "wav").glob("03*.flac"))[::5][:6]
    clips = [(a.samples, a.sample_rate) for a in map(read_audio, files)]
    quiet = [(0.5 * w, sr) for w, sr in clips]  # an edit common to all the speaker's clips: -6 dB
    base = s.score_speaker(clips)
    assert len(base) == 6 and all(x.fused == s.fused for x in base)

    def gap(a, b):
        return max(abs(x.scores[k] - y.scores[k]) for x, y in zip(a, b) for k in x.scores)

    assert gap(base, s.score_speaker(quiet)) < 1e-3  # normalised away without a reference
    assert gap(base, s.score_speaker(clips, reference=clips)) < 1e-6
    moved = s.score_speaker(quiet, reference=clips)
    assert gap(base, moved) > 0.02 and all(x.fused == s.fused for x in moved)
    # Fewer than MIN_GROUP reference clips, whatever the size of the scored group: the SER alone (the
    # single-clip classifier that reads small groups was measured without a reference only).
    from emort.runtime.ustats import MIN_GROUP

    few = s.score_speaker(clips, reference=clips[: MIN_GROUP - 1])
    assert s.reads_small_groups and not any(x.fused for x in few) and {x.method for x in few} == {"reference"}
    assert all(x.fused for x in s.score_speaker(clips[: MIN_GROUP - 1]))  # without one: the single-clip classifier
    with pytest.raises(EmortError):
        s.score_group([s.log_mel(*clips[0])], reference=[])


def test_cli_notes_a_folder_that_may_hold_several_speakers(tiny, tmp_path, emodb_files, monkeypatch):
    """A large folder scored per speaker is normalised as one speaker; the CLI says so once, and
    not when a --speaker-pattern names the speakers."""
    import emort.cli.score as score_cli

    monkeypatch.setattr(score_cli, "LARGE_GROUP", 3)
    src = tmp_path / "mixed"
    src.mkdir()
    for f in emodb_files[:4]:
        shutil.copy(f, src / f.name)
    r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--per-speaker"])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and said.count("clips normalised as one speaker") == 1 and "--speaker-pattern" in said, r.output
    r = runner.invoke(app, ["score", str(src), "--bundle", str(tiny["bundle"]), "--speaker-pattern", r"^(\d\d)"])
    assert r.exit_code == 0 and "normalised as one speaker" not in " ".join(r.output.split()), r.output
