"""`emort export clip-ser`: a single-clip SER (e.g. trained with level augmentation) put into an
existing bundle as ``ser_clip``, and the runtime scoring single clips with it."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch", reason="export tests need the [train] extra")

from typer.testing import CliRunner  # noqa: E402

from emort.cli.app import app  # noqa: E402
from emort.export.onnx import replace_clip_ser  # noqa: E402
from emort.runtime.bundle import MANIFEST, load_bundle  # noqa: E402
from emort.runtime.errors import BundleError, EmortError  # noqa: E402
from emort.runtime.scorer import Scorer  # noqa: E402


@pytest.fixture
def copy(tiny, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny["bundle"], dst)
    return dst


def test_clip_ser_is_added_checked_and_scores_single_clips(tiny, copy, emodb_files):
    import soundfile as sf

    from emort.training.ser import load_ser, predict

    before = load_bundle(copy)
    m = replace_clip_ser(copy, tiny["ser"])
    spec = m["models"]["ser_clip"]
    assert spec["file"].startswith("ser_clip-") and spec["gain_db"] == 0.0 and spec["norm"] == "global"
    b = load_bundle(copy)  # every checksum holds, the new graph's too
    assert b.has_clip_scorer and b.edit_hash == before.edit_hash  # the edit's graphs are untouched
    run = json.loads((tiny["ser"] / "ser.json").read_text())
    assert np.allclose(b.models["ser_clip"].norm_mean, run["norm"]["mean"]) and m["parity"]["ser_clip"] < 1e-4

    single = Scorer.load(copy, device="cpu")
    assert single.ser_name == "ser_clip"
    assert Scorer.load(copy, device="cpu", level_robust=False).ser_name == "ser"
    wav, sr = sf.read(emodb_files[0], dtype="float32")
    mel = single.log_mel(wav, sr)
    model, cfg = load_ser(tiny["ser"])
    from emort.training.data import NormStats

    want, _ = predict(model, [mel], NormStats.from_dict(cfg["norm"]))  # the run itself, on its own statistics
    got = single.score(wav, sr)
    assert np.allclose([got.scores[k] for k in b.labels], want[0], atol=1e-4)

    first = spec["file"]  # a second export replaces the graph (same weights: same name) and leaves one
    replace_clip_ser(copy, tiny["ser"])
    assert [p.name for p in copy.glob("ser_clip-*.onnx")] == [first]


def test_replacing_a_graph_keeps_a_file_another_model_reads(tiny, copy):
    """A manifest may point two models at one file (ser_clip at the edit's ser.onnx): replacing
    ser_clip must not delete it (0.24 did, and every later command failed on the bundle)."""
    m = json.loads((copy / MANIFEST).read_text())
    m["models"]["ser_clip"] = {**m["models"]["ser"], "norm": "global", "mean": m["norm"]["mean"], "std": m["norm"]["std"]}
    (copy / MANIFEST).write_text(json.dumps(m))
    load_bundle(copy)
    replace_clip_ser(copy, tiny["ser"])
    b = load_bundle(copy)
    assert (copy / "ser.onnx").is_file() and b.models["ser"].file == "ser.onnx" and b.models["ser_clip"].file.startswith("ser_clip-")


def test_clip_ser_refuses_a_run_it_cannot_serve(tiny, copy):
    with pytest.raises(EmortError, match="norm = 'speaker'") as e:
        replace_clip_ser(copy, tiny["ser_speaker"])
    assert "\n" not in str(e.value) and "ser_clip" not in json.loads((copy / MANIFEST).read_text())["models"]
    assert not list(copy.glob("ser_clip-*"))


def test_single_clips_are_normalised_with_the_clip_sers_own_statistics(tiny, copy, emodb_files):
    """The manifest's models.ser_clip mean/std, not the bundle's norm, z-score a clip for it: moving
    them moves the score exactly as normalize_for says (the tiny bundle's two are equal otherwise)."""
    import soundfile as sf

    replace_clip_ser(copy, tiny["ser"])
    wav, sr = sf.read(emodb_files[0], dtype="float32")
    before = Scorer.load(copy, device="cpu").score(wav, sr).scores
    m = json.loads((copy / MANIFEST).read_text())
    m["models"]["ser_clip"]["mean"] = [v + 3.0 for v in m["models"]["ser_clip"]["mean"]]
    (copy / MANIFEST).write_text(json.dumps(m))
    sc = Scorer.load(copy, device="cpu")
    mel = sc.log_mel(wav, sr)
    assert np.allclose(sc.normalize(mel), sc.bundle.normalize(mel) - 3.0 / np.asarray(sc.bundle.models["ser_clip"].norm_std)[:, None], atol=1e-5)
    after = sc.score(wav, sr).scores
    assert max(abs(after[k] - before[k]) for k in before) > 1e-5  # the tiny SER is nearly flat; the graph does see it
    assert np.allclose([after[k] for k in after], [s for s in sc.score_mels([sc.bundle.normalize_for("ser_clip", mel)])[0].scores.values()])


def test_malformed_clip_statistics_are_refused_in_one_line(tiny, copy):
    replace_clip_ser(copy, tiny["ser"])
    m = json.loads((copy / MANIFEST).read_text())
    m["models"]["ser_clip"]["std"] = m["models"]["ser_clip"]["std"][:-1]
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="models.ser_clip's normalisation statistics"):
        load_bundle(copy)
    del m["models"]["ser_clip"]["std"], m["models"]["ser_clip"]["mean"]
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="models.ser_clip has no normalisation statistics"):
        load_bundle(copy)


