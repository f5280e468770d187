"""The utterance-statistics classifier: `emort train stats`, its ONNX export, the fused per-speaker
scores of the runtime and the CLI, and `emort eval ser --stats`."""

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
from emort.runtime.scorer import Scorer
from emort.runtime.ustats import (
    MIN_GROUP,
    fuse,
    normalise_per_speaker,
    speaker_stats_from,
    stats_matrix,
    utterance_stats,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def speaker_clips(shared_data: Path) -> list[Path]:
    """Seven clips of one EmoDB speaker (03): a group large enough to fuse (MIN_GROUP)."""
    clips = sorted((shared_data / "emodb" / "wav").glob("03*.flac"))[::7][:7]
    assert len(clips) == 7
    return clips


def _mels(scorer: Scorer, files) -> list[np.ndarray]:
    return [scorer.log_mel(a.samples, a.sample_rate) for a in map(read_audio, files)]


def test_stats_run_records_its_split_and_options(tiny):
    cfg = json.loads((tiny["stats"] / "stats.json").read_text())
    assert cfg["kind"] == "stats" and cfg["stats_version"] == 1 and cfg["train"]["C"] == 0.01 and cfg["train"]["model"] == "logreg"  # the model's default C, recorded resolved
    assert cfg["split"]["val_in_train"] is True and cfg["split"]["val_speakers"] == ["tiny/10"]
    assert cfg["result"]["train_clips"] == cfg["split"]["train"] + cfg["split"]["val"]  # fit-val: every non-test clip
    assert "val_ua" not in cfg["result"]  # the validation speakers were fitted: no held-out score claimed


def test_no_fit_val_reports_a_held_out_validation_score(tiny, tmp_path):
    from emort.training.ustats import StatsTrainConfig, load_stats, train_stats

    res = train_stats(StatsTrainConfig(data=[f"csv={tiny['manifest']}"], out=str(tmp_path / "s"), test_speakers=[],
                                       val_speakers=["tiny/10"], fit_val=False))
    cfg = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert res["train_clips"] == cfg["split"]["train"] and 0.0 <= res["val_ua"] <= 1.0
    judge, _ = load_stats(tmp_path / "s")
    assert judge.labels == tuple(cfg["labels"])
    cfg["stats_version"] = 99
    (tmp_path / "s" / "stats.json").write_text(json.dumps(cfg))
    with pytest.raises(EmortError, match="retrain"):
        load_stats(tmp_path / "s")
    with pytest.raises(EmortError, match="not a statistics-classifier run"):
        load_stats(tmp_path)


def test_bundle_ships_the_classifier_with_parity(tiny):
    b = load_bundle(tiny["bundle_stats"])
    assert b.has_stats and not load_bundle(tiny["bundle"]).has_stats
    spec = b.manifest["models"]["stats"]
    assert spec["file"] == "stats.onnx" and spec["file"] in b.manifest["files"] and spec["n_features"] == 3 * b.mel.n_mels + 6
    assert "stats" in b.manifest["parity"]  # export raises above the tolerance, so it is recorded only when met
    assert b.manifest["training"]["stats"]["split"]["val_speakers"] == ["tiny/10"]


def test_onnx_classifier_matches_scikit_learn_on_real_clips(tiny, speaker_clips):
    from emort.training.ustats import load_stats

    judge, _ = load_stats(tiny["stats"])
    s = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True)
    feats = np.stack([utterance_stats(m) for m in _mels(s, speaker_clips)])
    spk = ["x"] * len(feats)
    got = s.stats(X=normalise_per_speaker(feats, spk).astype(np.float32))[1]
    assert np.abs(got - judge.predict_proba(feats, spk)).max() < 1e-4


