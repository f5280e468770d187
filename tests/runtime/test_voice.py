"""GE2E voice embeddings in the runtime (emort.runtime.voice) and their place in per-speaker scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime.audio import read_audio
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.errors import BundleError, EmortError
from emort.runtime.scorer import Scorer
from emort.runtime.settings import VoiceSettings
from emort.runtime.ustats import normalise_per_speaker
from emort.runtime.voice import (
    JOINT_FEATURES,
    VOICE_DIM,
    partial_mels,
    pool_windows,
    power_mel,
    voice_input,
    window_starts,
)

runner = CliRunner()
S = VoiceSettings()


def _tone(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    return (0.2 * sum(np.sin(k * ph) / k for k in range(1, 20)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _speaker_dir(d: Path, files) -> Path:
    """A folder of links to ``files``: one speaker's folder for `emort score --per-speaker`."""
    d.mkdir()
    for p in files:
        (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[Path]:
    """Seven clips of one EmoDB speaker (10) and one RAVDESS (48 kHz) and one nEMO (24 kHz) clip."""
    e = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[::6][:7]
    r = sorted((shared_data / "ravdess" / "Actor_19").glob("*.flac"))[:1]
    n = sorted((shared_data / "nemo" / "samples").glob("MP0_*.flac"))[:1]
    return e + r + n


@pytest.mark.parametrize("n", [100, 15_999, 16_000, 25_600, 27_000, 40_000, 47_999, 160_000])
def test_windows_are_resemblyzers(n):
    """The partial windows are the ones Resemblyzer's embed_utterance cuts."""
    resemblyzer = pytest.importorskip("resemblyzer")
    _, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(n, S.partial_rate, S.min_coverage)
    assert window_starts(n, S) == [s.start for s in mel_slices]


def test_partial_mels_are_resemblyzers_mel_windows():
    """numpy power mel (Slaney, 25 / 10 ms, centred, zero padding) == librosa's, window by window."""
    resemblyzer = pytest.importorskip("resemblyzer")
    x = voice_input(_tone(2.7), 16000, S)
    got = partial_mels(x, S)
    wav_slices, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(len(x), S.partial_rate, S.min_coverage)
    padded = np.pad(x, (0, max(0, wav_slices[-1].stop - len(x))))
    mel = resemblyzer.audio.wav_to_mel_spectrogram(padded)
    want = np.stack([mel[s] for s in mel_slices])
    assert got.shape == want.shape == (len(mel_slices), S.partial_frames, S.n_mels)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(want)


def test_level_is_removed_and_pooling_normalises():
    x = _tone(2.0)
    a, b = voice_input(x, 16000, S), voice_input(0.05 * x, 16000, S)
    assert np.allclose(a, b, atol=1e-6)
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(10 ** (S.target_dbfs / 20), rel=1e-4)
    e = pool_windows(np.array([[3.0, 0, 0, 4.0], [3.0, 0, 0, 4.0]]))
    assert np.allclose(e, [0.6, 0, 0, 0.8])


def test_power_mel_blocks_join_seamlessly(monkeypatch):
    """A long clip's power mel is computed in blocks (bounded memory); the blocks equal one pass."""
    import emort.runtime.voice as voice

    x = voice_input(_tone(3.0), 16000, S)
    whole = power_mel(x, S)
    monkeypatch.setattr(voice, "BLOCK_FRAMES", 7)
    assert np.array_equal(power_mel(x, S), whole) and whole.shape == (1 + len(x) // S.hop_length, S.n_mels)


def test_a_dc_offset_and_a_gain_leave_the_embedding_of_a_real_clip_unchanged(clips):
    """At 16 kHz (the encoder's rate) and at 48 and 24 kHz, where the clip is resampled: the offset
    is removed before resampling (embedding version 4; version 3's 1 - cosine was 1.7e-4 at 48 kHz)."""
    sc = Scorer.load(device="cpu", per_speaker=True)
    for p in (clips[0], clips[-2], clips[-1]):  # EmoDB 16 kHz, RAVDESS 48 kHz, nEMO 24 kHz
        a = read_audio(p)
        e = sc.voice.embed(a.samples, a.sample_rate)
        assert float(e @ sc.voice.embed(a.samples + 0.02, a.sample_rate)) > 0.99999, p.name
        assert float(e @ sc.voice.embed(0.2 * a.samples, a.sample_rate)) > 0.9999, p.name


def test_the_runtime_embedding_is_resemblyzers_on_real_clips(clips):
    """The scorer's embedding == Resemblyzer's embed_utterance (its librosa mel, at the scorer's window
    rate) of the input the enhancement evaluation's neural judge prepares (soxr, level normalised both
    ways, no VAD), on clips at 16, 48 and 24 kHz. (Resemblyzer's own preprocess_wav differs on purpose:
    it resamples with librosa and only raises quiet clips.)"""
    pytest.importorskip("resemblyzer")
    pytest.importorskip("torch")
    from emort.evaluation.speaker_embedding import embedding_input, voice_encoder

    sc = Scorer.load(device="cpu", per_speaker=True)
    for p in clips:
        a = read_audio(p)
        want = voice_encoder().embed_utterance(embedding_input(a.samples, a.sample_rate), rate=S.partial_rate,
                                               min_coverage=S.min_coverage)
        assert float(sc.voice.embed(a.samples, a.sample_rate) @ want) >= 0.999, p.name


def test_the_shipped_bundle_carries_the_voice_classifier():
    b = load_bundle()
    assert b.has_voice and b.has_stats
    assert b.models["voice_encoder"].frontend == S
    # since 0.13 one classifier on the statistics classifier's features and the embedding
    assert b.models["stats_voice"].features == JOINT_FEATURES
    assert b.models["stats_voice"].n_features == b.models["stats"].n_features + VOICE_DIM
    assert b.models["stats_voice"].pitch_version == b.models["stats"].pitch_version
    assert Scorer.load(device="cpu", per_speaker=True).needs_voice and Scorer.load(device="cpu", per_speaker=True).joint
    assert not Scorer.load(device="cpu", per_speaker=True, voice=False).needs_voice
    assert not Scorer.load(device="cpu", per_speaker=True, stats=False).needs_voice  # fused into the statistics only
    assert not Scorer.load(device="cpu").needs_voice  # single clips never read it


def test_runtime_embedding_equals_pytorchs_on_real_clips(clips):
    """The ONNX encoder with the numpy front end == Resemblyzer's PyTorch encoder on the same windows,
    on clips at 16, 48 and 24 kHz (what the classifier was fitted on: emort.training.voice)."""
    pytest.importorskip("resemblyzer")
    pytest.importorskip("torch")
    from emort.training.voice import embed

    sc = Scorer.load(device="cpu", per_speaker=True)
    for p in clips:
        a = read_audio(p)
        got = sc.voice.embed(a.samples, a.sample_rate)
        assert got.shape == (VOICE_DIM,)
        assert float(got @ embed(a.samples, a.sample_rate)) >= 0.999, p.name


def _z(rows, reference=None) -> np.ndarray:
    """Rows z-scored over themselves, or over ``reference`` rows (one speaker)."""
    from emort.runtime.ustats import speaker_stats_from

    ref = None if reference is None else speaker_stats_from(reference, ["s"] * len(reference))
    return normalise_per_speaker(rows, ["s"] * len(rows), ref).astype(np.float32)


def test_per_speaker_scores_are_the_joint_classifiers_on_both_feature_sets(clips):
    """The shipped voice classifier reads the statistics classifier's features and the embedding,
    each z-scored over the speaker's clips, in place of the statistics classifier."""
    sc = Scorer.load(device="cpu", per_speaker=True)
    plain = Scorer.load(device="cpu", per_speaker=True, voice=False)
    analyses = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:7])]
    labels = sc.bundle.labels
    got = np.array([[s.scores[k] for k in labels] for s in sc.score_analyses(analyses)])
    without = np.array([[s.scores[k] for k in labels] for s in plain.score_analyses(
        [type(a)(a.log_mel, a.pitch) for a in analyses])])
    stats = sc._stats_features([a.log_mel for a in analyses], [a.pitch for a in analyses])
    x = np.hstack([_z(stats), _z(np.stack([a.voice for a in analyses]))])
    # the shipped SER weight is 0: the scores are the classifier's probabilities
    assert sc.stats_spec.ser_weight == 0
    assert np.allclose(got, sc.stats_voice(X=x)[1], atol=1e-5)
    assert np.allclose(without, sc.stats(X=_z(stats))[1], atol=1e-5)  # --no-voice: the statistics classifier
    assert not np.allclose(got, without, atol=1e-3)  # the voice classifier does move the scores


