"""Fidelity in dB over active frames, Resemblyzer speaker similarity, take-to-take yardstick."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emort.evaluation.fidelity import NATS_TO_DB, log_mel_change_db, take_pairs, take_to_take
from emort.runtime.settings import DEFAULT_MEL
from emort.training.corpora import Item

SR = DEFAULT_MEL.sample_rate


def noise(seconds: float, amp: float = 0.1, seed: int = 0, sr: int = SR) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def voice(
    f0_hz: float, sr: int, seconds: float = 1.5, amp: float = 0.2, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, int(6000 // (f0_hz * 1.03)) + 1))
    return (amp * (x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t)))).astype(np.float32)


def test_db_scale_is_20_log10_of_magnitude():
    assert NATS_TO_DB == pytest.approx(8.686, abs=1e-3)
    x = noise(1.0)
    assert log_mel_change_db(x, x) == 0.0
    assert log_mel_change_db(x, 2 * x) == pytest.approx(20 * np.log10(2), abs=0.01)


def test_only_active_frames_count():
    # Speech-like noise then 1 s of digital silence: the silent half is not averaged in.
    x = np.concatenate([noise(1.0), np.zeros(SR, np.float32)])
    assert log_mel_change_db(x, 2 * x) == pytest.approx(6.02, abs=0.05)
    # Sound added in the pause counts: the pause is active in the second clip.
    y = np.concatenate([noise(1.0), noise(1.0, amp=0.05, seed=1)])
    assert log_mel_change_db(x, y) > 20.0


def test_dtw_pairs_frames_of_a_shifted_take():
    def take(lead_s: float) -> np.ndarray:
        z = np.zeros(int(lead_s * SR), np.float32)
        x = np.concatenate([z, voice(150.0, SR, 1.0), np.zeros(SR // 4, np.float32)])
        return x + noise(len(x) / SR, amp=1e-3, seed=2)  # room noise, same in both takes

    x, late = take(0.25), take(0.5)
    assert log_mel_change_db(x, late, align="dtw") < 0.2 * log_mel_change_db(x, late, align="index")
    with pytest.raises(ValueError, match="align"):
        log_mel_change_db(x, late, align="nearest")


def _items(names, corpus):
    return [
        Item(f"/d/{n}.flac", "x", n.split("-")[-1] if corpus == "ravdess" else n[:2], corpus)
        for n in names
    ]


def test_take_pairs_rules():
    emodb = _items(["03a01Wa", "03a01Wb", "03a01Wc", "03a01Fa", "03a02Wa", "09a01Wa"], "emodb")
    ravdess = _items(
        [
            "03-01-05-01-01-01-07",
            "03-01-05-01-01-02-07",  # pairs with the one above (repetition 01 vs 02)
            "03-01-05-02-01-01-07",  # strong intensity: no partner
            "03-01-05-01-02-01-07",  # other statement: no partner
            "03-01-05-01-01-01-09",  # other actor: no partner
        ],
        "ravdess",
    )
    nemo = [
        Item("/d/IC0_anger_1.flac", "angry", "IC0", "nemo"),
        Item("/d/IC0_anger_2.flac", "angry", "IC0", "nemo"),
    ]
    pairs = take_pairs(emodb + ravdess + nemo)
    got = sorted((a.path.split("/")[-1][:-5], b.path.split("/")[-1][:-5]) for a, b in pairs)
    assert got == [
        ("03-01-05-01-01-01-07", "03-01-05-01-01-02-07"),
        ("03a01Wa", "03a01Wb"),
        ("03a01Wa", "03a01Wc"),
        ("03a01Wb", "03a01Wc"),
    ]


def test_take_to_take_on_files(tmp_path):
    pytest.importorskip("resemblyzer", reason="pip install --no-deps resemblyzer")
    items = []
    for v, seed in (("a", 0), ("b", 1)):
        p = tmp_path / f"11a01W{v}.wav"
        sf.write(p, voice(160.0 * (1 + 0.03 * seed), 16000, seed=seed), 16000)
        items.append(Item(str(p), "angry", "11", "emodb"))
    res = take_to_take(items)
    assert len(res["pairs"]) == 1
    row = res["pairs"][0]
    assert row["speaker"] == "emodb/11" and row["corpus"] == "emodb"
    assert 0.0 < row["log_mel_change_db"] < 20.0
    assert 0.8 < row["speaker_similarity"] <= 1.0 + 1e-6
    s = res["summary"]["all"]["speaker_similarity"]
    assert s["n"] == 1 and s["median"] == pytest.approx(row["speaker_similarity"])


def test_resemblyzer_similarity_rate_and_gain():
    pytest.importorskip("resemblyzer", reason="pip install --no-deps resemblyzer")
    from emort.evaluation.fidelity import speaker_similarity_resemblyzer

    x16, x48 = voice(130.0, 16000), voice(130.0, 48000)
    assert speaker_similarity_resemblyzer(x16, 16000, 3 * x16, 16000) == pytest.approx(
        1.0, abs=1e-5
    )
    same = speaker_similarity_resemblyzer(x16, 16000, x48, 48000)
    other = speaker_similarity_resemblyzer(x16, 16000, noise(1.5, sr=16000), 16000)
    assert same > 0.99 and other < same - 0.1


def test_real_ravdess_takes(ravdess_root):
    """Two real take pairs of a training actor: similar voices, a few dB apart."""
    pytest.importorskip("resemblyzer", reason="pip install --no-deps resemblyzer")
    from emort.training.corpora import read_ravdess

    actor = [
        i for i in read_ravdess(ravdess_root / "Actor_01") if i.emotion in ("neutral", "angry")
    ]
    pairs = take_pairs(actor)
    assert pairs
    keep = {p.path for a, b in pairs[:2] for p in (a, b)}
    res = take_to_take([i for i in actor if i.path in keep])
    assert res["summary"]["ravdess"]["speaker_similarity"]["n"] == 2
    for row in res["pairs"]:
        assert row["speaker_similarity"] > 0.7
        assert 0.5 < row["log_mel_change_db"] < 15.0
