"""Runtime against a tiny real bundle: manifest round trip and validation, Scorer, Enhancer."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emort.runtime.bundle import FORMAT_VERSION, load_bundle
from emort.runtime.errors import BundleError, EmortError, LabelError


def test_manifest_round_trip(tiny):
    b = load_bundle(tiny["bundle"])
    m = json.loads((tiny["bundle"] / "manifest.json").read_text())
    ser_cfg = json.loads((tiny["ser"] / "ser.json").read_text())
    assert b.labels == ser_cfg["labels"] == m["labels"]
    assert b.mel.to_dict() == ser_cfg["mel"]
    np.testing.assert_allclose(b.norm_mean, ser_cfg["norm"]["mean"], rtol=1e-6)
    assert set(b.centroids) == set(ser_cfg["centroids"])
    assert b.stride == 2  # two levels in the tiny denoiser
    assert b.models["denoiser"].inputs == ["x", "t", "emotion", "emotion_mask", "style"]
    assert set(m["files"]) == {"ser.onnx", "style.onnx", "denoiser.onnx", "ser_speaker.onnx"}  # tiny ships a per-speaker SER


def _copy(tiny, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny["bundle"], dst)
    return dst


def test_tampered_file_is_rejected(tiny, tmp_path):
    dst = _copy(tiny, tmp_path)
    with open(dst / "denoiser.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(dst)


def test_loaders_check_the_graphs_they_open(tiny, tmp_path):
    """Scorer.load hashes only the graphs it opens (not the denoiser); Enhancer.load checks all
    three it opens, also of a Bundle passed in that was loaded without them."""
    from emort import Enhancer, Scorer

    dst = _copy(tiny, tmp_path)
    with open(dst / "denoiser.onnx", "ab") as f:
        f.write(b"\0")
    Scorer.load(dst, device="cpu")  # the SER is intact
    with pytest.raises(BundleError, match="denoiser.onnx does not match its checksum"):
        Enhancer.load(dst, device="cpu")
    b = load_bundle(dst, graphs=("ser",))
    assert "ser.onnx" in b.verified and "denoiser.onnx" not in b.verified
    with pytest.raises(BundleError, match="denoiser.onnx does not match its checksum"):
        Enhancer.load(b, device="cpu")
    dst2 = tmp_path / "b_ser"
    shutil.copytree(tiny["bundle"], dst2)
    with open(dst2 / "ser.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="ser.onnx does not match its checksum"):
        Scorer.load(dst2, device="cpu")


def test_checked_files_are_not_carried_into_a_copy(tiny, tmp_path):
    """dataclasses.replace gives a copy with its own (empty) record of checked files, so a copy
    with other checksums or another folder is checked again; an unknown graph is one line."""
    import dataclasses

    b = load_bundle(tiny["bundle"])
    assert "ser.onnx" in b.verified
    c = dataclasses.replace(b, files={**b.files, "ser.onnx": "0" * 64})
    assert not c.verified
    with pytest.raises(BundleError, match="ser.onnx does not match its checksum"):
        c.verify(["ser"])
    with pytest.raises(BundleError, match="no stats graph in this bundle"):
        b.verify(["stats"])
    with pytest.raises(BundleError, match="no nope graph"):
        load_bundle(tiny["bundle"], graphs=("nope",))


def test_missing_file_and_wrong_version_rejected(tiny, tmp_path):
    dst = _copy(tiny, tmp_path)
    (dst / "style.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(dst)
    dst2 = tmp_path / "b2"
    shutil.copytree(tiny["bundle"], dst2)
    m = json.loads((dst2 / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (dst2 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="re-export"):
        load_bundle(dst2)
    m["format_version"] = FORMAT_VERSION
    m["emort_version"] = "99.0.0"
    (dst2 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="incompatible"):
        load_bundle(dst2)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_scorer_probabilities(tiny, emodb_files):
    from emort import Scorer

    s = Scorer.load(tiny["bundle"], device="cpu")
    wav, sr = sf.read(emodb_files[0], dtype="float32")
    scores = s.score(wav, sr).scores
    assert list(scores) == s.bundle.labels
    assert abs(sum(scores.values()) - 1) < 1e-5
    # same clip at another rate and as stereo scores (almost) the same
    stereo = np.stack([wav, wav], axis=1)
    scores2 = s.score(stereo, sr).scores
    assert max(abs(scores[k] - scores2[k]) for k in scores) < 1e-4


def test_enhancer_identity_determinism_and_errors(tiny, emodb_files):
    from emort import Enhancer

    enh = Enhancer.load(tiny["bundle"], device="cpu")
    wav, sr = sf.read(emodb_files[0], dtype="float32")
    for identity in (dict(strength=0.0), dict(amount_db=0.0), dict(guidance=0.0)):
        r0 = enh.enhance(wav, sr, emotion="angry", **identity)
        assert r0.sample_rate == sr == 16000 and r0.change_db == 0.0
        np.testing.assert_array_equal(r0.wav, wav)  # the input itself, at its own rate
    a = enh.enhance(wav, sr, emotion="anger", strength=0.5, steps=3, seed=1, amount_db=2.0).wav
    b = enh.enhance(wav, sr, emotion="angry", strength=0.5, steps=3, seed=1, amount_db=2.0).wav
    c = enh.enhance(wav, sr, emotion="angry", strength=0.5, steps=3, seed=2, amount_db=2.0).wav
    assert len(a) == len(wav)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    with pytest.raises(LabelError):
        enh.enhance(wav, sr, emotion="bored")
    with pytest.raises(EmortError):
        enh.enhance(wav, sr, emotion="sad", strength=1.5)
    with pytest.raises(EmortError):
        enh.enhance(np.zeros(22050, np.float32), 22050, emotion="sad")


def test_runtime_never_imports_torch_librosa_or_sklearn(tiny, emodb_files):
    code = f"""