def test_reference_mode_z_scores_both_feature_sets_over_the_references(clips, shared_data):
    sc = Scorer.load(device="cpu", per_speaker=True)
    refs = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[1::6][:7]
    an = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:7])]
    ref = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, refs)]
    labels = sc.bundle.labels
    got = np.array([[s.scores[k] for k in labels] for s in sc.score_analyses(an, reference=ref)])
    feats = lambda xs: sc._stats_features([a.log_mel for a in xs], [a.pitch for a in xs])  # noqa: E731
    voice = lambda xs: np.stack([a.voice for a in xs])  # noqa: E731
    x = np.hstack([_z(feats(an), feats(ref)), _z(voice(an), voice(ref))])
    assert np.allclose(got, sc.stats_voice(X=x)[1], atol=1e-5)
    own = np.array([[s.scores[k] for k in labels] for s in sc.score_analyses(an)])
    assert not np.allclose(got, own, atol=1e-3)  # the references' statistics, not the clips' own


def test_a_joint_classifier_of_another_f0_analysis_is_refused(tmp_path):
    """The joint classifier reads the F0 statistics the statistics classifier's analysis computes."""
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    m["models"]["stats_voice"]["pitch_version"] = 1
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="reads ustats\\+pitch statistics of F0 version 1, but its statistics classifier is "
                                          "ustats\\+pitch of F0 version 2; export a voice classifier fitted with it .*--no-voice"):
        Scorer.load(b, device="cpu", per_speaker=True)
    assert not Scorer.load(b, device="cpu", per_speaker=True, voice=False).needs_voice