def test_score_reports_which_single_clip_ser_it_used(tiny, copy, emodb_files, tmp_path):
    replace_clip_ser(copy, tiny["ser"])
    runner = CliRunner()
    for flag, model in (([], "ser_clip"), (["--no-level-robust"], "ser")):
        out = tmp_path / f"s{len(flag)}.json"
        r = runner.invoke(app, ["score", str(emodb_files[0]), "--bundle", str(copy), "--json", str(out), *flag])
        assert r.exit_code == 0, r.output
        rep = json.loads(out.read_text())
        assert rep["model"] == model and rep["results"][0]["method"] == "single-clip"


def test_tensorrt_scorers_look_for_the_built_engines(tiny, copy, monkeypatch):
    """On the tensorrt device a Scorer passes the bundle's engine folder (where `emort export
    tensorrt` writes ser, ser_speaker and ser_clip engines), as Enhancer.load does."""
    import emort.runtime.scorer as scorer_mod
    from emort.runtime.trt import default_engine_dir

    replace_clip_ser(copy, tiny["ser"])
    seen = []
    monkeypatch.setattr(scorer_mod, "resolve_device", lambda device: "tensorrt")
    monkeypatch.setattr(scorer_mod, "announce_device", lambda dev: None)
    monkeypatch.setattr(scorer_mod, "load_model", lambda path, dev, threads=None, engine_dir=None, name="", **_:
                        seen.append((name, engine_dir)) or SimpleNamespace(device=dev))
    for per_speaker, level_robust in ((False, True), (False, False), (True, True)):
        Scorer.load(copy, device="tensorrt", per_speaker=per_speaker, level_robust=level_robust, stats=False)
    b = load_bundle(copy)
    assert seen == [(n, default_engine_dir(b)) for n in ("ser_clip", "ser", "ser_speaker")]


def test_export_onnx_names_the_graphs_writing_a_bundle_anew_drops(tmp_path):
    """``emort export onnx --out`` an existing bundle writes it anew: the graphs it does not write
    (the single-clip SER, the voice classifiers and encoder, ...) are named before the export."""
    import json

    from emort.cli.export import _graphs_replacing_drops
    from emort.runtime.bundle import load_bundle

    shipped = load_bundle().path
    models = set(json.loads((shipped / "manifest.json").read_text())["models"])
    dropped = _graphs_replacing_drops(shipped, speaker_ser=True, stats=True)
    graphs = {d.split(" (")[0] for d in dropped if " (" in d and not d.startswith("the ")}
    assert "ser_clip (emort export clip-ser)" in dropped and "ser" not in graphs and "stats" not in graphs
    assert graphs == models - {"ser", "style", "denoiser", "ser_speaker", "stats"}
    # 0.25: also what is not a graph (a review found them dropped without a word), each named
    assert "the prosody table" in dropped and "the edit basis" in dropped and any("MODEL_CARD.md" in d for d in dropped)
    assert "ser_speaker (export onnx --speaker-ser)" in _graphs_replacing_drops(shipped, speaker_ser=False, stats=False)
    assert _graphs_replacing_drops(tmp_path / "new", True, True) == []  # a new folder: nothing to drop