def test_fused_group_scores_are_the_geometric_mean(tiny, speaker_clips):
    fused = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True)
    alone = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True, stats=False)
    assert fused.fused and not alone.fused
    mels = _mels(fused, speaker_clips)
    labels = fused.bundle.labels
    p_ser = np.array([[x.scores[k] for k in labels] for x in alone.score_group(mels)])
    feats = np.stack([utterance_stats(m) for m in mels])
    p_stats = fused.stats(X=normalise_per_speaker(feats, ["s"] * len(mels)).astype(np.float32))[1]
    got = fused.score_group(mels)
    want = fuse(p_ser, p_stats)
    assert np.allclose([[x.scores[k] for k in labels] for x in got], want, atol=1e-6)
    assert [x.prediction for x in got] == [labels[i] for i in want.argmax(1)] and all(x.fused for x in got)
    assert not np.allclose(p_ser, want, atol=1e-3)  # the classifier does move the scores
    # Like the SER's input, the statistics are z-scored per speaker: a level change of the whole
    # group leaves the fused scores as they were.
    moved = fused.score_group([m + 2.0 for m in mels])
    assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(got, moved) for k in labels) < 1e-4


def test_small_groups_get_the_ser_alone(tiny, speaker_clips):
    """One clip z-scores to all zeros (two to +-1): the classifier would see no clip at all."""
    fused = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True)
    alone = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True, stats=False)
    mels = _mels(fused, speaker_clips)
    for n in (1, 2, MIN_GROUP - 1):
        a, b = fused.score_group(mels[:n]), alone.score_group(mels[:n])
        assert [x.scores for x in a] == [x.scores for x in b] and not any(x.fused for x in a)
    assert all(x.fused for x in fused.score_group(mels[:MIN_GROUP]))


def test_a_bundle_with_other_statistics_is_refused_clearly(tiny, tmp_path):
    from emort.runtime.bundle import MANIFEST

    b = tmp_path / "b"
    shutil.copytree(tiny["bundle_stats"], b)
    m = json.loads((b / MANIFEST).read_text())
    m["models"]["stats"]["stats_version"] = 2
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="--no-stats"):
        Scorer.load(b, device="cpu", per_speaker=True)
    assert not Scorer.load(b, device="cpu", per_speaker=True, stats=False).fused
    assert Scorer.load(b, device="cpu").stats is None  # global scoring never needs it


def test_cli_score_fuses_and_says_so(tiny, tmp_path, speaker_clips):
    d = tmp_path / "spk"
    d.mkdir()
    for f in speaker_clips:
        shutil.copy(f, d / f.name)
    out = {}
    for flag in ("--stats", "--no-stats"):
        j = tmp_path / f"{flag}.json"
        r = runner.invoke(app, ["score", str(d), "--per-speaker", "--bundle", str(tiny["bundle_stats"]), flag, "--json", str(j)])
        assert r.exit_code == 0, r.output
        out[flag] = json.loads(j.read_text())
    assert out["--stats"]["model"].startswith("ser_speaker + stats (ustats; geometric mean") and out["--no-stats"]["model"] == "ser_speaker"
    assert all(r["fused"] for r in out["--stats"]["results"]) and not any(r["fused"] for r in out["--no-stats"]["results"])
    s = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True)
    api = s.score_group(_mels(s, sorted(d.iterdir())))
    by_path = {Path(r["path"]).name: r for r in out["--stats"]["results"]}
    for f, x in zip(sorted(d.iterdir()), api):
        assert by_path[f.name]["prediction"] == x.prediction
        assert max(abs(by_path[f.name]["scores"][k] - v) for k, v in x.scores.items()) < 1e-5


def test_export_needs_the_speaker_ser_for_the_classifier(tiny, tmp_path):
    from emort.export.onnx import write_bundle

    with pytest.raises(EmortError, match="--speaker-ser"):
        write_bundle(tmp_path / "b", ser_run=tiny["ser"], diffusion_run=tiny["diffusion"], stats_run=tiny["stats"])


def test_export_refuses_a_classifier_fitted_on_the_test_speakers(tiny, tmp_path):
    from emort.export.onnx import write_bundle

    spk = tmp_path / "ser_speaker"
    shutil.copytree(tiny["ser_speaker"], spk)
    cfg = json.loads((spk / "ser.json").read_text())
    cfg["split"]["test_speakers"] = ["tiny/09"]  # a speaker the tiny statistics run was fitted on
    (spk / "ser.json").write_text(json.dumps(cfg))
    with pytest.raises(EmortError, match="tiny/09"):
        write_bundle(tmp_path / "b", ser_run=tiny["ser"], diffusion_run=tiny["diffusion"], speaker_ser_run=spk, stats_run=tiny["stats"])


