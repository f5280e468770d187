"""`emort export voice`: the GE2E encoder and a classifier on its embeddings into a bundle; `emort eval stats --voice`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.errors import EmortError
from emort.runtime.scorer import Scorer
from emort.runtime.voice import VOICE_VERSION

pytest.importorskip("torch", reason="export needs the [train] extra")
pytest.importorskip("resemblyzer", reason="the voice encoder's weights come from resemblyzer's wheel")
pytest.importorskip("skl2onnx", reason="export needs the [export] extra")

runner = CliRunner()


@pytest.fixture(scope="module")
def ge2e_run(shared_data: Path, tmp_path_factory) -> Path:
    """A classifier on GE2E embeddings of EmoDB's training speakers (the project split)."""
    out = tmp_path_factory.mktemp("ge2e") / "run"
    r = runner.invoke(app, ["train", "stats", "--data", f"emodb={shared_data / 'emodb'}", "--features", "ge2e", "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "stats.json").read_text())
    assert cfg["features"] == "ge2e" and cfg["voice_version"] == VOICE_VERSION and cfg["voice"]["sample_rate"] == 16000
    return out


def _copy(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(load_bundle().path, b)
    return b


def test_export_voice_puts_both_graphs_in_and_scores_with_them(ge2e_run, tmp_path):
    b = _copy(tmp_path)
    before = load_bundle(b)
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(ge2e_run)])
    assert r.exit_code == 0, r.output
    after = load_bundle(b)  # checksums verified
    assert after.has_voice
    assert after.models["stats_voice"].file != before.models["stats_voice"].file  # another classifier
    assert not (b / before.models["stats_voice"].file).exists()  # the old graph is gone
    assert after.manifest["parity"]["voice_encoder"] < 1e-3 and after.manifest["parity"]["stats_voice"] < 1e-3
    assert "resemblyzer" in after.manifest["training"]["voice_encoder"]["source"]
    assert "Apache License" in (b / "LICENSE-voice_encoder.txt").read_text()
    assert Scorer.load(b, device="cpu", per_speaker=True).needs_voice


def _edited_run(run: Path, tmp_path: Path, **changes) -> Path:
    out = tmp_path / "edited"
    shutil.copytree(run, out)
    cfg = json.loads((out / "stats.json").read_text())
    cfg.update(changes)
    (out / "stats.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("changes,why", [({"features": "ustats+pitch", "pitch_version": 2}, "takes a run of ge2e or ustats+pitch+ge2e"),
                                         ({"voice_version": 99}, "voice embedding version 99")])
def test_export_voice_refuses_a_run_it_cannot_ship_and_leaves_the_bundle(ge2e_run, tmp_path, changes, why):
    b = _copy(tmp_path)
    manifest = (b / MANIFEST).read_text()
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(_edited_run(ge2e_run, tmp_path, **changes))])
    assert r.exit_code != 0 and why in r.output and "Traceback" not in r.output
    assert (b / MANIFEST).read_text() == manifest


def test_export_voice_needs_the_statistics_classifier(ge2e_run, tmp_path):
    from emort.export.voice import replace_voice

    b = _copy(tmp_path)
    m = json.loads((b / MANIFEST).read_text())
    del m["models"]["stats"]
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(EmortError, match="no per-speaker scorer"):
        replace_voice(b, ge2e_run)


def test_eval_stats_voice_fuses_the_two_classifiers(ge2e_run, shared_data, tmp_path):
    import numpy as np

    from emort.evaluation.ser_eval import evaluate_stats, stats_probs
    from emort.runtime.ustats import fuse_weighted
    from emort.training import corpora
    from emort.training.metrics import classification_report
    from emort.training.ustats import load_stats

    data = [f"emodb={shared_data / 'emodb'}"]
    stats_run = tmp_path / "stats"
    r = runner.invoke(app, ["train", "stats", "--data", data[0], "--out", str(stats_run)])  # log-mel statistics
    assert r.exit_code == 0, r.output
    fused = evaluate_stats(stats_run, data, tmp_path / "b", voice_run=ge2e_run)
    assert fused["voice_run"] == str(ge2e_run)
    assert "fused with the GE2E voice classifier" in (tmp_path / "b" / "stats_eval.md").read_text()
    # by hand: the two classifiers' probabilities on the test speakers, fused by the geometric mean
    items = corpora.read_specs(data)
    s, v = load_stats(stats_run), load_stats(ge2e_run)
    test = [i for i in corpora.only_canonical(items, tuple(s[1]["labels"])) if i.speaker_key in set(s[1]["train"]["test_speakers"])]
    p = fuse_weighted(stats_probs(s, test, items), stats_probs(v, test, items), 1.0)
    want = classification_report([s[1]["labels"].index(i.emotion) for i in test], p.argmax(1), s[1]["labels"])
    assert fused["corpora"]["emodb"]["ua"] == pytest.approx(want.ua)
    alone = [classification_report([s[1]["labels"].index(i.emotion) for i in test], q.argmax(1), s[1]["labels"]).ua
             for q in (stats_probs(s, test, items), stats_probs(v, test, items))]
    assert not np.allclose(p, stats_probs(s, test, items), atol=1e-3), alone  # the voice classifier moves the probabilities
    with pytest.raises(EmortError, match="--voice takes a ge2e run"):
        evaluate_stats(stats_run, data, tmp_path / "c", voice_run=stats_run)


