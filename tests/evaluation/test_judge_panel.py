"""JudgePanel: three feature families, one 16 kHz path, reference statistics of the originals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("sklearn")
pytest.importorskip("librosa")
pytest.importorskip("opensmile", reason="the [eval] extra is not installed")
pytest.importorskip("resemblyzer", reason="pip install --no-deps resemblyzer")

from emort.evaluation.judge_panel import (  # noqa: E402
    JUDGE_CLASSES,
    NUM_EGEMAPS,
    EgemapsJudge,
    JudgePanel,
    NeuralJudge,
    PanelTiming,
    StatsJudge,
    egemaps_feature_names,
)
from emort.evaluation.speaker_embedding import embedding_input, speaker_embedding  # noqa: E402
from emort.runtime.settings import EMOTIONS  # noqa: E402
from emort.training.corpora import Item  # noqa: E402

WIDTHS = {"J1": StatsJudge.num_features, "J2": NUM_EGEMAPS, "J3": 256}


def voice(
    f0_hz: float, sr: int, seconds: float = 1.5, amp: float = 0.2, seed: int = 0
) -> np.ndarray:
    """A vowel-like harmonic tone with vibrato and a little noise, content below 6 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0_hz * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    n_harm = int(6000 // (f0_hz * 1.03))
    x = sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))
    x = x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))
    env = np.minimum(1, np.minimum(t, t[-1] - t) / 0.1)  # 100 ms fades
    return (amp * x * env).astype(np.float32)


def synthetic_features(rng, n_per: int = 12, speakers=("a", "b", "c", "d")):
    """Per judge, features where the label is carried by dimensions 0-7 relative to the speaker's
    own mean, on top of a large per-speaker offset (what per-speaker z-scoring removes)."""
    feats = {n: [] for n in WIDTHS}
    labels, spk = [], []
    for s_i, s in enumerate(speakers):
        for y in (0, 1, 2):
            for _ in range(n_per):
                for n, d in WIDTHS.items():
                    v = rng.normal(0, 1, d) + 10.0 * s_i
                    v[:8] += 3.0 * y
                    feats[n].append(v)
                labels.append(y)
                spk.append(s)
    return {n: np.array(v, dtype=np.float32) for n, v in feats.items()}, np.array(labels), spk


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    feats, y, spk = synthetic_features(rng)
    return JudgePanel().fit_features(feats, y, spk), rng


def test_panel_has_three_judges_of_three_families():
    p = JudgePanel()
    assert p.names == ["J1", "J2", "J3"]
    assert [type(j) for j in p.judges.values()] == [StatsJudge, EgemapsJudge, NeuralJudge]
    assert len({type(j).kind for j in p.judges.values()}) == 3
    assert len(egemaps_feature_names()) == NUM_EGEMAPS == 88


def test_fit_and_predict_on_synthetic_features(fitted):
    panel, rng = fitted
    feats, y, spk = synthetic_features(rng, n_per=6, speakers=("e", "f"))
    ref = panel.reference(feats, spk)
    probs = panel.predict_proba(feats, spk, ref)
    for n, p in probs.items():
        assert p.shape == (len(y), len(EMOTIONS))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(p[:, 3:] == 0)  # classes absent from training keep probability 0
        assert (p.argmax(axis=1) == y).mean() > 0.8, n


def test_reference_is_the_originals_not_the_outputs(fitted):
    """A shift applied to ALL of a speaker's outputs moves the judges only when the
    reference statistics are the originals'; the outputs' own statistics cancel it."""
    panel, rng = fitted
    orig, y, spk = synthetic_features(rng, n_per=6, speakers=("e",))
    out = {n: v.copy() for n, v in orig.items()}
    for v in out.values():
        v[:, :8] += 3.0  # every clip one class "up"
    ref_orig = panel.reference(orig, spk)
    p_orig = panel.predict_proba(orig, spk, ref_orig)
    p_out = panel.predict_proba(out, spk, ref_orig)
    p_self = panel.predict_proba(out, spk, panel.reference(out, spk))
    for n in panel.names:
        np.testing.assert_allclose(p_self[n], p_orig[n], atol=1e-9)  # normalised away
        # Seen against the originals: class-0 clips shifted one class up now look like class 1.
        m = y == 0
        assert p_out[n][m, 1].mean() > p_orig[n][m, 1].mean() + 0.3, n