def test_small_groups_need_no_voice_embeddings_without_the_voice_classifier(clips):
    """With --no-voice, fewer than MIN_GROUP clips get the SER alone: no statistics, so no embeddings are needed."""
    sc = Scorer.load(device="cpu", per_speaker=True, voice=False)
    assert not sc.reads_small_groups
    mels = [sc.log_mel(a.samples, a.sample_rate) for a in map(read_audio, clips[:3])]
    got = sc.score_group(mels)
    assert len(got) == 3 and not any(s.fused for s in got)


def test_small_groups_are_read_by_the_ser_with_the_single_clip_classifier(clips):
    """A group of 1-4 clips: the per-speaker SER on the group's z-scored log-mels, fused (geometric
    mean) with stats_clip on each clip's own statistics and GE2E embedding (docs/ser/small_groups)."""
    from emort.runtime.frontend import fit_norm
    from emort.runtime.ustats import fuse_weighted

    sc = Scorer.load(device="cpu", per_speaker=True)
    alone = Scorer.load(device="cpu", per_speaker=True, voice=False)
    single = Scorer.load(device="cpu", clip_stats=True)
    assert sc.reads_small_groups and sc.needs_pitch and sc.needs_voice
    labels = sc.bundle.labels
    analyses = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:3])]
    mels = [a.log_mel for a in analyses]
    got = sc.score_analyses(analyses)
    mean, std = fit_norm(mels)
    p_ser = np.array([[s.scores[k] for k in labels] for s in alone.score_group(mels)])
    assert np.allclose(p_ser, [[s.scores[k] for k in labels] for s in alone.score_mels([(m - mean[:, None]) / std[:, None] for m in mels])])
    rows = np.hstack([sc._stats_features(mels, [a.pitch for a in analyses]), np.stack([a.voice for a in analyses])])
    want = fuse_weighted(p_ser, single.clip_stats(X=rows.astype(np.float32))[1], 1.0)
    assert np.allclose([[s.scores[k] for k in labels] for s in got], want, atol=1e-5) and all(s.fused for s in got)
    assert {s.method for s in got} == {"per-speaker+clip-stats"} and {s.method for s in alone.score_group(mels)} == {"per-speaker"}
    assert not np.allclose(p_ser, want, atol=1e-3)  # the classifier does move the scores
    with pytest.raises(EmortError, match="F0 statistics and voice embedding"):  # it needs them: one clear error
        sc.score_group(mels)
    # from MIN_GROUP clips on, the speaker-normalised classifier as before
    five = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:5])]
    assert all(s.fused and s.method == "per-speaker+stats" for s in sc.score_analyses(five))
    assert {s.method for s in sc.score_analyses(five, reference=five)} == {"reference+stats"}
    a = read_audio(clips[0])  # clips alone say so too, as emort score's JSON method does
    assert Scorer.load(device="cpu").score(a.samples, a.sample_rate).method == "single-clip"
    assert single.score(a.samples, a.sample_rate).method == "single-clip+stats"