def test_an_unreadable_statistics_run_is_one_clear_error(tiny, tmp_path):
    from emort.training.ustats import load_stats

    bad = tmp_path / "bad"
    shutil.copytree(tiny["stats"], bad)
    (bad / "stats.joblib").write_bytes(b"not a pickle")
    with pytest.raises(EmortError, match="unreadable statistics run"):
        load_stats(bad)
    (bad / "stats.json").write_text("{")
    with pytest.raises(EmortError, match="unreadable statistics run"):
        load_stats(bad)
    r = runner.invoke(app, ["eval", "ser", str(tiny["ser_speaker"]), "--data", f"csv={tiny['manifest']}", "--stats", str(bad),
                            "--out", str(tmp_path / "rep")])
    assert r.exit_code != 0 and "unreadable statistics run" in r.output and "Traceback" not in r.output


def test_stats_loso_folds_are_the_sers_and_guard_their_folder(tiny, tmp_path):
    from emort.training.ser import loso_folds
    from emort.training.ustats import StatsTrainConfig, train_stats_loso

    data = [f"csv={tiny['manifest']}"]
    out = tmp_path / "loso"
    res = train_stats_loso(StatsTrainConfig(data=data, out=str(out), test_speakers=[], val_speakers=[]), "tiny")
    from emort.runtime.settings import EMOTIONS
    from emort.training import corpora

    folds = loso_folds(corpora.only_canonical(corpora.read_specs(data), EMOTIONS), "tiny", [], [])
    assert list(res) == [f[0] for f in folds] == json.loads((out / "loso.json").read_text())["folds"]
    for name, test, _ in folds:
        split = json.loads((out / name / "stats.json").read_text())["split"]
        assert split["test_speakers"] == test and not set(test) & set(split["train_speakers"] + split["val_speakers"])
    ser_loso = tmp_path / "ser_loso"
    ser_loso.mkdir()
    (ser_loso / "loso.json").write_text(json.dumps({"corpus": "tiny", "folds": []}))  # an SER's folds
    with pytest.raises(EmortError, match="other leave-one-speaker-out folds"):
        train_stats_loso(StatsTrainConfig(data=data, out=str(ser_loso), test_speakers=[], val_speakers=[]), "tiny")
    # and the other way round: SER folds are not written into a statistics classifier's folds (0.23)
    from emort.training.ser import SERTrainConfig, train_ser_loso

    with pytest.raises(EmortError, match="folds of a stats classifier"):
        train_ser_loso(SERTrainConfig(data=data, out=str(out), preset="tiny", test_speakers=[], val_speakers=[], progress=False), "tiny")


def test_a_statistics_run_that_cannot_be_exported_leaves_the_voice_classifier(tiny, tmp_path, monkeypatch):
    """The stale voice classifier is dropped only after the new graph is built and checked."""
    from emort.export import stats as export_stats_mod

    b = tmp_path / "bundle"
    shutil.copytree(tiny["bundle_stats"], b)
    dropped: list = []
    monkeypatch.setattr(export_stats_mod, "_stale_voice", lambda bundle, cfg: True)
    monkeypatch.setattr(export_stats_mod, "_drop_voice_classifier", lambda bundle: dropped.append(bundle) or bundle)

    def refuse(*a, **k):
        raise EmortError("the statistics classifier was fitted without some labels; fit it on data with every emotion")

    monkeypatch.setattr(export_stats_mod, "export_stats", refuse)
    with pytest.raises(EmortError, match="without some labels"):
        export_stats_mod.replace_stats(b, tiny["stats"])
    assert dropped == []


