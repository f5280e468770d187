"""Typed bundle fields, the one config-dict helper and the one per-band z-score."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from emort.runtime.bundle import ModelSpec, TrainingRecord, load_bundle
from emort.runtime.samplers import NoiseSchedule
from emort.runtime.settings import MelSettings, dataclass_from_dict
from emort.runtime.ustats import STATS_VERSION, num_features, zscore


def test_default_bundle_fields_match_its_manifest():
    b = load_bundle()
    m = json.loads((b.path / "manifest.json").read_text())
    assert b.name == m["name"] and b.emort_version == m["emort_version"] and b.opset == m["opset"]
    assert b.files == m["files"] and b.parity == m["parity"]
    assert b.models["style"].dim == m["models"]["style"]["dim"]
    assert b.models["denoiser"].flops_per_frame == m["models"]["denoiser"]["flops_per_frame"]
    assert b.models["ser_speaker"].norm == "speaker" and b.models["ser"].norm == "global"
    spec = b.models["stats"]
    assert spec.stats_version == STATS_VERSION and spec.n_features == num_features(spec.features, b.mel.n_mels)
    assert (spec.features, spec.ser_weight) == (m["models"]["stats"]["features"], m["models"]["stats"]["ser_weight"])
    spk = b.training["ser_speaker"]
    assert spk.options["norm"] == "speaker"
    assert spk.split.train_speakers == tuple(m["training"]["ser_speaker"]["split"]["train_speakers"])
    # not the "defaults_override" note, nor the voice encoder's source record (it was not trained here)
    assert set(b.training) == {"ser", "diffusion", "ser_speaker", "stats", "ser_clip", "stats_voice", "stats_egemaps", "stats_clip"}
    clip = b.models["ser_clip"]  # the level-robust single-clip SER (0.11), with its own statistics
    assert b.has_clip_scorer and clip.norm == "global" and len(clip.norm_mean) == len(clip.norm_std) == b.mel.n_mels
    assert set(b.training["ser_clip"].split.test_speakers) <= set(b.training["ser"].split.test_speakers)  # EmoDB + RAVDESS runs
    test = {"emodb/03", "emodb/08", "ravdess/21", "ravdess/22"}
    for name, rec in b.training.items():  # no model of the shipped bundle was fitted on a test speaker
        assert not test & set(rec.split.fitted_speakers), name
        assert test <= set(rec.split.held_out_speakers), name


def test_training_record_split_rules():
    fit_val = TrainingRecord.from_manifest({"split": {"train_speakers": ["a"], "val_speakers": ["b"], "test_speakers": ["c"], "val_in_train": True}})
    assert fit_val.split.fitted_speakers == ("a", "b") and fit_val.split.held_out_speakers == ("c",)
    held_val = TrainingRecord.from_manifest({"split": {"train_speakers": ["a"], "val_speakers": ["b"], "test_speakers": ["c"]}, "train": {"seed": 3}})
    assert held_val.split.fitted_speakers == ("a",) and held_val.split.held_out_speakers == ("b", "c") and held_val.options["seed"] == 3
    diffusion = TrainingRecord.from_manifest({"train": {}, "train_speakers": ["a"], "held_out_speakers": ["b", "c"]})
    assert diffusion.split.train_speakers == ("a",) and diffusion.split.held_out_speakers == ("b", "c")


def test_model_spec_reads_optional_facts():
    s = ModelSpec.from_manifest({"file": "x.onnx", "inputs": ["mel"], "outputs": ["y"]})
    assert s.dim is None and s.norm == "global" and s.flops_per_frame is None
    assert ModelSpec.from_manifest({"file": "x.onnx", "inputs": [], "outputs": [], "dim": "64"}).dim == 64


def test_content_hash_is_the_files_hash():
    b = load_bundle()
    changed = dataclasses.replace(b, files={**b.files, "ser.onnx": "0" * 64})
    assert changed.content_hash != b.content_hash and dataclasses.replace(b, files=dict(b.files)).content_hash == b.content_hash


def test_dataclass_from_dict_ignores_unknown_keys_and_round_trips():
    assert dataclass_from_dict(MelSettings, {"n_mels": 64, "from_the_future": 1}) == MelSettings(n_mels=64)
    for obj in (MelSettings(n_mels=40), NoiseSchedule(kind="linear", num_train_steps=50)):
        assert type(obj).from_dict({**obj.to_dict(), "extra": None}) == obj


def test_zscore_is_the_bundle_normalisation():
    b = load_bundle()
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(b.mel.n_mels, 17)).astype(np.float32) - 4
    z = zscore(mel, b.norm_mean, b.norm_std)
    assert z.dtype == np.float32 and z.shape == mel.shape
    np.testing.assert_allclose(z, (mel - b.norm_mean[:, None]) / b.norm_std[:, None], rtol=1e-6)
    np.testing.assert_array_equal(b.normalize(mel), z)
    np.testing.assert_allclose(b.denormalize(z), mel, atol=1e-5)


def test_edit_hash_follows_only_what_an_edit_reads():
    """`emort enhance` outputs record edit_hash: a new scoring graph (stats, ser_speaker) leaves it,
    and so earlier outputs, as they were; a new denoiser, style encoder or SER (whatever its file
    name) or other centroids / normalisation do not."""
    import copy
    import dataclasses

    from emort.runtime.bundle import EDIT_FIELDS, EDIT_MODELS, load_bundle

    b = load_bundle()
    for scoring in (b.models["stats"].file, b.models["ser_speaker"].file):
        other = dataclasses.replace(b, files={**b.files, scoring: "0" * 64})
        assert other.edit_hash == b.edit_hash and other.content_hash != b.content_hash
    for name in EDIT_MODELS:
        assert dataclasses.replace(b, files={**b.files, b.models[name].file: "0" * 64}).edit_hash != b.edit_hash
    renamed = dataclasses.replace(b, files={**b.files, "other.onnx": "0" * 64},
                                  models={**b.models, "denoiser": dataclasses.replace(b.models["denoiser"], file="other.onnx")})
    assert renamed.edit_hash != b.edit_hash
    for field in ("centroids", "norm"):
        assert field in EDIT_FIELDS
        m = copy.deepcopy(b.manifest)
        first = next(iter(m[field]))
        m[field][first] = [0.0] * len(m[field][first])
        assert dataclasses.replace(b, manifest=m).edit_hash != b.edit_hash
