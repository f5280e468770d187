"""Leave-one-speaker-out: fold layout, resume, and the pooled evaluation on real clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.evaluation.ser_eval import evaluate_ser  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402
from emort.training import corpora  # noqa: E402
from emort.training.ser import SERTrainConfig, loso_folds, train_ser_loso  # noqa: E402


def _items(spk_by_corpus: dict[str, list[str]]) -> list[corpora.Item]:
    return [corpora.Item(f"/x/{c}{s}.wav", "angry", s, c) for c, ss in spk_by_corpus.items() for s in ss]


def test_loso_folds_rotate_validation_and_keep_other_corpora():
    items = _items({"emodb": ["03", "08", "09"], "ravdess": ["21", "19"]})
    folds = loso_folds(items, "emodb", ["emodb/03", "ravdess/21"], ["emodb/10", "ravdess/19"])
    assert [f[0] for f in folds] == ["fold_emodb-03", "fold_emodb-08", "fold_emodb-09"]
    assert folds[0][1:] == (["emodb/03", "ravdess/21"], ["emodb/08", "ravdess/19"])
    assert folds[2][1:] == (["emodb/09", "ravdess/21"], ["emodb/03", "ravdess/19"])  # cyclic
    for _, test, val in folds:
        assert not set(test) & set(val)


def test_loso_needs_three_speakers():
    with pytest.raises(EmortError, match="at least 3 speakers"):
        loso_folds(_items({"emodb": ["03", "08"]}), "emodb", [], [])


def test_loso_train_and_pooled_eval(tiny_csv: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "loso"
    data = [f"csv={tiny_csv}"]
    cfg = SERTrainConfig(data=data, out=str(out), preset="tiny", batch_size=8, crop_s=1.0, epochs=1,
                         test_speakers=[], val_speakers=[], progress=False)
    res = train_ser_loso(cfg, "tiny")
    assert sorted(res) == ["fold_tiny-09", "fold_tiny-10", "fold_tiny-11"]
    for name in res:
        conf = json.loads((out / name / "ser.json").read_text())
        spk = "tiny/" + name[-2:]
        assert conf["split"]["test_speakers"] == [spk]
        assert spk not in conf["split"]["train_speakers"] and spk not in conf["split"]["val_speakers"]

    # Finished folds are skipped on a re-run (resume), not retrained.
    import emort.training.ser as ser_mod

    monkeypatch.setattr(ser_mod, "train_ser", lambda *a, **k: pytest.fail("a finished fold was retrained"))
    train_ser_loso(cfg, "tiny")

    rep = evaluate_ser(out, data, tmp_path / "report")
    n_clips = sum(1 for _ in open(tiny_csv)) - 1
    pooled = rep["corpora"]["tiny"]
    assert rep["protocol"] == "loso" and pooled["n"] == n_clips  # every clip tested exactly once
    assert sum(f["n"] for f in rep["folds"].values()) == n_clips
    cm = np.asarray(pooled["confusion"])
    assert np.isclose(pooled["wa"], np.trace(cm) / cm.sum())
    assert (tmp_path / "report" / "ser_eval.md").read_text().count("fold_tiny-") == 3
    assert (tmp_path / "report" / "confusion_tiny_loso.png").is_file()

    # The CLI prints the per-fold table and the pooled row.
    from typer.testing import CliRunner

    from emort.cli.app import app

    r = CliRunner().invoke(app, ["eval", "ser", str(out), "--data", data[0], "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "leave-one-speaker-out" in r.output and "pooled" in r.output and "fold_tiny-10" in r.output


def test_loso_cli_rejects_random_split(tiny_csv: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from emort.cli.app import app

    recipe = tmp_path / "random.toml"
    recipe.write_text('split = "random"\n')
    r = CliRunner().invoke(app, ["train", "ser", "--data", f"csv={tiny_csv}", "--out", str(tmp_path / "x"), "--loso", "tiny", "--recipe", str(recipe)])
    assert r.exit_code == 2 and "speaker protocol" in r.output
    assert not (tmp_path / "x").exists()


def _fold_cfg(tiny_csv: Path, out: Path, **kw) -> SERTrainConfig:
    base = dict(preset="tiny", batch_size=8, crop_s=1.0, epochs=2, test_speakers=[], val_speakers=[], progress=False)
    return SERTrainConfig(data=[f"csv={tiny_csv}"], out=str(out), **{**base, **kw})


def test_loso_resumes_a_fold_cut_by_a_limit_and_eval_reports_it(tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "loso"
    cut = _fold_cfg(tiny_csv, out, max_steps=1)  # every fold stops after 1 step
    train_ser_loso(cut, "tiny")
    rep = evaluate_ser(out, cut.data, tmp_path / "r1")
    assert sorted(rep["cut_short_folds"]) == sorted(rep["folds"]) and rep["missing_folds"] == []

    (out / "fold_tiny-11" / "ser_history.json").unlink()  # as if that fold were still training
    rep = evaluate_ser(out, cut.data, tmp_path / "r2")
    assert rep["missing_folds"] == ["fold_tiny-11"] and "fold_tiny-11" not in rep["folds"]

    res = train_ser_loso(_fold_cfg(tiny_csv, out), "tiny")  # no limit: every fold resumes and finishes
    assert all(r["stopped"] in ("epochs", "early_stopping") and len(r["history"]) == 2 for r in res.values())


def test_loso_and_single_runs_keep_their_own_folders(tiny_csv: Path, tmp_path: Path):
    from emort.training.ser import train_ser

    single = tmp_path / "single"
    train_ser(_fold_cfg(tiny_csv, single, epochs=1, val_speakers=["tiny/10"]))
    with pytest.raises(EmortError, match="single SER run"):
        train_ser_loso(_fold_cfg(tiny_csv, single), "tiny")
    loso = tmp_path / "loso"
    loso.mkdir()
    (loso / "loso.json").write_text(json.dumps({"corpus": "tiny", "folds": []}))
    with pytest.raises(EmortError, match="leave-one-speaker-out folds"):
        train_ser(_fold_cfg(tiny_csv, loso, val_speakers=["tiny/10"]))
    with pytest.raises(EmortError, match="another corpus"):
        train_ser_loso(_fold_cfg(tiny_csv, loso), "emodb")


def test_resume_refuses_another_architecture(tiny_csv: Path, tmp_path: Path):
    from emort.training.ser import train_ser

    out = tmp_path / "run"
    train_ser(_fold_cfg(tiny_csv, out, epochs=1, max_steps=1, preset="small-v0.1", val_speakers=["tiny/10"]))
    # `small` has the same weight shapes as `small-v0.1` but a strided stem.
    with pytest.raises(EmortError, match="another architecture"):
        train_ser(_fold_cfg(tiny_csv, out, epochs=2, preset="small", val_speakers=["tiny/10"]))