def test_eval_ser_fuses_and_refuses_other_splits(tiny, tmp_path):
    pytest.importorskip("torch")
    from emort.evaluation.ser_eval import evaluate_ser
    from emort.training.ser import SERTrainConfig, eval_stats, load_ser, predict, train_ser
    from emort.training.ustats import StatsTrainConfig, load_stats, train_stats

    data = [f"csv={tiny['manifest']}"]
    ser = tmp_path / "ser"
    train_ser(SERTrainConfig(data=data, out=str(ser), preset="tiny", epochs=1, batch_size=8, test_speakers=["tiny/11"],
                             val_speakers=["tiny/10"], crop_s=1.0, norm="speaker", progress=False))
    stats = tmp_path / "stats"
    train_stats(StatsTrainConfig(data=data, out=str(stats), test_speakers=["tiny/11"], val_speakers=["tiny/10"]))
    res = evaluate_ser(ser, data, tmp_path / "rep", stats_run=stats)
    # Recompute by hand: the SER's and the classifier's probabilities on speaker 11, fused.
    from emort.runtime.settings import EMOTIONS, MelSettings
    from emort.training import corpora
    from emort.training.data import load_mels

    model, cfg = load_ser(ser)
    test = [i for i in corpora.only_canonical(corpora.read_specs(data), EMOTIONS) if i.speaker_key == "tiny/11"]
    mels = load_mels(test, MelSettings.from_dict(cfg["mel"]), progress=False)
    p_ser, _ = predict(model, mels, eval_stats(cfg, mels, test))
    judge, _ = load_stats(stats)
    everything = [i for i in corpora.read_specs(data) if i.speaker_key == "tiny/11"]  # any emotion, labels unused
    ref = speaker_stats_from(stats_matrix(load_mels(everything, MelSettings.from_dict(cfg["mel"]), progress=False)),
                             ["tiny/11"] * len(everything))
    p_stats = judge.predict_proba(stats_matrix(mels), ["tiny/11"] * len(test), ref)
    y = np.array([EMOTIONS.index(i.emotion) for i in test])
    assert res["corpora"]["all"]["wa"] == pytest.approx(float((fuse(p_ser, p_stats).argmax(1) == y).mean()))
    assert res["components"]["ser"]["all"]["wa"] == pytest.approx(float((p_ser.argmax(1) == y).mean()))
    assert res["components"]["stats"]["all"]["wa"] == pytest.approx(float((p_stats.argmax(1) == y).mean()))
    assert "geometric mean" in (tmp_path / "rep" / "ser_eval.md").read_text()
    # A classifier fitted with the SER's test speaker in it would leak: refused.
    leaky = tmp_path / "leaky"
    train_stats(StatsTrainConfig(data=data, out=str(leaky), test_speakers=[], val_speakers=["tiny/10"]))
    with pytest.raises(EmortError, match="same split"):
        evaluate_ser(ser, data, tmp_path / "rep2", stats_run=leaky)
    # The fusion is a per-speaker one: a global SER is refused.
    with pytest.raises(EmortError, match="per-speaker SER"):
        evaluate_ser(tiny["ser"], data, tmp_path / "rep3", stats_run=stats)


@pytest.fixture(scope="module")
def pitch_bundle(tiny, tmp_path_factory) -> dict[str, Path]:
    """A statistics run on log-mel + F0 statistics, put into a copy of the tiny bundle with the
    SER at weight 0.5 (``emort export stats``)."""
    pytest.importorskip("pyworld")
    from emort.training.ustats import StatsTrainConfig, train_stats

    root = tmp_path_factory.mktemp("pitch")
    run = root / "stats_pitch"
    train_stats(StatsTrainConfig(data=[f"csv={tiny['manifest']}"], out=str(run), test_speakers=[], val_speakers=["tiny/10"],
                                 features="ustats+pitch"))
    b = root / "bundle"
    shutil.copytree(tiny["bundle_stats"], b)
    r = runner.invoke(app, ["export", "stats", "--bundle", str(b), "--stats", str(run), "--ser-weight", "0.5"])
    assert r.exit_code == 0, r.output
    return {"run": run, "bundle": b}