@pytest.fixture(scope="module")
def joint_run(shared_data: Path, tmp_path_factory) -> Path:
    """One classifier on log-mel + F0 statistics and GE2E embeddings of EmoDB's training speakers."""
    out = tmp_path_factory.mktemp("joint") / "run"
    r = runner.invoke(app, ["train", "stats", "--data", f"emodb={shared_data / 'emodb'}", "--features", "ustats+pitch+ge2e",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "stats.json").read_text())
    assert cfg["voice_version"] == VOICE_VERSION and cfg["pitch_version"] == load_bundle().models["stats"].pitch_version
    return out


def test_a_joint_run_scores_through_the_runtime_as_in_training(joint_run, shared_data, tmp_path):
    """Exported, the joint classifier gives `emort score --per-speaker` the probabilities the training
    code gives the same clips: the same statistics, F0 and embedding on both sides."""
    import numpy as np

    from emort.evaluation.ser_eval import stats_probs
    from emort.runtime.audio import read_audio
    from emort.runtime.voice import JOINT_FEATURES
    from emort.training import corpora
    from emort.training.ustats import load_stats

    b = _copy(tmp_path)
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(joint_run)])
    assert r.exit_code == 0, r.output
    spec = load_bundle(b).models["stats_voice"]
    assert spec.features == JOINT_FEATURES and spec.n_features == load_bundle(b).models["stats"].n_features + 256
    sc = Scorer.load(b, device="cpu", per_speaker=True)
    assert sc.joint
    data = [f"emodb={shared_data / 'emodb'}"]
    items = [i for i in corpora.read_specs(data) if i.speaker_key == "emodb/03"]  # all its clips: the z-score pool
    got = sc.score_speaker([(a.samples, a.sample_rate) for a in (read_audio(i.path) for i in items)])
    clf, cfg = load_stats(joint_run)
    want = stats_probs((clf, cfg), items, items)
    assert np.allclose([[s.scores[k] for k in cfg["labels"]] for s in got], want, atol=1e-4)


def test_export_refuses_a_joint_run_of_another_f0_analysis(joint_run, tmp_path):
    b = _copy(tmp_path)
    manifest = (b / MANIFEST).read_text()
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(_edited_run(joint_run, tmp_path, pitch_version=1))])
    assert r.exit_code != 0 and "F0 statistics version 1" in r.output and "Traceback" not in r.output, r.output
    assert (b / MANIFEST).read_text() == manifest


def test_export_stats_removes_a_joint_voice_classifier_it_no_longer_matches(shared_data, tmp_path):
    """A statistics classifier of other features leaves the joint voice classifier reading the old
    ones: export stats removes it and says so, and default per-speaker scoring still loads."""
    b = _copy(tmp_path)
    run = tmp_path / "ustats"
    assert runner.invoke(app, ["train", "stats", "--data", f"emodb={shared_data / 'emodb'}", "--out", str(run)]).exit_code == 0
    old = load_bundle(b).models["stats_voice"].file
    r = runner.invoke(app, ["export", "stats", "--bundle", str(b), "--stats", str(run)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "removed the voice classifier" in said and "emort export voice" in said
    after = load_bundle(b)  # checksums of what is left verified
    assert "stats_voice" not in after.models and not (b / old).exists() and after.models["stats"].features == "ustats"
    sc = Scorer.load(b, device="cpu", per_speaker=True)
    assert sc.fused and not sc.needs_voice


def test_a_run_fitted_on_the_old_front_end_is_refused_or_flagged(joint_run, shared_data, tmp_path):
    """Runs fitted before 0.13 (log-mels with the DC offset) do not ship; evaluated, they are flagged."""
    from emort.training.ustats import load_stats

    old = tmp_path / "old"
    shutil.copytree(joint_run, old)
    cfg = json.loads((old / "stats.json").read_text())
    del cfg["frontend_version"]
    (old / "stats.json").write_text(json.dumps(cfg))
    b = _copy(tmp_path)
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(old)])
    assert r.exit_code != 0 and "front end 1" in " ".join(r.output.split()) and "Traceback" not in r.output, r.output
    r = runner.invoke(app, ["eval", "stats", str(old), "--data", f"emodb={shared_data / 'emodb'}", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0 and "fitted on log-mels of front end 1" in " ".join(r.output.split()), r.output
    assert "front end 1" in (tmp_path / "rep" / "stats_eval.md").read_text()
    cfg["features"] = None
    (old / "stats.json").write_text(json.dumps(cfg))
    with pytest.raises(EmortError, match="stats.json: unknown features None"):
        load_stats(old)


def test_a_ge2e_run_is_fused_by_the_geometric_mean(ge2e_run, shared_data, tmp_path):
    """0.12's voice classifier, on the embedding alone, is fused with the statistics classifier."""
    import numpy as np

    from emort.runtime.audio import read_audio
    from emort.runtime.ustats import fuse_weighted, normalise_per_speaker

    b = _copy(tmp_path)
    assert runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(ge2e_run)]).exit_code == 0
    sc = Scorer.load(b, device="cpu", per_speaker=True)
    assert sc.needs_voice and not sc.joint
    files = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[::6][:6]
    an = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, files)]
    got = np.array([[s.scores[k] for k in sc.bundle.labels] for s in sc.score_analyses(an)])
    z = lambda x: normalise_per_speaker(x, ["s"] * len(x)).astype(np.float32)  # noqa: E731
    p_stats = sc.stats(X=z(sc._stats_features([a.log_mel for a in an], [a.pitch for a in an])))[1]
    p_voice = sc.stats_voice(X=z(np.stack([a.voice for a in an])))[1]
    assert np.allclose(got, fuse_weighted(p_stats, p_voice, 1.0), atol=1e-5)  # the shipped SER weight is 0