def test_a_bad_voice_front_end_in_a_manifest_is_one_clear_error(tmp_path):
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    for bad, why in (("16 kHz", "partial_rate None"), ({**S.to_dict(), "partial_rate": 0.0}, "partial_rate 0.0")):
        m["models"]["voice_encoder"]["frontend"] = bad
        (b / MANIFEST).write_text(json.dumps(m))
        with pytest.raises(BundleError, match=f"front end: .*{why}"):
            Scorer.load(b, device="cpu", per_speaker=True)
        # only the voice classifier is refused: what does not read it still works
        assert not Scorer.load(b, device="cpu", per_speaker=True, voice=False).needs_voice
        assert Scorer.load(b, device="cpu").ser_name == "ser_clip"


def test_a_group_without_voice_embeddings_is_one_clear_error(clips):
    sc = Scorer.load(device="cpu", per_speaker=True)
    analyses = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:5])]
    with pytest.raises(EmortError, match="voice embedding"):
        sc.score_group([a.log_mel for a in analyses], pitch=[a.pitch for a in analyses])


@pytest.mark.parametrize("graph,field", [("voice_encoder", "voice_version"), ("stats_voice", "stats_version")])
def test_a_voice_classifier_this_emort_cannot_read_is_refused_clearly(tmp_path, graph, field):
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    m["models"][graph][field] = 99
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="--no-voice"):
        Scorer.load(b, device="cpu", per_speaker=True)
    assert not Scorer.load(b, device="cpu", per_speaker=True, voice=False).needs_voice