def test_the_pitch_classifier_is_recorded_and_loads(pitch_bundle, tiny):
    from emort.runtime.ustats import NUM_PITCH, PITCH_VERSION

    b = load_bundle(pitch_bundle["bundle"])
    spec = b.models["stats"]
    assert (spec.features, spec.ser_weight, spec.pitch_version) == ("ustats+pitch", 0.5, PITCH_VERSION)
    assert spec.n_features == 3 * b.mel.n_mels + 6 + NUM_PITCH
    assert b.training["stats"].options["features"] == "ustats+pitch" and "stats" in b.parity
    old = load_bundle(tiny["bundle_stats"]).models["stats"]
    assert (old.features, old.ser_weight) == ("ustats", 1.0)  # and manifests before 0.9 read the same way:
    m = json.loads((tiny["bundle_stats"] / "manifest.json").read_text())["models"]["stats"]
    from emort.runtime.bundle import ModelSpec

    legacy = ModelSpec.from_manifest({k: v for k, v in m.items() if k not in ("features", "ser_weight", "pitch_version")})
    assert (legacy.features, legacy.ser_weight, legacy.pitch_version) == ("ustats", 1.0, None)
    for name in ("ser.onnx", "ser_speaker.onnx", "denoiser.onnx", "style.onnx"):  # only the statistics graph changed
        assert b.files[name] == load_bundle(tiny["bundle_stats"]).files[name]
    assert spec.file.startswith("stats-") and spec.file in b.files and "stats.onnx" not in b.files
    assert not (pitch_bundle["bundle"] / "stats.onnx").exists()  # the replaced graph is gone


def test_training_and_runtime_compute_the_same_pitch_statistics(pitch_bundle, speaker_clips):
    from emort.runtime.ustats import NUM_PITCH
    from emort.training.corpora import Item
    from emort.training.ustats import pitch_matrix

    s = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True)
    assert s.needs_pitch
    runtime = np.stack([s.analyse(a.samples, a.sample_rate).pitch for a in map(read_audio, speaker_clips)])
    items = [Item(path=str(f), emotion="neutral", speaker="03", corpus="emodb") for f in speaker_clips]
    training = pitch_matrix(items, s.bundle.mel)
    assert runtime.shape == training.shape == (len(speaker_clips), NUM_PITCH) and np.abs(runtime).sum() > 0
    np.testing.assert_allclose(training, runtime, rtol=1e-3, atol=1e-3)


def test_an_older_pitch_version_is_computed_alike_by_training_and_runtime(pitch_bundle, speaker_clips, tmp_path):
    """A bundle fitted on pitch version 1 (emort 0.9): the runtime and an evaluation of a version-1
    run (pitch_matrix(version=1), cached apart from version 2) compute the same statistics, which
    differ from version 2's."""
    from emort.runtime.bundle import MANIFEST
    from emort.training.corpora import Item
    from emort.training.ustats import pitch_matrix

    b = tmp_path / "b"
    shutil.copytree(pitch_bundle["bundle"], b)
    m = json.loads((b / MANIFEST).read_text())
    m["models"]["stats"]["pitch_version"] = 1
    (b / MANIFEST).write_text(json.dumps(m))
    s = Scorer.load(b, device="cpu", per_speaker=True)
    runtime = np.stack([s.analyse(a.samples, a.sample_rate).pitch for a in map(read_audio, speaker_clips)])
    items = [Item(path=str(f), emotion="neutral", speaker="03", corpus="emodb") for f in speaker_clips]
    v2 = pitch_matrix(items, s.bundle.mel)  # cached first, under version 2
    v1 = pitch_matrix(items, s.bundle.mel, version=1)
    np.testing.assert_allclose(v1, runtime, rtol=1e-3, atol=1e-3)
    assert not np.allclose(v1, v2)