def test_a_ge2e_run_of_another_embedding_version_is_refused_by_name(ge2e_run, tmp_path):
    from emort.training.ustats import load_stats

    with pytest.raises(EmortError, match="voice embedding version 2"):
        load_stats(_edited_run(ge2e_run, tmp_path, voice_version=2))


def test_eval_stats_reads_a_corpus_without_disgust_over_its_own_labels(ge2e_run, shared_data, tmp_path):
    """nEMO has no disgust: besides the six-way argmax (what `emort score` predicts), its row is read
    over its own five labels, the leave-one-corpus-out protocol's."""
    import numpy as np

    from emort.evaluation.ser_eval import evaluate_stats, stats_probs
    from emort.training import corpora
    from emort.training.metrics import classification_report
    from emort.training.ustats import load_stats

    data = [f"emodb={shared_data / 'emodb'}", f"nemo={shared_data / 'nemo'}"]
    res = evaluate_stats(ge2e_run, data, tmp_path / "r")
    assert "own_labels" not in res["corpora"]["emodb"]  # EmoDB has all six
    own = res["corpora"]["nemo"]["own_labels"]
    assert own["labels"] == ["neutral", "happy", "sad", "angry", "fear"]
    run = load_stats(ge2e_run)
    labels = run[1]["labels"]
    items = corpora.read_specs(data)
    test = [i for i in corpora.only_canonical(items, tuple(labels))
            if i.speaker_key in set(run[1]["train"]["test_speakers"]) and i.corpus == "nemo"]
    p = stats_probs(run, test, items)
    pred = np.argmax(np.where(np.arange(len(labels)) < 5, p, -1.0), axis=1)  # disgust (last) never predicted
    assert own["ua"] == pytest.approx(classification_report([labels.index(i.emotion) for i in test], pred, labels).ua)
    assert "own 5 labels" in (tmp_path / "r" / "stats_eval.md").read_text()


def test_an_egemaps_run_goes_in_beside_the_joint_one_and_scores_as_in_training(shared_data, tmp_path):
    """`emort export voice` puts a ustats+pitch+ge2e+egemaps run in as stats_egemaps (the joint
    classifier stays); `Scorer.load(egemaps=True)` then gives the training code's probabilities."""
    import numpy as np

    pytest.importorskip("opensmile", reason="eGeMAPS needs the [egemaps] extra")
    from emort.evaluation.ser_eval import stats_probs
    from emort.runtime.audio import read_audio
    from emort.runtime.egemaps import EGEMAPS_FEATURES
    from emort.training import corpora
    from emort.training.ustats import load_stats

    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "stats", "--data", f"emodb={shared_data / 'emodb'}", "--features", EGEMAPS_FEATURES, "--out", str(run)])
    assert r.exit_code == 0, r.output
    b = _copy(tmp_path)
    before = load_bundle(b)
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(run)])
    assert r.exit_code == 0 and "stats_egemaps-" in r.output, r.output
    after = load_bundle(b)
    assert after.models["stats_voice"].file == before.models["stats_voice"].file  # the joint classifier untouched
    assert after.models["stats_egemaps"].file != before.models["stats_egemaps"].file
    assert not (b / before.models["stats_egemaps"].file).exists()
    items = [i for i in corpora.read_specs([f"emodb={shared_data / 'emodb'}"]) if i.speaker_key == "emodb/03"]
    got = Scorer.load(b, device="cpu", per_speaker=True, egemaps=True).score_speaker(
        [(a.samples, a.sample_rate) for a in (read_audio(i.path) for i in items)])
    clf, cfg = load_stats(run)
    assert np.allclose([[s.scores[k] for k in cfg["labels"]] for s in got], stats_probs((clf, cfg), items, items), atol=1e-4)


