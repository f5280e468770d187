"""eGeMAPS at run time (emort.runtime.egemaps) and the voice classifier that reads it (`emort score --egemaps`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emort.cli.app import app
from emort.runtime import egemaps as rt_egemaps
from emort.runtime.audio import read_audio
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.egemaps import EGEMAPS_FEATURES, EGEMAPS_VERSION, NUM_EGEMAPS
from emort.runtime.errors import BundleError, EmortError
from emort.runtime.scorer import Scorer
from emort.runtime.ustats import normalise_per_speaker, speaker_stats_from

runner = CliRunner()
try:
    import opensmile  # noqa: F401

    HAVE_OPENSMILE = True
except ImportError:  # the [egemaps] extra is not installed
    HAVE_OPENSMILE = False
needs_opensmile = pytest.mark.skipif(not HAVE_OPENSMILE, reason="needs the [egemaps] extra (opensmile)")


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[Path]:
    """Six clips of EmoDB speaker 10 (16 kHz), and a RAVDESS (48 kHz) and an nEMO (24 kHz) clip."""
    e = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[::7][:6]
    r = sorted((shared_data / "ravdess" / "Actor_19").glob("*.flac"))[:1]
    n = sorted((shared_data / "nemo" / "samples").glob("MP0_*.flac"))[:1]
    return e + r + n


def _z(rows, reference=None) -> np.ndarray:
    ref = None if reference is None else speaker_stats_from(reference, ["s"] * len(reference))
    return normalise_per_speaker(rows, ["s"] * len(rows), ref).astype(np.float32)


@needs_opensmile
def test_runtime_egemaps_equal_trainings_at_any_rate(clips):
    """The runtime resamples the source's mono signal to 16 kHz itself; training reads the file at
    16 kHz. One definition: the same 88 values on 16, 24 and 48 kHz files."""
    from emort.training.egemaps import egemaps_matrix

    want = egemaps_matrix([str(p) for p in (clips[0], clips[-2], clips[-1])])
    for p, w in zip((clips[0], clips[-2], clips[-1]), want):
        a = read_audio(p)
        got = rt_egemaps.egemaps_features(a.samples, a.sample_rate)
        assert got.shape == (NUM_EGEMAPS,) and got.dtype == np.float32
        assert np.array_equal(got, w), p.name


def test_the_shipped_bundle_carries_the_egemaps_classifier():
    b = load_bundle()
    assert b.has_egemaps
    es, vs = b.models["stats_egemaps"], b.models["stats_voice"]
    assert es.features == EGEMAPS_FEATURES and es.egemaps_version == EGEMAPS_VERSION
    assert es.n_features == vs.n_features + NUM_EGEMAPS
    assert es.pitch_version == vs.pitch_version and es.voice_version == vs.voice_version
    assert "non-commercial" in b.manifest["models"]["stats_egemaps"]["layout"]  # openSMILE's licence, stated


@needs_opensmile
def test_egemaps_scores_are_its_classifiers_on_three_feature_sets(clips, shared_data):
    """Per speaker, and against a speaker's references: the statistics, the embedding and eGeMAPS,
    each z-scored over the speaker's clips (or its references), in place of the joint classifier."""
    sc = Scorer.load(device="cpu", per_speaker=True, egemaps=True)
    joint = Scorer.load(device="cpu", per_speaker=True)
    assert sc.needs_egemaps and not joint.needs_egemaps and not Scorer.load(device="cpu").needs_egemaps
    an = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, clips[:6])]
    assert all(a.egemaps is not None and a.egemaps.shape == (NUM_EGEMAPS,) for a in an)
    labels = sc.bundle.labels
    probs = lambda scores: np.array([[s.scores[k] for k in labels] for s in scores])  # noqa: E731
    feats = lambda xs: sc._stats_features([a.log_mel for a in xs], [a.pitch for a in xs])  # noqa: E731
    voice = lambda xs: np.stack([a.voice for a in xs])  # noqa: E731
    ege = lambda xs: np.stack([a.egemaps for a in xs])  # noqa: E731
    got = probs(sc.score_analyses(an))
    x = np.hstack([_z(feats(an)), _z(voice(an)), _z(ege(an))])
    assert sc.stats_spec.ser_weight == 0  # the scores are the classifier's probabilities
    assert np.allclose(got, sc.stats_egemaps(X=x)[1], atol=1e-5)
    assert not np.allclose(got, probs(joint.score_analyses([type(a)(a.log_mel, a.pitch, a.voice) for a in an])), atol=1e-3)
    refs = sorted((shared_data / "emodb" / "wav").glob("10*.flac"))[1::7][:6]
    ref = [sc.analyse(a.samples, a.sample_rate) for a in map(read_audio, refs)]
    got = probs(sc.score_analyses(an, reference=ref))
    x = np.hstack([_z(feats(an), feats(ref)), _z(voice(an), voice(ref)), _z(ege(an), ege(ref))])
    assert np.allclose(got, sc.stats_egemaps(X=x)[1], atol=1e-5)
    with pytest.raises(EmortError, match="eGeMAPS functionals"):  # a Python caller that leaves them out
        sc.score_group([a.log_mel for a in an], pitch=[a.pitch for a in an], voice=[a.voice for a in an])


