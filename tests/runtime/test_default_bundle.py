"""The bundle shipped inside the package: valid, small, and usable with no --bundle (no torch needed)."""

import json

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle


def test_default_bundle_is_valid_and_small():
    b = load_bundle()  # verifies every sha256
    assert b.path == DEFAULT_BUNDLE
    size_mb = sum(f.stat().st_size for f in DEFAULT_BUNDLE.iterdir()) / 1e6
    assert size_mb <= 40
    assert b.labels == ["neutral", "happy", "sad", "angry", "fear", "disgust"]
    assert set(b.centroids) == set(b.labels)
    # defaults come from the evaluation sweep (docs/eval/sweep/defaults.json; steps per the model card)
    assert {"strength", "guidance", "steps", "sampler"} <= set(b.defaults)
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").exists()


def test_default_enhance_and_score_real_clip(tmp_path, emodb_files):
    from emort.cli.app import app

    out = tmp_path / "o"
    rep = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["enhance", str(emodb_files[0]), "--emotion", "angry", "--out", str(out), "--json", str(rep)])
    assert r.exit_code == 0, r.output
    res = json.loads(rep.read_text())["results"][0]
    wav, sr = sf.read(res["output"], dtype="float32")
    src = sf.info(emodb_files[0])
    assert sr == 22050 and abs(len(wav) / sr - src.duration) < 0.01
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0.01
    r = CliRunner().invoke(app, ["score", str(out)])
    assert r.exit_code == 0, r.output


def test_default_bundle_ships_a_per_speaker_scorer_trained_off_the_test_speakers():
    b = load_bundle()
    assert b.has_speaker_scorer
    tr = b.manifest["training"]["ser_speaker"]
    assert tr["train"]["norm"] == "speaker"
    held_out = {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22"}  # the test speakers of every reported figure
    assert not held_out & set(tr["split"]["train_speakers"]) and not held_out & set(tr["split"]["val_speakers"])