def test_a_stats_run_of_an_unknown_pitch_version_is_refused_by_name(pitch_bundle, tmp_path):
    from emort.training.ustats import load_stats

    run = tmp_path / "run"
    shutil.copytree(pitch_bundle["run"], run)
    for bad in (99, None):
        cfg = json.loads((run / "stats.json").read_text())
        cfg["pitch_version"] = bad
        (run / "stats.json").write_text(json.dumps(cfg))
        with pytest.raises(EmortError, match=f"stats.json: pitch statistics version {bad!r} is not one this emort computes"):
            load_stats(run)


def test_pitch_fused_scores_follow_the_bundle(pitch_bundle, speaker_clips):
    """score_speaker = the per-speaker SER's probabilities ^ 0.5, fused with the classifier's on
    log-mel + F0 statistics z-scored over the group; without the F0 rows score_group refuses."""
    from emort.runtime.ustats import fuse_weighted

    fused = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True)
    alone = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True, stats=False)
    clips = [(a.samples, a.sample_rate) for a in map(read_audio, speaker_clips)]
    got = fused.score_speaker(clips)
    labels = fused.bundle.labels
    an = [fused.analyse(w, sr) for w, sr in clips]
    mels = [a.log_mel for a in an]
    p_ser = np.array([[x.scores[k] for k in labels] for x in alone.score_group(mels)])
    feats = np.hstack([np.stack([utterance_stats(m) for m in mels]), np.stack([a.pitch for a in an])])
    p_stats = fused.stats(X=normalise_per_speaker(feats, ["s"] * len(mels)).astype(np.float32))[1]
    want = fuse_weighted(p_ser, p_stats, 0.5)
    np.testing.assert_allclose([[x.scores[k] for k in labels] for x in got], want, atol=1e-6)
    assert not np.allclose(want, fuse(p_ser, p_stats), atol=1e-3)  # the weight is applied
    with pytest.raises(EmortError, match="F0 statistics"):
        fused.score_group(mels)
    assert not Scorer.load(pitch_bundle["bundle"], device="cpu").needs_pitch  # single clips never read F0


def test_cli_scores_with_the_pitch_classifier(pitch_bundle, speaker_clips, tmp_path):
    d = tmp_path / "spk"
    d.mkdir()
    for f in speaker_clips:
        shutil.copy(f, d / f.name)
    j = tmp_path / "s.json"
    r = runner.invoke(app, ["score", str(d), "--per-speaker", "--bundle", str(pitch_bundle["bundle"]), "--json", str(j)])
    assert r.exit_code == 0, r.output
    rep = json.loads(j.read_text())
    assert rep["model"].startswith("ser_speaker + stats (ustats+pitch; geometric mean, SER weight 0.5")
    s = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True)
    api = s.score_speaker([(a.samples, a.sample_rate) for a in map(read_audio, sorted(d.iterdir()))])
    by_path = {Path(x["path"]).name: x for x in rep["results"]}
    for f, x in zip(sorted(d.iterdir()), api):
        assert by_path[f.name]["method"] == "per-speaker+stats"
        assert max(abs(by_path[f.name]["scores"][k] - v) for k, v in x.scores.items()) < 1e-5


def test_export_stats_refuses_what_cannot_be_fused_and_leaves_the_bundle(tiny, pitch_bundle, tmp_path):
    from emort.training.ustats import StatsTrainConfig, train_stats

    b = tmp_path / "b"
    shutil.copytree(pitch_bundle["bundle"], b)
    before = {f.name: f.read_bytes() for f in b.iterdir()}
    glob = tmp_path / "global"
    train_stats(StatsTrainConfig(data=[f"csv={tiny['manifest']}"], out=str(glob), test_speakers=[], val_speakers=["tiny/10"],
                                 norm="global"))
    r = runner.invoke(app, ["export", "stats", "--bundle", str(b), "--stats", str(glob)])
    assert r.exit_code != 0 and "--norm global" in r.output and "Traceback" not in r.output
    m = json.loads((b / "manifest.json").read_text())
    m["training"]["ser_speaker"]["split"]["test_speakers"] = ["tiny/09"]  # a speaker the run was fitted on
    (b / "manifest.json").write_text(json.dumps(m))
    before["manifest.json"] = (b / "manifest.json").read_bytes()
    r = runner.invoke(app, ["export", "stats", "--bundle", str(b), "--stats", str(pitch_bundle["run"])])
    assert r.exit_code != 0 and "tiny/09" in r.output
    assert {f.name: f.read_bytes() for f in b.iterdir()} == before  # nothing written, no temp file left