def test_without_opensmile_egemaps_is_one_clear_error(monkeypatch):
    rt_egemaps._smile.cache_clear()
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import fails as where the extra is not installed
    try:
        with pytest.raises(EmortError, match=r"pip install 'emort\[egemaps\]'"):
            Scorer.load(device="cpu", per_speaker=True, egemaps=True)
        assert not Scorer.load(device="cpu", per_speaker=True).needs_egemaps  # scoring without it is unaffected
    finally:
        rt_egemaps._smile.cache_clear()


@pytest.mark.parametrize("change,why", [(("models", "stats_egemaps", "egemaps_version", 99), "eGeMAPS version 99"),
                                        (("models", "stats_egemaps", "n_features", 10), "10 features"),
                                        (None, "no eGeMAPS voice classifier")])
def test_a_bundle_that_cannot_read_egemaps_is_refused_by_name(tmp_path, change, why):
    b = tmp_path / "b"
    shutil.copytree(load_bundle().path, b)
    m = json.loads((b / MANIFEST).read_text())
    if change is None:
        m["files"].pop(m["models"].pop("stats_egemaps")["file"])
    else:
        m[change[0]][change[1]][change[2]] = change[3]
    (b / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=why):
        Scorer.load(b, device="cpu", per_speaker=True, egemaps=True)
    with pytest.raises(BundleError, match="no --no-stats / --no-voice"):
        Scorer.load(device="cpu", per_speaker=True, egemaps=True, voice=False)


@needs_opensmile
def test_cli_egemaps_names_its_classifier_and_refuses_what_it_cannot(clips, tmp_path):
    d = tmp_path / "spk"
    d.mkdir()
    for p in clips[:6]:
        (d / p.name).symlink_to(p)
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["score", str(d), "--per-speaker", "--egemaps", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert "stats_egemaps" in rep["model"] and rep["settings"]["egemaps"] is True
    assert all(x["method"] == "per-speaker+stats" for x in rep["results"])
    for args, why in ((["--egemaps"], "never read it"), (["--per-speaker", "--egemaps", "--no-voice"], "drop --no-stats / --no-voice")):
        r = runner.invoke(app, ["score", str(d), *args])
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, r.output


@needs_opensmile
def test_a_full_scale_sample_is_clipped_not_wrapped():
    """openSMILE scales float input by 32768 into int16 without clipping: +1.0 would wrap to
    -32768 (11 RAVDESS files overshoot full scale when resampled to 16 kHz). The analysis clips
    first, so a clip over full scale either way reads like the same clip at full scale."""
    t = np.arange(16000) / 16000
    x = (np.sin(2 * np.pi * 150 * t) * (0.3 + 0.7 * (t > 0.5))).astype(np.float32)
    x[8000::160] = 1.0                                   # peaks at and over full scale, both signs
    x[8080::160] = -1.005
    at_scale = np.clip(x, -1.0, np.float32(32767 / 32768))
    assert np.allclose(rt_egemaps.egemaps_features(x), rt_egemaps.egemaps_features(at_scale), rtol=1e-4, atol=1e-4)


@needs_opensmile
def test_a_clip_too_short_for_egemaps_is_one_clear_audio_error():
    from emort.runtime.errors import EmptyAudioError

    x = (0.1 * np.sin(2 * np.pi * 150 * np.arange(960) / 16000)).astype(np.float32)  # 60 ms
    with pytest.raises(EmptyAudioError, match="clip.flac: 59 ms is too short for eGeMAPS"):
        rt_egemaps.egemaps_features(x[:944], 16000, "clip.flac")
    assert rt_egemaps.egemaps_features(x, 16000).any()  # 60 ms is enough


@needs_opensmile
def test_short_and_long_clips_in_threads_each_get_their_own_answer():
    """The batch scorer analyses a speaker's clips in reader threads: a short clip fails, the
    others do not, whichever thread runs what."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(int(16 * ms)) * 0.05).astype(np.float32) for ms in (3000, 52, 2000, 52, 3000, 60)]

    def one(x):
        try:
            return bool(rt_egemaps.egemaps_features(x, 16000).any())
        except EmortError:
            return "too short"

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(one, clips)) == [True, "too short", True, "too short", True, True]


def test_egemaps_is_read_per_speaker_only():
    with pytest.raises(EmortError, match="per speaker"):
        Scorer.load(device="cpu", egemaps=True)
