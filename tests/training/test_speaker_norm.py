"""Speaker normalisation: statistics per speaker, used in training and in evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.evaluation.ser_eval import evaluate_ser  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402
from emort.training import corpora  # noqa: E402
from emort.training.data import NormStats, per_speaker_stats, residual_std, utterance_stats  # noqa: E402
from emort.training.ser import SERTrainConfig, eval_stats, train_ser  # noqa: E402


def test_per_speaker_stats_use_only_that_speakers_clips():
    rng = np.random.default_rng(0)
    a = [rng.normal(1.0, 2.0, (4, 50)).astype(np.float32) for _ in range(3)]
    b = [rng.normal(-3.0, 0.5, (4, 70)).astype(np.float32) for _ in range(2)]
    mels, spk = [a[0], b[0], a[1], b[1], a[2]], ["A", "B", "A", "B", "A"]
    st = per_speaker_stats(mels, spk)
    cat_a = np.concatenate(a, axis=1)
    assert np.allclose(st[0].mean, cat_a.mean(1), atol=1e-5) and np.allclose(st[0].std, cat_a.std(1), atol=1e-5)
    assert st[0] is st[2] is st[4] and st[1] is st[3]
    assert np.allclose(st[1].mean, np.concatenate(b, axis=1).mean(1), atol=1e-5)
    # After normalisation each speaker is zero-mean, whatever its level.
    for s in ("A", "B"):
        z = np.concatenate([st[k].apply(m) for k, m in enumerate(mels) if spk[k] == s], axis=1)
        assert np.allclose(z.mean(1), 0, atol=1e-4)


def test_utterance_stats_need_only_the_clip():
    """Each clip loses its own per-band mean (a level or channel offset constant over the clip
    changes nothing) and takes the fixed scale; the scale is the std around each clip's mean."""
    rng = np.random.default_rng(1)
    mels = [rng.normal(k, 1.0 + k, (3, 40 + 10 * k)).astype(np.float32) for k in range(3)]
    std = residual_std(mels)
    cat = np.concatenate([m - m.mean(1, keepdims=True) for m in mels], axis=1)
    assert np.allclose(std, cat.std(1), atol=1e-5)
    st = utterance_stats(mels, std)
    for m, s in zip(mels, st):
        z = s.apply(m)
        assert np.allclose(z.mean(1), 0, atol=1e-4) and s.std is std
        offset = np.array([[2.0], [-1.0], [0.5]], np.float32)  # a channel's per-band gain, in log units
        assert np.allclose(utterance_stats([m + offset], std)[0].apply(m + offset), z, atol=1e-4)


def test_eval_stats_follow_the_run():
    mels = [np.zeros((2, 5), np.float32) + k for k in range(4)]
    items = [corpora.Item(f"/x/{k}.wav", "sad", s, "c") for k, s in enumerate(["1", "1", "2", "2"])]
    glob = {"norm": NormStats(np.zeros(2, np.float32), np.ones(2, np.float32)).to_dict(), "train": {"norm": "global"}}
    assert isinstance(eval_stats(glob, mels, items), NormStats)
    utt = eval_stats({**glob, "train": {"norm": "utterance"}}, mels, items)
    assert len(utt) == 4 and [float(u.mean[0]) for u in utt] == [0.0, 1.0, 2.0, 3.0] and all(np.all(u.std == 1) for u in utt)
    per = eval_stats({**glob, "train": {"norm": "speaker"}}, mels, items)
    assert [float(s.mean[0]) for s in per] == [0.5, 0.5, 2.5, 2.5]


def test_speaker_norm_run_trains_and_evaluates(tiny_csv: Path, tmp_path: Path):
    data = [f"csv={tiny_csv}"]
    out = tmp_path / "spk"
    cfg = SERTrainConfig(data=data, out=str(out), preset="tiny", batch_size=8, crop_s=1.0, epochs=1, max_steps=3, norm="speaker",
                         test_speakers=["tiny/11"], val_speakers=["tiny/10"], progress=False)
    train_ser(cfg)
    rep = evaluate_ser(out, data, tmp_path / "report")
    assert rep["normalisation"].startswith("per speaker")
    assert "per speaker" in (tmp_path / "report" / "ser_eval.md").read_text()
    with pytest.raises(EmortError, match="unknown normalisation"):
        train_ser(SERTrainConfig(data=data, out=str(tmp_path / "x"), preset="tiny", norm="cepstral", progress=False))


def test_utterance_norm_run_trains_and_evaluates(tiny_csv: Path, tmp_path: Path):
    data = [f"csv={tiny_csv}"]
    out = tmp_path / "utt"
    cfg = SERTrainConfig(data=data, out=str(out), preset="tiny", batch_size=8, crop_s=1.0, epochs=1, max_steps=3, norm="utterance",
                         gain_db=6.0, test_speakers=["tiny/11"], val_speakers=["tiny/10"], progress=False)  # augmented: normalised after it
    train_ser(cfg)
    import json

    run = json.loads((out / "ser.json").read_text())
    assert run["train"]["norm"] == "utterance" and not any(run["norm"]["mean"]) and all(v > 0 for v in run["norm"]["std"])
    rep = evaluate_ser(out, data, tmp_path / "report")
    assert rep["normalisation"].startswith("per utterance")