def test_width_is_checked(fitted):
    panel, _ = fitted
    with pytest.raises(ValueError, match=r"expects \(N, 88\)"):
        panel.judges["J2"].predict_proba(np.zeros((2, 5)), ["a", "a"], None)
    with pytest.raises(RuntimeError, match="not fitted"):
        NeuralJudge().predict_proba(np.zeros((1, 256)), ["a"])


def test_distance_range_and_far_class(fitted):
    """Clips near their speaker's originals are within the training range; the same clips moved
    far from them are beyond it, and there every judge gives one class whatever the direction."""
    panel, rng = fitted
    orig, y, spk = synthetic_features(rng, n_per=6, speakers=("e",))
    ref = panel.reference(orig, spk)
    d = panel.distance(orig, spk, ref)
    for n in panel.names:
        assert d[n].shape == (len(y),)
        assert 0.5 < float(np.median(d[n])) < 2.0, n  # about 1 for typical clips
        assert panel.judges[n].range_limit > float(np.median(d[n])), n
    assert np.mean(panel.beyond_range(orig, spk, ref)["J1"]) < 0.2
    train, _, train_spk = synthetic_features(np.random.default_rng(0))  # the fixture's training rows
    for n, j in panel.judges.items():
        assert j.range_limit == pytest.approx(np.percentile(j.distance(train[n], train_spk, None), 95)), n
    far = {n: v + rng.normal(0, 1, v.shape).astype(np.float32) * 200 * v.std(axis=0) for n, v in orig.items()}
    assert all(b.all() for b in panel.beyond_range(far, spk, ref).values())
    classes = panel.far_classes()
    assert set(classes) == set(panel.names) and all(c in EMOTIONS[:3] for c in classes.values())
    heard = panel.predict_proba(far, spk, ref)
    for n in panel.names:
        assert np.all(heard[n].argmax(axis=1) == EMOTIONS.index(classes[n])), n


def test_save_load_roundtrip(fitted, tmp_path):
    panel, rng = fitted
    feats, _, spk = synthetic_features(rng, n_per=3, speakers=("a",))
    ref = panel.reference(feats, spk)
    panel.save(tmp_path / "panel.joblib")
    again = JudgePanel.load(tmp_path / "panel.joblib")
    assert again.names == panel.names and again.labels == panel.labels
    a, b = panel.predict_proba(feats, spk, ref), again.predict_proba(feats, spk, ref)
    for n in panel.names:
        np.testing.assert_array_equal(a[n], b[n])
        assert again.judges[n].range_limit == panel.judges[n].range_limit


def test_wav_features_shapes_and_one_common_rate():
    """The same tone synthesised at 16 and 48 kHz gives (almost) the same features:
    everything is analysed at 16 kHz, so the source rate is not a feature."""
    f16 = JudgePanel().wav_features([(voice(140.0, 16000), 16000)])
    f48 = JudgePanel().wav_features([(voice(140.0, 48000), 48000)])
    for n, d in WIDTHS.items():
        assert f16[n].shape == f48[n].shape == (1, d)
        assert np.all(np.isfinite(f16[n]))
    # GE2E embeddings are unit vectors: a 48 -> 16 kHz resample barely moves them.
    assert float(f16["J3"][0] @ f48["J3"][0]) > 0.99
    # J3's row IS the speaker embedding of fidelity.speaker_similarity_resemblyzer.
    np.testing.assert_array_equal(f48["J3"][0], speaker_embedding(voice(140.0, 48000), 48000))
    i = egemaps_feature_names().index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert f48["J2"][0, i] == pytest.approx(f16["J2"][0, i], abs=0.2)