import sys, soundfile as sf
from emort import Enhancer, Scorer
import emort.runtime.audio, emort.runtime.bundle, emort.runtime.frontend, emort.runtime.samplers
import emort.runtime.session, emort.runtime.editing, emort.runtime.trt, emort.cli.app
enh = Enhancer.load({str(tiny['bundle'])!r}, device='cpu')
wav, sr = sf.read({str(emodb_files[0])!r}, dtype='float32')
enh.enhance(wav, sr, emotion='sad', strength=0.3, steps=2, amount_db=1.0)
spk = Scorer.load({str(tiny['bundle_stats'])!r}, device='cpu', per_speaker=True)
assert spk.fused  # the statistics classifier runs too
spk.score_speaker([(wav, sr)] * 2)
bad = [m for m in ('torch', 'librosa', 'sklearn', 'skl2onnx', 'openvino') if m in sys.modules]
assert not bad, bad
print('clean')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "clean" in r.stdout


def test_enhancer_shared_between_threads(tiny, emodb_files):
    """One Enhancer used from several threads gives the same results as sequential calls."""
    from concurrent.futures import ThreadPoolExecutor

    from emort import Enhancer

    enh = Enhancer.load(tiny["bundle"], device="cpu")
    clips = [sf.read(f, dtype="float32") for f in emodb_files[:3]]
    jobs = [(w, sr, e) for (w, sr) in clips for e in ("angry", "sad")]
    seq = [enh.enhance(w, sr, emotion=e, strength=0.4, steps=2, amount_db=2.0).wav for w, sr, e in jobs]
    with ThreadPoolExecutor(4) as ex:
        par = list(ex.map(lambda j: enh.enhance(j[0], j[1], emotion=j[2], strength=0.4, steps=2, amount_db=2.0).wav, jobs))
    for a, b in zip(seq, par):
        np.testing.assert_array_equal(a, b)