def test_cli_names_the_voice_classifier(clips, tmp_path):
    d = _speaker_dir(tmp_path / "spk", clips[:7])
    refs = tmp_path / "refs"
    shutil.copytree(d, refs, symlinks=True)
    r = runner.invoke(app, ["score", str(d), "--reference", str(refs), "--json", str(tmp_path / "ref.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ref.json").read_text())
    assert "stats_voice" in rep["model"] and all(x["method"] == "reference+stats" for x in rep["results"])
    for flag, named in (("--voice", True), ("--no-voice", False)):
        out = tmp_path / f"{flag}.json"
        r = runner.invoke(app, ["score", str(d), "--per-speaker", flag, "--json", str(out)])
        assert r.exit_code == 0, r.output
        rep = json.loads(out.read_text())
        assert ("stats_voice" in rep["model"]) is named and rep["settings"]["voice"] is named
        assert ("in place of stats" in rep["model"]) is named  # the joint classifier replaces the statistics one
        assert all(x["method"] == "per-speaker+stats" for x in rep["results"])


def test_a_group_too_small_for_the_classifiers_skips_their_features(clips, tmp_path, monkeypatch):
    """With --no-voice, a speaker with fewer than MIN_GROUP clips is scored by the SER alone: emort
    score reads no F0 and computes no voice embedding for it (a 10-minute pair of files took 8.6 s
    instead of 1.8 s). With the voice classifier such a group is read with the single-clip
    classifier, which needs both (method ``per-speaker+clip-stats``)."""
    from emort.runtime import batch

    seen: list[bool] = []
    real = Scorer.analyse

    def spy(self, wav, sr, what="audio", classifiers=True, **kw):
        seen.append(classifiers)
        return real(self, wav, sr, what, classifiers, **kw)

    monkeypatch.setattr(Scorer, "analyse", spy)
    sc = Scorer.load(device="cpu", per_speaker=True, voice=False)
    small = Scorer.load(device="cpu", per_speaker=True)
    for k, (scorer, n, full, method) in enumerate(((sc, 3, False, "per-speaker"), (sc, 5, True, "per-speaker+stats"),
                                                   (small, 3, True, "per-speaker+clip-stats"), (small, 5, True, "per-speaker+stats"))):
        d = _speaker_dir(tmp_path / f"g{k}", clips[:n])
        seen.clear()
        recs = list(batch.score_files(scorer, [d], per_speaker=True))
        assert [r.status for r in recs] == ["scored"] * n and all(r.fused is full for r in recs)
        assert seen == [full] * n and {r.method for r in recs} == {method}
        notes = {r.note for r in recs}
        assert notes == {None} if n == 5 else (len(notes) == 1 and f"only {n} clip(s)" in notes.pop())
        if method == "per-speaker+clip-stats":
            assert "the SER with the single-clip classifier" in recs[0].note


def test_an_unusable_clip_in_a_python_group_is_named(clips):
    sc = Scorer.load(device="cpu", per_speaker=True)
    a = read_audio(clips[0])
    with pytest.raises(EmortError, match="clip 1: silent"):
        sc.score_speaker([(a.samples, a.sample_rate), (np.zeros(16000, np.float32), 16000)])


def test_cli_voice_insists_and_says_why_it_cannot(clips, tmp_path):
    d = _speaker_dir(tmp_path / "spk", clips[:5])
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    del m["models"]["stats_voice"]
    (b / MANIFEST).write_text(json.dumps(m))
    for args, why in (([str(clips[0]), "--voice"], "clips scored alone"),
                      ([str(d), "--per-speaker", "--no-stats", "--voice"], "--no-stats"),
                      ([str(d), "--per-speaker", "--voice", "--bundle", str(b)], "carries no voice classifier")):
        r = runner.invoke(app, ["score", *args])
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(app, ["score", str(d), "--per-speaker", "--bundle", str(b), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output  # not asked for: scored without it, and the report says so
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["voice"] is False


def _bundle_copy(tmp_path: Path, change) -> Path:
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    change(m["models"])
    (b / MANIFEST).write_text(json.dumps(m))
    return b


@pytest.mark.parametrize("change,why", [
    (lambda ms: ms.pop("stats_clip"), None),  # a bundle of 0.25 or older: no single-clip classifier
    (lambda ms: ms["stats_clip"].update(pitch_version=1), "reads F0 version 1, its statistics classifier 2"),
    (lambda ms: ms["stats_clip"].update(n_features=514), "does not match this emort"),
])
def test_small_groups_keep_the_ser_alone_where_the_single_clip_classifier_cannot_be_read(clips, tmp_path, caplog, change, why):
    """Per-speaker scoring of groups of >= 5 clips must not fail for a single-clip classifier it
    cannot read: small groups get the SER alone, with a warning naming why."""
    b = _bundle_copy(tmp_path, change)
    with caplog.at_level("WARNING", logger="emort.runtime.scorer"):
        sc = Scorer.load(b, device="cpu", per_speaker=True)
    assert not sc.reads_small_groups and sc.needs_voice
    assert (why is None) is (not caplog.records) and (why is None or why in caplog.text and "SER alone" in caplog.text)
    from emort.runtime import batch

    for n, method in ((2, "per-speaker"), (5, "per-speaker+stats")):
        recs = list(batch.score_files(sc, [_speaker_dir(tmp_path / f"g{n}", clips[:n])], per_speaker=True))
        assert [r.status for r in recs] == ["scored"] * n and {r.method for r in recs} == {method}


def test_cli_model_names_how_small_groups_are_read(clips, tmp_path):
    d = _speaker_dir(tmp_path / "spk", clips[:2])
    refs = _speaker_dir(tmp_path / "refs", clips[:2])
    for extra, method, small in (([], "per-speaker+clip-stats", "smaller groups: ser_speaker + stats_clip"),
                                 (["--no-voice"], "per-speaker", "smaller groups: ser_speaker alone"),
                                 (["--reference", str(refs)], "reference", "smaller groups: ser_speaker alone")):
        out = tmp_path / f"r{len(extra)}.json"
        r = runner.invoke(app, ["score", str(d), "--per-speaker", *extra, "--json", str(out)])
        assert r.exit_code == 0, r.output
        rep = json.loads(out.read_text())
        assert small in rep["model"] and {x["method"] for x in rep["results"]} == {method}, (extra, rep["model"])


def test_a_small_group_reads_no_egemaps(clips, tmp_path, monkeypatch):
    """--egemaps: a group of fewer than 5 clips never reads eGeMAPS (the single-clip classifier does
    not), so openSMILE is not run for it (it is the slowest analysis, and fails clips under 60 ms)."""
    pytest.importorskip("opensmile")
    from emort.runtime import batch
    from emort.runtime import scorer as scorer_mod

    calls: list[str] = []
    real = scorer_mod.egemaps_features
    monkeypatch.setattr(scorer_mod, "egemaps_features", lambda *a, **k: calls.append("e") or real(*a, **k))
    sc = Scorer.load(device="cpu", per_speaker=True, egemaps=True)
    for n, want in ((2, 0), (5, 5)):
        calls.clear()
        recs = list(batch.score_files(sc, [_speaker_dir(tmp_path / f"g{n}", clips[:n])], per_speaker=True))
        assert [r.status for r in recs] == ["scored"] * n and len(calls) == want


def test_a_reference_of_another_voice_is_noted(shared_data, tmp_path):
    """--reference that holds another speaker's clips normalises with the wrong statistics: each
    record of that speaker says so (GE2E similarity below REFERENCE_VOICE_MIN); a speaker's own
    originals do not."""
    from emort.runtime import batch
    from emort.runtime.voice import REFERENCE_VOICE_MIN, voice_match

    emodb = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[:6]
    ravdess = sorted((shared_data / "ravdess" / "Actor_19").glob("*.flac"))[:6]
    clips, right, wrong = tmp_path / "clips", tmp_path / "right", tmp_path / "wrong"
    clips.mkdir(), right.mkdir(), wrong.mkdir()
    for name, files in (("e10", emodb), ("r19", ravdess)):
        _speaker_dir(clips / name, files[:3])
        _speaker_dir(right / name, files)
    _speaker_dir(wrong / "e10", ravdess)  # the two speakers' originals swapped
    _speaker_dir(wrong / "r19", emodb)
    sc = Scorer.load(device="cpu", per_speaker=True)
    for ref, noted in ((right, False), (wrong, True)):
        recs = [r for r in batch.score_files(sc, [clips], reference=ref) if r.status == "scored"]
        assert len(recs) == 6 and all(("do not sound like its reference clips" in (r.note or "")) is noted for r in recs), ref
    assert voice_match([np.ones(4)], [np.ones(4)]) == pytest.approx(1.0) and 0 < REFERENCE_VOICE_MIN < 1


def test_another_speakers_clip_in_a_referenced_folder_is_noted(shared_data, tmp_path):
    """A speaker folder that mixes another voice's clips in passes the group check (its mean still
    sounds like the reference); each such clip gets its own note, the speaker's own clips none."""
    from emort.runtime import batch

    emodb = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[:9]
    ravdess = sorted((shared_data / "ravdess" / "Actor_19").glob("*.flac"))[:2]  # 0.49 and 0.52 against emodb/10's five
    clips, ref = tmp_path / "clips", tmp_path / "ref"
    clips.mkdir(), ref.mkdir()
    _speaker_dir(clips / "e10", emodb[:4] + ravdess)
    _speaker_dir(ref / "e10", emodb[4:])
    sc = Scorer.load(device="cpu", per_speaker=True)
    recs = [r for r in batch.score_files(sc, [clips], reference=ref) if r.status == "scored"]
    noted = {Path(r.path).name for r in recs if "is it another speaker's?" in (r.clip_note or "")}
    assert len(recs) == 6 and not any("do not sound like its reference clips" in (r.note or "") for r in recs)
    assert noted == {p.name for p in ravdess}, noted
    # each note names its clip: the CLI shows each distinct note once, so two clips made one line
    assert all(r.clip_note.startswith(f"{r.path}: this clip does not sound like") for r in recs if r.clip_note)
    assert not any("is it another speaker's?" in (r.note or "") for r in recs)  # the speaker's note, shown once, is not the clip's


def test_too_few_clips_to_tell_a_voice_get_no_reference_note(shared_data, tmp_path):
    """One scored clip against five of its own voice falls below the threshold in 3.5% of draws: the
    check needs 2 scored and 5 reference clips (docs/ser/reference_match/measure.py)."""
    from emort.runtime import batch

    emodb = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[:6]
    ravdess = sorted((shared_data / "ravdess" / "Actor_19").glob("*.flac"))[:6]
    for d in ("one", "two", "few", "many"):
        (tmp_path / d).mkdir()
    _speaker_dir(tmp_path / "one" / "e10", emodb[:1])
    _speaker_dir(tmp_path / "two" / "e10", emodb[:2])
    _speaker_dir(tmp_path / "few" / "e10", ravdess[:4])  # another voice
    _speaker_dir(tmp_path / "many" / "e10", ravdess)
    sc = Scorer.load(device="cpu", per_speaker=True)
    for clips, ref, noted in (("one", "many", False), ("two", "few", False), ("two", "many", True)):
        recs = [r for r in batch.score_files(sc, [tmp_path / clips], reference=tmp_path / ref) if r.status == "scored"]
        assert recs and all(("do not sound like" in (r.note or "")) is noted for r in recs), (clips, ref)


def test_a_speaker_folder_of_several_voices_is_noted(shared_data, tmp_path):
    """Per-speaker scoring normalises a folder's clips as one speaker; a folder of several voices
    (a new user scored four speakers' enhanced clips as one) gets a note naming the folder, a
    folder of one voice none (docs/ser/mixed_voices/measure.py)."""
    from emort.runtime import batch
    from emort.runtime.voice import GROUP_VOICE_MIN, group_voice_similarity

    one = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[:10]
    mixed = (sorted((shared_data / "emodb" / "wav").glob("03*.flac"))[:3] + sorted((shared_data / "ravdess" / "Actor_20").glob("*.flac"))[:3]
             + sorted((shared_data / "nemo" / "samples").glob("KS0*"))[:3])
    clips = tmp_path / "clips"
    clips.mkdir()
    _speaker_dir(clips / "one", one)
    _speaker_dir(clips / "mixed", mixed)
    sc = Scorer.load(device="cpu", per_speaker=True)
    recs = [r for r in batch.score_files(sc, [clips], per_speaker=True) if r.status == "scored"]
    noted = {Path(r.path).parent.name for r in recs if "more than one voice" in (r.note or "")}
    assert len(recs) == 19 and noted == {"mixed"}, [(r.path, r.note) for r in recs]
    assert all(f"speaker {clips / 'mixed'}:" in r.note for r in recs if Path(r.path).parent.name == "mixed")
    assert group_voice_similarity([np.ones(4)]) is None and 0 < GROUP_VOICE_MIN < 1