def test_reference_mode_reads_the_references_f0_too(pitch_bundle, speaker_clips, tmp_path):
    """Normalising a speaker with its own clips given as the reference is the same as without one;
    the CLI's --reference mode gives the API's scores."""
    s = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True)
    clips = [(a.samples, a.sample_rate) for a in map(read_audio, speaker_clips)]
    own = s.score_speaker(clips)
    ref = s.score_speaker(clips, reference=clips)
    assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(own, ref) for k in a.scores) < 1e-9
    # Another reference (the first five clips) normalises with ITS log-mel and F0 statistics:
    from emort.runtime.ustats import fuse_weighted, speaker_stats_from

    an = [s.analyse(w, sr) for w, sr in clips]
    feats = np.hstack([np.stack([utterance_stats(a.log_mel) for a in an]), np.stack([a.pitch for a in an])])
    z = normalise_per_speaker(feats, ["s"] * len(an), speaker_stats_from(feats[:5], ["s"] * 5)).astype(np.float32)
    alone = Scorer.load(pitch_bundle["bundle"], device="cpu", per_speaker=True, stats=False)
    labels = s.bundle.labels
    p_ser = np.array([[x.scores[k] for k in labels] for x in alone.score_group([a.log_mel for a in an], reference=[a.log_mel for a in an[:5]])])
    want = fuse_weighted(p_ser, s.stats(X=z)[1], 0.5)
    got = s.score_speaker(clips, reference=clips[:5])
    np.testing.assert_allclose([[x.scores[k] for k in labels] for x in got], want, atol=1e-6)
    d, r = tmp_path / "in" / "spk", tmp_path / "ref" / "spk"  # a speaker's folder below each root
    d.mkdir(parents=True)
    r.mkdir(parents=True)
    for f in speaker_clips:
        shutil.copy(f, d / f.name)
        shutil.copy(f, r / f.name)
    j = tmp_path / "r.json"
    res = runner.invoke(app, ["score", str(tmp_path / "in"), "--reference", str(tmp_path / "ref"), "--bundle", str(pitch_bundle["bundle"]),
                              "--json", str(j)])
    assert res.exit_code == 0, res.output
    by_path = {Path(x["path"]).name: x for x in json.loads(j.read_text())["results"]}
    for f, x in zip(speaker_clips, own):
        assert by_path[f.name]["method"] == "reference+stats"
        assert max(abs(by_path[f.name]["scores"][k] - v) for k, v in x.scores.items()) < 1e-5