def test_no_session_spins_long_after_a_run(tiny):
    """Every onnxruntime session of the runtime spins for at most SPIN_US between operators: numpy
    work follows each run, and pool threads left spinning starved it (`emort score`: 2.03 s instead
    of 1.37 s on 103 files)."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.scorer import Scorer
    from emort.runtime.session import SPIN_US

    def spins(model) -> tuple[str, str]:
        opts = model.session.get_session_options()
        return (opts.get_session_config_entry("session.intra_op.allow_spinning"),
                opts.get_session_config_entry("session.intra_op.spin_duration_us"))

    scorer = Scorer.load(tiny["bundle_stats"], device="cpu", per_speaker=True)
    enh = Enhancer.load(tiny["bundle"], device="cpu")
    models = [Scorer.load(tiny["bundle"], device="cpu").ser, scorer.ser, scorer.stats, enh.scorer.ser, enh.style, enh.denoiser]
    assert [spins(m) for m in models] == [("1", str(SPIN_US))] * len(models)


def test_malformed_manifests_and_graphs_are_one_bundle_error(tiny, tmp_path):
    """What an embedding application meets with a damaged bundle: one BundleError line naming the
    file and the cause, never a raw AttributeError, PermissionError or onnxruntime exception."""
    import os

    from emort.runtime.session import load_model

    def refused(dst, match):
        with pytest.raises(BundleError, match=match) as e:
            load_bundle(dst)
        assert "\n" not in str(e.value)

    dst = _copy(tiny, tmp_path)
    good = (dst / "manifest.json").read_text()
    for change, match in ((lambda m: {**m, "models": []}, "malformed"), (lambda m: {**m, "mel": "x"}, "malformed"),
                          (lambda m: [1, 2], "not a manifest")):
        (dst / "manifest.json").write_text(json.dumps(change(json.loads(good))))
        refused(dst, match)
    m0 = json.loads(good)
    first = m0["labels"][0]
    hand_edits = (  # each would fail on every file (or write NaN audio with exit 0) if it loaded
        ({"norm": {**m0["norm"], "std": [0.0] + m0["norm"]["std"][1:]}}, "norm.std must be finite and > 0"),
        ({"centroids": {k: v for k, v in m0["centroids"].items() if k != first}}, f"centroids lack {first}"),
        ({"centroids": {**m0["centroids"], first: [0.1, 0.2, 0.3]}}, "centroids must be finite vectors of one length"),
        ({"stride": 0}, "stride must be >= 1"),
        ({"centroids": {k: v[:-1] for k, v in m0["centroids"].items()}}, "centroids must have the SER embedding"),
        ({"labels": [first] + m0["labels"][:-1]}, "labels must be distinct"),
        # 0.25, from a review: each loaded, then failed every file or scored NaN with exit 0
        ({"prediction": "bogus"}, "prediction must be eps, v or x0"),
        ({"schedule": {**m0["schedule"], "kind": "bogus"}}, "schedule must be cosine or linear"),
        ({"schedule": {**m0["schedule"], "num_train_steps": 0}}, "num_train_steps >= 2"),
        ({"mel": {**m0["mel"], "hop_length": 0}}, "mel settings are not a usable front-end"),
        ({"mel": {**m0["mel"], "sample_rate": 0}}, "mel settings are not a usable front-end"),
        ({"defaults": {**m0.get("defaults", {}), "strength": 5}}, "defaults are not valid edit options"),
        ({"defaults": {**m0.get("defaults", {}), "amount_db": "loud"}}, "defaults are not valid edit options"),
        ({"centroids": {**m0["centroids"], "calm": m0["centroids"][first]}}, "centroids of calm, which are not labels"),
        ({"files": {**m0["files"], "../outside.onnx": "0" * 64}}, "not a plain name inside the bundle folder"),
        ({"models": {**m0["models"], "ser": {**m0["models"]["ser"], "file": "/etc/ser.onnx"}},
          "files": {**m0["files"], "/etc/ser.onnx": "0" * 64}}, "not a plain name inside the bundle folder"),
    )
    for change, match in hand_edits:
        (dst / "manifest.json").write_text(json.dumps({**m0, **change}))
        refused(dst, match)
    (dst / "manifest.json").write_text(json.dumps({**json.loads(good), "emort_version": 0}))  # a number: read, not a crash
    assert load_bundle(dst).name
    (dst / "manifest.json").write_text(good)
    (dst / "manifest.json").rename(dst / "m.json")
    (dst / "manifest.json").mkdir()  # a folder where the manifest should be
    refused(dst, "cannot read the manifest")
    (dst / "manifest.json").rmdir()
    (dst / "m.json").rename(dst / "manifest.json")
    ser = dst / "ser.onnx"
    ser.write_bytes(ser.read_bytes()[:1000])  # truncated, opened without the checksum check
    with pytest.raises(BundleError, match="not a loadable ONNX graph") as e:
        load_model(ser, "cpu", 1)
    assert str(ser) in str(e.value) and "\n" not in str(e.value)
    if os.geteuid() != 0:  # root reads any file: the permission case only means something for other users
        (dst / "style.onnx").chmod(0)
        with pytest.raises(BundleError, match="cannot read it"):
            load_bundle(dst).verify(["style.onnx"])


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_whole_number_of_at_least_one(threads):
    from emort.runtime.errors import BackendError
    from emort.runtime.session import session_options

    with pytest.raises(BackendError, match="threads must be"):
        session_options(threads)


def test_a_graphs_nan_statistics_and_a_label_count_its_ser_does_not_give_are_refused(tmp_path):
    """0.25, from a review: NaN in a graph's own normalisation loaded and scored every clip NaN
    ("neutral", exit 0); labels one fewer than the SER's scores lost a probability silently."""
    import shutil

    from emort import Scorer
    from emort.runtime.bundle import DEFAULT_BUNDLE

    dst = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE, dst)
    good = json.loads((dst / "manifest.json").read_text())
    m = json.loads(json.dumps(good))
    m["models"]["ser_clip"]["std"][0] = float("nan")
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="ser_clip's std must be finite"):
        load_bundle(dst)
    m = json.loads(json.dumps(good))
    gone = m["labels"].pop()
    m["centroids"].pop(gone)
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"5 labels .* gives 6 scores"):
        Scorer.load(dst)