@pytest.fixture(scope="module")
def clip_run(shared_data: Path, tmp_path_factory) -> Path:
    """The single-clip classifier (statistics + GE2E, --norm global) of EmoDB's training speakers."""
    out = tmp_path_factory.mktemp("clip") / "run"
    r = runner.invoke(app, ["train", "stats", "--data", f"emodb={shared_data / 'emodb'}", "--features", "ustats+pitch+ge2e",
                            "--norm", "global", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_a_single_clip_classifier_scores_through_the_runtime_as_in_training(clip_run, shared_data, tmp_path):
    """`export voice` of a --norm global joint run is the bundle's stats_clip; `Scorer.load(clip_stats=True)`
    reads each clip alone with it: its probabilities are the training code's on the same clips, and a
    clip's score is their geometric mean with ser_clip's."""
    import numpy as np

    from emort.evaluation.ser_eval import stats_probs
    from emort.runtime.audio import read_audio
    from emort.runtime.ustats import fuse_weighted
    from emort.training import corpora
    from emort.training.ustats import load_stats

    b = _copy(tmp_path)
    r = runner.invoke(app, ["export", "voice", "--bundle", str(b), "--stats", str(clip_run)])
    assert r.exit_code == 0, r.output
    bundle = load_bundle(b)
    assert bundle.models["stats_clip"].norm == "global" and bundle.models["stats_clip"].file != load_bundle().models["stats_clip"].file
    sc, alone = Scorer.load(b, device="cpu", clip_stats=True), Scorer.load(b, device="cpu")
    items = [i for i in corpora.read_specs([f"emodb={shared_data / 'emodb'}"]) if i.speaker_key == "emodb/03"][:6]
    audio = [read_audio(i.path) for i in items]
    analyses = [sc.analyse(a.samples, a.sample_rate) for a in audio]
    rows = np.hstack([sc._stats_features([a.log_mel for a in analyses], [a.pitch for a in analyses]), np.stack([a.voice for a in analyses])])
    clf, cfg = load_stats(clip_run)
    p_stats = sc.clip_stats(X=rows.astype(np.float32))[1]
    assert np.allclose(p_stats, stats_probs((clf, cfg), items, items), atol=1e-4)
    got = [sc.score(a.samples, a.sample_rate) for a in audio]
    p_ser = np.array([[s.scores[k] for k in cfg["labels"]] for s in (alone.score(a.samples, a.sample_rate) for a in audio)])
    assert all(s.fused for s in got) and not any(s.fused for s in (alone.score(a.samples, a.sample_rate) for a in audio[:1]))
    assert np.allclose([[s.scores[k] for k in cfg["labels"]] for s in got], fuse_weighted(p_ser, p_stats, 1.0), atol=1e-5)


def test_clip_stats_needs_a_bundle_that_carries_it_and_reads_clips_alone(tmp_path):
    from emort.runtime.errors import BundleError

    b = _copy(tmp_path)
    m = json.loads((b / MANIFEST).read_text())
    m["models"].pop("stats_clip")
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="no single-clip classifier"):
        Scorer.load(b, device="cpu", clip_stats=True)
    with pytest.raises(EmortError, match="reads clips alone"):
        Scorer.load(device="cpu", clip_stats=True, per_speaker=True)


def test_clip_stats_refuses_pairings_it_was_not_chosen_with(tmp_path):
    """It fuses ser_clip with a classifier that reads the voice embedding: the SER that conditions the
    edit, or no voice, is refused rather than silently used; score_clips never runs a per-speaker SER."""
    with pytest.raises(EmortError, match="level-robust"):
        Scorer.load(device="cpu", clip_stats=True, level_robust=False)
    with pytest.raises(EmortError, match="voice on"):
        Scorer.load(device="cpu", clip_stats=True, voice=False)
    with pytest.raises(EmortError, match="reads clips alone"):
        Scorer.load(device="cpu", per_speaker=True).score_clips([])
    b = _copy(tmp_path)
    m = json.loads((b / MANIFEST).read_text())
    m["models"]["stats_clip"].pop("norm")
    (b / MANIFEST).write_text(json.dumps(m))
    from emort.runtime.errors import BundleError

    with pytest.raises(BundleError, match="norm 'global'"):
        load_bundle(b)