def test_eval_stats_scores_the_classifier_alone(tiny, tmp_path):
    """`emort eval stats`: a run on its held-out test speaker (as the runtime z-scores it, over all
    its clips), and LOSO folds pooled with every clip of the corpus counted once."""
    from emort.evaluation.ser_eval import evaluate_stats, stats_probs
    from emort.runtime.settings import EMOTIONS
    from emort.training import corpora
    from emort.training.ustats import StatsTrainConfig, load_stats, train_stats, train_stats_loso

    data = [f"csv={tiny['manifest']}"]
    run = tmp_path / "s"
    train_stats(StatsTrainConfig(data=data, out=str(run), test_speakers=["tiny/11"], val_speakers=["tiny/10"]))
    res = evaluate_stats(run, data, tmp_path / "rep")
    every = corpora.read_specs(data)
    test = [i for i in corpora.only_canonical(every, EMOTIONS) if i.speaker_key == "tiny/11"]
    p = stats_probs(load_stats(run), test, every)
    y = np.array([EMOTIONS.index(i.emotion) for i in test])
    assert res["corpora"]["all"]["n"] == len(test) and res["corpora"]["all"]["wa"] == pytest.approx(float((p.argmax(1) == y).mean()))
    assert (tmp_path / "rep" / "stats_eval.md").exists() and res["folds"] is None
    loso = tmp_path / "loso"
    train_stats_loso(StatsTrainConfig(data=data, out=str(loso), test_speakers=[], val_speakers=[]), "tiny")
    pooled = evaluate_stats(loso, data, tmp_path / "rep_loso")
    assert pooled["corpora"]["all"]["n"] == len(corpora.only_canonical(every, EMOTIONS))  # each clip once
    assert len(pooled["folds"]) == len(json.loads((loso / "loso.json").read_text())["folds"])
    r = runner.invoke(app, ["eval", "stats", str(tiny["ser"]), "--data", data[0], "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "not a statistics-classifier run" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("change, why", [
    ({"pitch_version": 99}, "pitch version 99"),
    ({"features": "ustats+egemaps"}, "ustats\\+egemaps"),
    ({"n_features": 10}, "does not match"),
    ({"ser_weight": -1.0}, "ser_weight"),
    ({"ser_weight": float("inf")}, "ser_weight"),
])
def test_a_pitch_bundle_that_this_emort_cannot_read_is_refused_clearly(pitch_bundle, tmp_path, change, why):
    from emort.runtime.bundle import MANIFEST

    b = tmp_path / "b"
    shutil.copytree(pitch_bundle["bundle"], b)
    m = json.loads((b / MANIFEST).read_text())
    m["models"]["stats"].update(change)
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=why):
        Scorer.load(b, device="cpu", per_speaker=True)
    assert not Scorer.load(b, device="cpu", per_speaker=True, stats=False).fused  # --no-stats still works


def test_export_stats_keeps_a_loadable_bundle_when_the_manifest_cannot_be_written(tiny, pitch_bundle, tmp_path, monkeypatch):
    import emort.export.manifest as manifest_mod
    from emort.export.stats import replace_stats

    b = tmp_path / "b"
    shutil.copytree(pitch_bundle["bundle"], b)
    before = sorted(p.name for p in b.iterdir())

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod, "write_text_atomic", broken)
    with pytest.raises(OSError, match="disk full"):
        replace_stats(b, tiny["stats"], 1.0)
    assert sorted(p.name for p in b.iterdir()) == before  # the new graph removed, the old one kept
    assert load_bundle(b).models["stats"].features == "ustats+pitch"  # and the bundle still verifies
    monkeypatch.undo()
    m = replace_stats(b, tiny["stats"])  # the weight defaults to the bundle's (0.5)
    assert m["models"]["stats"]["ser_weight"] == 0.5 and m["models"]["stats"]["features"] == "ustats"
    assert load_bundle(b).has_stats


def test_a_bundle_fitted_on_an_older_pitch_version_is_scored_with_that_analysis(pitch_bundle, tmp_path, monkeypatch):
    """A 0.9 bundle (pitch version 1) keeps working with 0.10: its clips' F0 statistics are
    computed as its classifier was fitted on them, not with this emort's newer analysis."""
    import emort.runtime.scorer as scorer_mod
    from emort.runtime.bundle import MANIFEST
    from emort.runtime.ustats import PITCH_VERSION

    seen = []
    real = scorer_mod.clip_pitch_stats
    monkeypatch.setattr(scorer_mod, "clip_pitch_stats", lambda x, m, s, v: seen.append(v) or real(x, m, s, v))
    x = (0.1 * np.sin(2 * np.pi * 150 * np.arange(16000) / 16000)).astype(np.float32)
    b = tmp_path / "b"
    shutil.copytree(pitch_bundle["bundle"], b)
    m = json.loads((b / MANIFEST).read_text())
    assert m["models"]["stats"]["pitch_version"] == PITCH_VERSION == 2
    Scorer.load(b, device="cpu", per_speaker=True).analyse(x, 16000)
    m["models"]["stats"]["pitch_version"] = 1
    (b / MANIFEST).write_text(json.dumps(m))
    Scorer.load(b, device="cpu", per_speaker=True).analyse(x, 16000)
    assert seen == [2, 1]