def test_items_features_match_in_memory_path_and_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    x = voice(180.0, 48000)
    path = tmp_path / "clip.flac"
    sf.write(path, x, 48000)
    item = Item(str(path), "happy", "s1", "test")
    panel = JudgePanel()
    t1 = PanelTiming()
    a = panel.items_features([item], timing=t1)
    assert t1.decoded == 1 and t1.computed == {"J1": 1, "J2": 1, "J3": 1}
    b = panel.wav_features([(sf.read(path, dtype="float32")[0], 48000)])
    t2 = PanelTiming()
    c = panel.items_features([item], timing=t2)
    assert t2.decoded == 0 and t2.cached == {"J1": 1, "J2": 1, "J3": 1}
    for n in panel.names:
        np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(a[n], c[n])
    # A rewritten file (new mtime) is recomputed, not served stale.
    sf.write(path, 0.5 * x, 48000)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    t3 = PanelTiming()
    d = panel.items_features([item], timing=t3)
    assert t3.decoded == 1
    assert not np.allclose(d["J2"], a["J2"])  # eGeMAPS loudness follows the level


def test_missing_file_is_a_one_line_error(tmp_path):
    from emort.runtime.errors import MissingAudioError

    with pytest.raises(MissingAudioError, match="no such file"):
        JudgePanel().items_features([Item(str(tmp_path / "gone.wav"), "sad", "s", "test")])


def test_embedding_is_deterministic_and_gain_invariant():
    x = voice(120.0, 16000, seed=1)
    e1, e2 = speaker_embedding(x, 16000), speaker_embedding(x, 16000)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_allclose(speaker_embedding(0.25 * x, 16000), e1, atol=1e-5)
    w = embedding_input(x, 16000)
    assert 20 * np.log10(np.sqrt(np.mean(w.astype(np.float64) ** 2))) == pytest.approx(
        -30.0, abs=0.01
    )
    # Resemblyzer's VAD trimming stays available and deterministic.
    assert np.array_equal(
        embedding_input(x, 16000, vad_trim=True), embedding_input(x, 16000, vad_trim=True)
    )


def test_fit_from_items_drops_other_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    items = []
    for s, base in (("s1", 110.0), ("s2", 200.0)):
        for emo, k in (("sad", 0.8), ("angry", 1.3), ("calm", 1.0)):
            for r in range(3):
                p = tmp_path / f"{s}_{emo}_{r}.wav"
                sf.write(p, voice(base * k, 16000, seconds=1.0, amp=0.1 * k, seed=r), 16000)
                items.append(Item(str(p), emo, s, "test"))
    panel = JudgePanel().fit(items)
    for j in panel.judges.values():
        assert set(j.classifier._svm.classes_) == {EMOTIONS.index("sad"), EMOTIONS.index("angry")}
    assert set(JUDGE_CLASSES) == set(panel.names)


@pytest.mark.slow
def test_real_emodb_judges_beat_chance(emodb_root, tmp_path, monkeypatch):
    """Fit on two EmoDB training speakers, judge a third (original clips; UA 0.6-0.9 seen)."""
    from emort.evaluation.metrics import classification_report
    from emort.training.corpora import only_canonical, read_emodb
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    monkeypatch.setenv("EMORT_CACHE", str(tmp_path / "cache"))
    items = [
        i
        for i in only_canonical(read_emodb(emodb_root))
        if i.speaker_key not in set(TEST_SPEAKERS) | set(VAL_SPEAKERS)
    ]
    speakers = sorted({i.speaker_key for i in items})[:3]
    train = [i for i in items if i.speaker_key in speakers[:2]]
    held = [i for i in items if i.speaker_key == speakers[2]]
    panel = JudgePanel().fit(train)
    f = panel.items_features(held)
    spk = [i.speaker_key for i in held]
    probs = panel.predict_proba(f, spk, panel.reference(f, spk))
    y = [EMOTIONS.index(i.emotion) for i in held]
    for n, p in probs.items():
        assert classification_report(y, p.argmax(axis=1), EMOTIONS).ua > 0.35, n
