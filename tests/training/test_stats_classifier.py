"""The statistics classifier lives with the training code; the feature judge is the same classifier."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the statistics classifier needs the [train] extra")

from emort.evaluation.judges import FEATURE_VERSION, FeatureJudge  # noqa: E402
from emort.runtime.ustats import STATS_VERSION, normalise_per_speaker  # noqa: E402
from emort.training.stats_classifier import StatsClassifier  # noqa: E402


def _data(rng, n_speakers=4, per_class=8):
    centres = rng.normal(scale=3.0, size=(3, 6))
    x, y, s = [], [], []
    for k in range(n_speakers):
        offset = rng.normal(scale=4.0, size=6)
        for c in range(3):
            x.append(centres[c] + offset + rng.normal(scale=0.5, size=(per_class, 6)))
            y += [c] * per_class
            s += [f"spk{k}"] * per_class
    return np.concatenate(x), np.array(y), np.array(s)


def test_round_trip_and_version_check(tmp_path):
    x, y, s = _data(np.random.default_rng(0))
    clf = StatsClassifier(labels=("a", "b", "c")).fit(x, y, s)
    assert clf.feature_version == STATS_VERSION
    clf.save(tmp_path / "stats.joblib")
    assert [p.name for p in tmp_path.iterdir()] == ["stats.joblib"]  # no temp file left behind
    again = StatsClassifier.load(tmp_path / "stats.joblib")
    np.testing.assert_allclose(again.predict_proba(x, s), clf.predict_proba(x, s))
    with pytest.raises(ValueError, match="feature version"):
        StatsClassifier.load(tmp_path / "stats.joblib", feature_version=STATS_VERSION + 1)


def test_pipeline_is_what_export_converts():
    x, y, s = _data(np.random.default_rng(1))
    clf = StatsClassifier(labels=("a", "b", "c")).fit(x, y, s)
    z = normalise_per_speaker(x, s)
    np.testing.assert_allclose(clf.pipeline().predict_proba(z), clf.predict_proba(x, s))


def test_feature_judge_is_the_classifier_with_its_own_feature_version(tmp_path):
    assert issubclass(FeatureJudge, StatsClassifier) and FeatureJudge().feature_version == FEATURE_VERSION
    x, y, s = _data(np.random.default_rng(2))
    FeatureJudge(labels=("a", "b", "c"), feature_version=FEATURE_VERSION + 7).fit(x, y, s).save(tmp_path / "j.joblib")
    with pytest.raises(ValueError, match="FeatureJudge built on feature version"):
        FeatureJudge.load(tmp_path / "j.joblib")  # another version of the judge's features: refused


def test_a_global_classifier_ignores_speakers_and_keeps_its_norm(tmp_path):
    """``norm="global"`` (the single-clip variant): no per-speaker step, so the speaker labels
    change nothing, and the setting survives a save; an unknown norm is refused."""
    x, y, s = _data(np.random.default_rng(3))
    clf = StatsClassifier(labels=("a", "b", "c"), norm="global").fit(x, y, s)
    np.testing.assert_allclose(clf.predict_proba(x, s), clf.predict_proba(x, ["one"] * len(x)))
    np.testing.assert_allclose(clf.pipeline().predict_proba(x), clf.predict_proba(x, s))  # raw rows in
    per_speaker = StatsClassifier(labels=("a", "b", "c")).fit(x, y, s)
    assert not np.allclose(per_speaker.predict_proba(x, s), clf.predict_proba(x, s))
    clf.save(tmp_path / "g.joblib")
    assert StatsClassifier.load(tmp_path / "g.joblib").norm == "global"
    with pytest.raises(ValueError, match="norm"):
        StatsClassifier(norm="utterance")


@pytest.mark.parametrize("model", ["logreg", "lda"])
def test_linear_models_fit_round_trip_and_export(model, tmp_path):
    """The linear classifiers of docs/ser/classifier: they separate the classes, keep their model
    through a save, export through skl2onnx with the SVM's parity check, and an unknown model is refused."""
    pytest.importorskip("skl2onnx", reason="export needs the [export] extra")
    from emort.export.stats import export_stats

    x, y, s = _data(np.random.default_rng(4))
    clf = StatsClassifier(labels=("a", "b", "c"), C=0.1 if model == "logreg" else None, model=model).fit(x, y, s)
    p = clf.predict_proba(x, s)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p.argmax(axis=1) == y).mean() > 0.9
    clf.save(tmp_path / "m.joblib")
    again = StatsClassifier.load(tmp_path / "m.joblib")
    assert again.model == model
    np.testing.assert_allclose(again.predict_proba(x, s), p)
    assert export_stats(clf, tmp_path / "m.onnx", x.shape[1]) < 1e-4
    with pytest.raises(ValueError, match="model"):
        StatsClassifier(model="forest")
    with pytest.raises(ValueError, match="far_class"):
        clf.far_class()  # an RBF SVM's property only
    with pytest.raises(ValueError, match="shrinkage"):
        StatsClassifier(model="lda", C=1.0)


def test_train_stats_records_its_model_and_refuses_an_unknown_one(tmp_path):
    """`emort train stats --model`: an unknown model is one line and no run; a linear run records
    its model and C in stats.json (the manifest's training entry) and loads as that model."""
    import json

    import soundfile as sf
    from typer.testing import CliRunner

    from emort.cli.app import app
    from emort.training.ustats import load_stats

    r = CliRunner().invoke(app, ["train", "stats", "--data", "emodb=nowhere", "--model", "forest", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "--model" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "f").exists()
    rng = np.random.default_rng(5)
    wav = tmp_path / "wav"
    wav.mkdir()
    for spk in ("03", "08", "09", "10", "11"):  # EmoDB names: speaker, text, emotion letter, version
        for k, letter in enumerate("NFTWAEL"):
            t = np.arange(16000) / 16000
            x = 0.1 * np.sin(2 * np.pi * (120 + 40 * k) * t) + 0.01 * rng.standard_normal(16000)
            sf.write(wav / f"{spk}a0{k}{letter}a.wav", x, 16000)
    r = CliRunner().invoke(app, ["train", "stats", "--data", f"emodb={tmp_path}", "--model", "logreg", "--C", "0.01",
                                 "--test-speaker", "emodb/03", "--val-speaker", "emodb/08", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert cfg["train"]["model"] == "logreg" and cfg["train"]["C"] == 0.01
    clf, _ = load_stats(tmp_path / "run")
    assert clf.model == "logreg"


def test_train_config_resolves_each_models_default_c():
    """`emort train stats` without --C: logistic regression's 0.01 (the shipped one's) or the SVM's 10,
    recorded resolved; an unknown model is refused."""
    from emort.training.ustats import StatsTrainConfig

    assert StatsTrainConfig(data=[], out="x").C == 0.01 and StatsTrainConfig(data=[], out="x").model == "logreg"
    assert StatsTrainConfig(data=[], out="x", model="svm").C == 10.0
    assert StatsTrainConfig(data=[], out="x", model="svm", C=2.0).C == 2.0
    assert StatsTrainConfig(data=[], out="x", model="lda").C is None  # it sets its own shrinkage
    assert StatsClassifier(model="logreg").C == 0.01 and StatsClassifier().C == 10.0
    with pytest.raises(ValueError, match="model"):
        StatsTrainConfig(data=[], out="x", model="forest")
