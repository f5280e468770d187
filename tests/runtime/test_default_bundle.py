"""The bundle shipped inside the package: valid, small, and usable with no --bundle (no torch needed)."""

import json

import numpy as np
import pytest
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
    # defaults: the calibrated edit chosen on the validation speakers (docs/eval/)
    assert b.defaults.calibrated and b.defaults.method == "direction" and b.defaults.amount_db > 0
    b.defaults.validate()
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
    assert sr == src.samplerate and len(wav) == src.frames  # the input's own rate and length
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


def test_calibrated_amount_is_reached_at_the_inputs_rate_and_pauses_stay(ravdess_files):
    """RAVDESS: 48 kHz with a leading pause. The edit moves speech by the asked amount; the
    pause's noise floor does not rise (0.4 lifted it by a median 12 dB)."""
    from emort import Enhancer
    from emort.runtime.audio import resample
    from emort.runtime.frontend import active_frames, log_mel
    from emort.runtime.settings import DEFAULT_MEL

    enh = Enhancer.load(device="cpu")
    wav, sr = sf.read(ravdess_files[0], dtype="float32")
    for amount in (1.0, 3.0):
        r = enh.enhance(wav, sr, "angry", amount_db=amount)
        assert r.sample_rate == sr == 48000 and r.wav.shape == wav.shape
        assert r.change_db == pytest.approx(amount, rel=1e-3)
    mel = log_mel(resample(wav, sr, DEFAULT_MEL.sample_rate), DEFAULT_MEL)
    act = active_frames(mel)
    first = int(np.argmax(act))
    assert first > 10  # the clip starts with a pause
    pause = slice(0, (first - 5) * DEFAULT_MEL.hop_length * sr // DEFAULT_MEL.sample_rate)
    rise_db = 20 * np.log10(np.std(r.wav[pause]) / np.std(wav[pause]))
    assert abs(rise_db) < 0.5


def test_dc_offset_is_not_read_as_emotion_nor_carried_into_the_output(emodb_files):
    from emort import Enhancer

    enh = Enhancer.load(device="cpu")
    wav, sr = sf.read(emodb_files[0], dtype="float32")
    clean = enh.enhance(wav, sr, "angry", amount_db=2.0)
    for dc in (0.01, 0.1):
        off = enh.enhance(wav + dc, sr, "angry", amount_db=2.0)
        for k, v in clean.scores_before.items():
            assert abs(off.scores_before[k] - v) < 0.02, (dc, k)  # 0.4: +0.01 DC moved P(angry) 0.82 -> 0.45
        assert abs(float(off.wav.mean())) < 1e-3
        assert off.change_db == pytest.approx(2.0, rel=1e-3)
    # identity still returns the input untouched, offset and all
    same = enh.enhance(wav + 0.01, sr, "angry", amount_db=0.0)
    np.testing.assert_array_equal(same.wav, wav + np.float32(0.01))


def test_scores_after_of_an_unedited_output_equal_scores_before(ravdess_files):
    """The output is scored through the same front-end as the input (DC offset removed):
    at amount 0 the two agree (0.5.0 first read 0.654 -> 0.749 on an offset clip)."""
    from emort import Enhancer, Scorer

    enh = Enhancer.load(device="cpu")
    for f in ravdess_files[:3]:
        wav, sr = sf.read(f, dtype="float32")
        wav = wav + np.float32(0.02)  # an offset, as some recordings carry
        r = enh.enhance(wav, sr, "angry", amount_db=0.0, score_output=True)
        for k, v in r.scores_before.items():
            assert abs(r.scores_after[k] - v) < 1e-3, (f, k)
        single = Scorer.load(device="cpu", level_robust=False).score(r.wav, r.sample_rate).scores  # the edit's SER scores them
        assert max(abs(single[k] - r.scores_after[k]) for k in single) < 1e-3
