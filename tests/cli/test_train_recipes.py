"""``emort train ser --recipe FILE``: recipe files set SERTrainConfig fields, explicit flags win,
mistakes are one line naming the file and the key, and the run records what it used."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emort.cli.app import app

pytest.importorskip("torch", reason="train ser needs the [train] extra")

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def captured(monkeypatch):
    """Run `train ser` up to the config: the SERTrainConfig it would train with."""
    import emort.training.ser as ser

    seen: dict = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        return {"best_val_ua": 0.5, "best_epoch": 1}

    def fake_loso(cfg, corpus):
        seen["cfg"], seen["loso"] = cfg, corpus
        return {}

    monkeypatch.setattr(ser, "train_ser", fake_train)
    monkeypatch.setattr(ser, "train_ser_loso", fake_loso)
    return seen


def _recipe(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _train(tmp_path: Path, *args: str):
    return runner.invoke(app, ["train", "ser", "--data", "csv=x.csv", "--out", str(tmp_path / "run"), *args])


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in result.output, err
    for n in needles:
        assert n in err, err
    return err


def test_recipe_sets_fields(tmp_path, captured):
    r = _recipe(tmp_path, 'norm = "speaker"\ncorpus_balance = true\nlr = 1\npatience = 5\ntest_speakers = ["emodb/03"]\n')
    res = _train(tmp_path, "--recipe", str(r))
    assert res.exit_code == 0, res.output
    cfg = captured["cfg"]
    assert (cfg.norm, cfg.corpus_balance, cfg.patience, cfg.test_speakers) == ("speaker", True, 5, ["emodb/03"])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # a TOML int is taken for a float field
    assert cfg.fit_val is False and cfg.epochs == 60  # untouched fields keep the defaults
    assert cfg.recipe["files"] == [str(r)] and cfg.recipe["values"]["norm"] == "speaker" and cfg.recipe["overridden"] == {}


def test_explicit_flag_overrides_recipe_even_at_its_default_value(tmp_path, captured):
    r = _recipe(tmp_path, 'preset = "tiny"\nseed = 3\nepochs = 7\n')
    res = _train(tmp_path, "--recipe", str(r), "--seed", "0")  # 0 is also the flag's default
    assert res.exit_code == 0, res.output
    cfg = captured["cfg"]
    assert (cfg.seed, cfg.epochs, cfg.preset) == (0, 7, "tiny")
    assert cfg.recipe["overridden"] == {"seed": 0}


def test_later_recipe_overrides_earlier(tmp_path, captured):
    a = _recipe(tmp_path, 'norm = "speaker"\nsplit = "random"\n', "a.toml")
    b = _recipe(tmp_path, 'split = "speakers"\n', "b.toml")
    assert _train(tmp_path, "--recipe", str(a), "--recipe", str(b)).exit_code == 0
    cfg = captured["cfg"]
    assert (cfg.norm, cfg.split) == ("speaker", "speakers")
    assert cfg.recipe["files"] == [str(a), str(b)]


def test_unknown_key_is_one_line_naming_file_and_key(tmp_path, captured):
    r = _recipe(tmp_path, 'norm = "speaker"\nlearning_rate = 0.1\n')
    _one_line_error(_train(tmp_path, "--recipe", str(r)), str(r), "'learning_rate'")
    assert "cfg" not in captured


@pytest.mark.parametrize("text, needles", [
    ("out = 'elsewhere'\n", ["'out'", "command line"]),
    ("fit_val = 'yes'\n", ["'fit_val'", "bool"]),
    ("norm = 'per-speaker'\n", ["'norm'", "global, speaker"]),
    ("ema = 1.5\n", ["'ema'", "[0, 1)"]),
    ("norm = speaker\n", ["not a valid TOML"]),
])
def test_bad_recipe_is_one_line(tmp_path, captured, text, needles):
    r = _recipe(tmp_path, text)
    _one_line_error(_train(tmp_path, "--recipe", str(r)), str(r), *needles)


def test_missing_recipe_file(tmp_path, captured):
    _one_line_error(_train(tmp_path, "--recipe", str(tmp_path / "nope.toml")), "nope.toml", "cannot read")


def test_loso_refuses_a_random_split_recipe(tmp_path, captured):
    err = _one_line_error(_train(tmp_path, "--recipe", str(REPO / "recipes" / "paper.toml"), "--loso", "emodb"), "speaker protocol")
    assert "paper.toml" in err and "cfg" not in captured


def test_paper_recipe_is_the_former_paper_flag(tmp_path, captured):
    """recipes/paper.toml gives what `--paper` (SERTrainConfig.paper) gave."""
    assert _train(tmp_path, "--recipe", str(REPO / "recipes" / "paper.toml")).exit_code == 0
    cfg = captured["cfg"]
    former = dict(split="random", optimizer="adam", lr=1e-4, weight_decay=0.0, specaugment=False, mixup_alpha=0.0,
                  label_smoothing=0.0, balance=False, preset="resnet50")
    assert {k: getattr(cfg, k) for k in former} == former


def test_shipped_recipes_load():
    from emort.training.ser import load_recipe

    files = sorted((REPO / "recipes").glob("*.toml"))
    assert len(files) >= 6
    for f in files:
        assert load_recipe(f), f


def test_flag_defaults_match_the_config():
    from emort.cli.train import SER_FLAG_DEFAULTS, SER_PRESETS
    from emort.training.models.ser import SER_PRESETS as MODEL_PRESETS
    from emort.training.ser import SERTrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(SERTrainConfig)}
    assert {k: defaults[k] for k in SER_FLAG_DEFAULTS} == SER_FLAG_DEFAULTS
    assert set(SER_PRESETS) == set(MODEL_PRESETS)


def test_run_records_the_recipe(tmp_path, shared_data, monkeypatch):
    """A real (one-step) run: ser.json's train section names the recipe file and its values."""
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    sys.path.insert(0, str(REPO / "tests"))
    from tiny import write_manifest

    csv = write_manifest(shared_data, tmp_path / "tiny.csv", per_emotion=1)
    r = _recipe(tmp_path, 'crop_s = 1.0\nbatch_size = 4\ntest_speakers = []\nval_speakers = ["tiny/10"]\nspecaugment = false\n')
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "ser", "--data", f"csv={csv}", "--out", str(out), "--recipe", str(r), "--preset", "tiny",
                              "--epochs", "1", "--max-steps", "1", "--threads", "1"])
    assert res.exit_code == 0, res.output
    train = json.loads((out / "ser.json").read_text())["train"]
    assert train["recipe"]["files"] == [str(r)]
    assert train["recipe"]["values"] == {"crop_s": 1.0, "batch_size": 4, "test_speakers": [], "val_speakers": ["tiny/10"], "specaugment": False}
    assert train["batch_size"] == 4 and train["preset"] == "tiny" and train["max_steps"] == 1
