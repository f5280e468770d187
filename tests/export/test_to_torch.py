"""``emort.export.to_torch``: the default bundle's graphs rebuilt as the training code's torch
modules compute what onnxruntime computes on the same graphs, on a real clip's log-mel; a
graph that does not match the manifest's architecture is one error line naming the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="rebuilding the torch modules needs the [train] extra")
pytest.importorskip("onnx", reason="reading the graphs' weights needs the [export] extra")

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from tiny import harmonic_tone  # noqa: E402  (tests/tiny.py: the test helpers)

from emort.export.to_torch import bundle_torch_models  # noqa: E402
from emort.runtime.bundle import load_bundle  # noqa: E402
from emort.runtime.errors import BundleError  # noqa: E402
from emort.runtime.frontend import log_mel  # noqa: E402

#: max |torch - onnxruntime| allowed. Measured with torch 2.13 CPU and onnxruntime 1.32 on these
#: inputs: ser 1.2e-6, ser_speaker 2.9e-6, style 4.8e-7, denoiser 1.0e-5 (its outputs reach 3.7).
ATOL = 1e-4


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


@pytest.fixture(scope="module")
def models(bundle):
    return bundle_torch_models(bundle)


@pytest.fixture(scope="module")
def mels(bundle, shared_data_path) -> np.ndarray:
    """Two normalised log-mels ``(2, n_mels, frames)`` (frames a multiple of the stride): a real
    EmoDB clip and a quieter copy of it; a synthetic vowel when the corpora are absent."""
    from emort.runtime.audio import read_audio

    files = sorted((shared_data_path / "emodb" / "wav").glob("*.flac"))
    sr = bundle.mel.sample_rate
    wav = read_audio(files[len(files) // 2], sr).samples[: 3 * sr] if files else harmonic_tone(140.0, sr, 3.0, glide=0.2)
    m = [bundle.normalize(log_mel(w, bundle.mel)) for w in (wav, 0.1 * wav)]
    frames = m[0].shape[1] - m[0].shape[1] % bundle.stride
    return np.stack([x[:, :frames] for x in m])


def _ort(bundle, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(bundle.model_path(name)), providers=["CPUExecutionProvider"])
    return sess.run(bundle.models[name].outputs, feeds)


def _torch(bundle, models, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Called like the session: the inputs positionally in the manifest's order."""
    with torch.inference_mode():
        out = models[name](*[torch.from_numpy(feeds[k]) for k in bundle.models[name].inputs])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _worst(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    assert [g.shape for g in got] == [w.shape for w in want]
    return max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))


def test_every_graph_is_rebuilt_in_eval_mode(bundle, models):
    assert set(models) == {"ser", "ser_speaker", "style", "denoiser"}
    assert all(not m.training for m in models.values())


@pytest.mark.parametrize("name", ["ser", "ser_speaker"])
def test_ser_matches_onnxruntime(bundle, models, mels, name):
    feeds = {"mel": mels[:, None]}
    want = _ort(bundle, name, feeds)
    assert _worst(_torch(bundle, models, name, feeds), want) <= ATOL
    assert np.ptp(want[0]) > 1.0  # the logits say something: a real comparison, not zeros vs zeros


def test_style_matches_onnxruntime(bundle, models, mels):
    feeds = {"mel": mels}
    want = _ort(bundle, "style", feeds)
    assert _worst(_torch(bundle, models, "style", feeds), want) <= ATOL


def test_denoiser_matches_onnxruntime(bundle, models, mels):
    """A noised mel at high, middle and low noise; conditioned rows (an emotion centroid) and
    unconditioned rows (the learned null embedding), as classifier-free guidance calls it."""
    rng = np.random.default_rng(0)
    t = np.array([900.0, 500.0, 50.0, 900.0, 500.0, 50.0], np.float32)
    ab = bundle.schedule.alphas_cumprod[t.astype(int)].astype(np.float32)[:, None, None]
    x0 = mels[np.arange(6) % 2]
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    style = _ort(bundle, "style", {"mel": x0})[0]
    centroid = bundle.centroids[bundle.labels[3]]
    feeds = {
        "x": (np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise).astype(np.float32),
        "t": t,
        "emotion": np.repeat(centroid[None], 6, axis=0).astype(np.float32),
        "emotion_mask": np.array([[1.0]] * 3 + [[0.0]] * 3, np.float32),
        "style": style,
    }
    want = _ort(bundle, "denoiser", feeds)
    assert _worst(_torch(bundle, models, "denoiser", feeds), want) <= ATOL
    assert np.abs(want[0][:3] - want[0][3:]).max() > 1e-3  # the emotion input mattered


def _with_training(bundle, name: str, **changes):
    rec = bundle.training[name]
    field = "options" if name == "diffusion" else "model"
    return dataclasses.replace(bundle, training={**bundle.training, name: dataclasses.replace(rec, **{field: {**getattr(rec, field), **changes}})})


@pytest.mark.parametrize("bad, file, says", [
    (lambda b: _with_training(b, "diffusion", channels=[96, 144, 160]), "denoiser.onnx", "down.2.0.conv1.weight is (192, 144, 1, 3) in the graph, (160, 144, 3) in the module"),
    (lambda b: _with_training(b, "diffusion", blocks_per_level=3), "denoiser.onnx", "no weights in the graph for down.0.2.norm1.weight"),
    (lambda b: _with_training(b, "ser", stem_stride=1), "ser.onnx", "stem.0 has strides [2, 2] in the graph, [1, 1] in the module"),
    (lambda b: _with_training(b, "ser", layers=[1, 1, 1, 2]), "ser.onnx", "12 convolutions with a BatchNorm folded in the graph, 14"),
    (lambda b: dataclasses.replace(b, models={**b.models, "ser": dataclasses.replace(b.models["ser"], file="style.onnx")}), "style.onnx",
     "the module has no convs.0.weight"),
])
def test_a_graph_that_does_not_match_is_one_error_line(bundle, bad, file, says):
    with pytest.raises(BundleError) as e:
        bundle_torch_models(bad(bundle))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(Path(bundle.path) / file)) and says in msg, msg


def test_a_manifest_without_the_ser_architecture_says_so(bundle):
    b = dataclasses.replace(bundle, training={k: v for k, v in bundle.training.items() if k != "ser"})
    with pytest.raises(BundleError, match=r"manifest.json: training.ser records no SER architecture"):
        bundle_torch_models(b)


def _small_bundle(bundle, folder: Path):
    """The default bundle's settings with freshly exported small graphs of another architecture
    (2 levels of 16/32 channels, one block each; the ``tiny`` SER preset; style width 64).
    Half the weights stay at their initial values, so identical tensors (GroupNorm ones, the
    zero-initialised convolutions) are stored once in the graph and shared."""
    from emort.export.onnx import _export  # the exporter the bundles are made with
    from emort.training.diffusion import DiffusionModel
    from emort.training.models.denoiser import DenoiserConfig
    from emort.training.models.ser import SER_PRESETS, ResNetSER
    from emort.training.models.style import StyleConfig

    torch.manual_seed(0)
    ser_cfg = SER_PRESETS["tiny"]
    ser = ResNetSER(ser_cfg)
    diff = DiffusionModel(DenoiserConfig(channels=[16, 32], blocks_per_level=1, emotion_dim=ser_cfg.embedding_dim, style_dim=64),
                          StyleConfig(style_dim=64))
    with torch.no_grad():
        for k, (name, t) in enumerate([*ser.state_dict().items(), *diff.state_dict().items()]):
            if t.dtype.is_floating_point and k % 2 == 0:  # BatchNorm running statistics included: folding must matter
                t.mul_(0.5 + torch.rand_like(t)).add_(0 if name.endswith("running_var") else 0.05 * torch.randn_like(t))
    n = bundle.mel.n_mels
    _export(ser, (torch.zeros(1, 1, n, 32),), folder / "ser.onnx", ["mel"], ["logits", "embedding"], {"mel": {0: "b", 3: "t"}})
    _export(diff.style, (torch.zeros(1, n, 32),), folder / "style.onnx", ["mel"], ["style"], {"mel": {0: "b", 2: "t"}})
    inputs = ["x", "t", "emotion", "emotion_mask", "style"]
    _export(diff.denoiser, (torch.zeros(2, n, 32), torch.zeros(2), torch.zeros(2, 32), torch.ones(2, 1), torch.zeros(2, 64)),
            folder / "denoiser.onnx", inputs, ["prediction"], {**{k: {0: "b"} for k in inputs}, "x": {0: "b", 2: "t"}, "prediction": {0: "b", 2: "t"}})
    models = {k: v for k, v in bundle.models.items() if k in ("ser", "style", "denoiser")}
    models["ser"] = dataclasses.replace(models["ser"], dim=ser_cfg.embedding_dim)
    models["style"] = dataclasses.replace(models["style"], dim=64)
    ser_rec = dataclasses.replace(bundle.training["ser"], model=None, preset="tiny")  # older manifests: the preset only
    from emort.runtime.bundle import sha256_file

    files = {**bundle.files, **{f: sha256_file(folder / f) for f in ("ser.onnx", "style.onnx", "denoiser.onnx")}}
    return dataclasses.replace(bundle, path=folder, models=models, stride=2, files=files, training={
        "ser": ser_rec, "diffusion": dataclasses.replace(bundle.training["diffusion"], options={"channels": [16, 32], "blocks_per_level": 1})})


def test_another_architecture_is_rebuilt_from_its_own_manifest(bundle, tmp_path):
    import onnx

    b = _small_bundle(bundle, tmp_path)
    shared = [n for n in onnx.load(str(tmp_path / "denoiser.onnx")).graph.node if n.op_type == "Identity"]
    assert shared  # the case this test is for: weights stored once and shared
    models = bundle_torch_models(b)
    assert set(models) == {"ser", "style", "denoiser"}
    assert models["denoiser"].config.channels == [16, 32] and models["ser"].config.width == 8
    rng = np.random.default_rng(1)
    mel = rng.standard_normal((2, b.mel.n_mels, 40)).astype(np.float32)
    assert _worst(_torch(b, models, "ser", {"mel": mel[:, None]}), _ort(b, "ser", {"mel": mel[:, None]})) <= ATOL
    assert _worst(_torch(b, models, "style", {"mel": mel}), _ort(b, "style", {"mel": mel})) <= ATOL
    feeds = {"x": mel, "t": np.array([600.0, 30.0], np.float32), "emotion": rng.standard_normal((2, 32)).astype(np.float32),
             "emotion_mask": np.array([[1.0], [0.0]], np.float32), "style": rng.standard_normal((2, 64)).astype(np.float32)}
    assert _worst(_torch(b, models, "denoiser", feeds), _ort(b, "denoiser", feeds)) <= ATOL


def test_bench_eager_rows_use_the_rebuilt_modules_without_run_folders(bundle, mels):
    """``emort bench`` from a fresh clone: the torch backend is ok, says in one line where its
    weights came from, and its scorer and denoiser compute what onnxruntime computes."""
    from emort.bench import benchmarks_module
    from emort.runtime.enhancer import Enhancer

    torch_backend = benchmarks_module("eager_rows").torch_backend
    be = torch_backend(bundle, Path("no-such-run/ser"), None)
    assert be.status == "ok", be.reason
    assert be.reason.startswith("SER run no-such-run/ser not found: ") and "ONNX graphs" in be.reason and "\n" not in be.reason
    ort_enh = Enhancer.load(bundle, device="cpu", threads=1)
    mel = mels[:1, None]
    assert _worst(be.enhancer.scorer.ser(mel=mel), ort_enh.scorer.ser(mel=mel)) <= ATOL
    bad = _with_training(bundle, "diffusion", channels=[96, 144, 160])
    be = torch_backend(bad, None, None)
    assert be.status == "skipped" and "denoiser.onnx: graph does not match" in be.reason and "\n" not in be.reason


def test_a_bundle_becomes_a_diffusion_run_to_warm_start_from(bundle, models, mels, tmp_path):
    """`emort train diffusion --init-from BUNDLE`: the run folder written from the bundle has the
    architecture a run of the same channels records and the graphs' weights (same outputs)."""
    from emort.export.to_torch import write_diffusion_run
    from emort.training.common import load_config, load_weights
    from emort.training.diffusion import DiffusionModel
    from emort.training.models.denoiser import DenoiserConfig
    from emort.training.models.style import StyleConfig

    out = write_diffusion_run(bundle, tmp_path / "init")
    cfg = load_config(out, "diffusion")
    opts = bundle.training["diffusion"].options
    # what train_diffusion builds (and compares with --init-from's record) for this bundle's data
    dcfg = DenoiserConfig(n_mels=bundle.mel.n_mels, channels=list(opts["channels"]), blocks_per_level=opts["blocks_per_level"],
                          emotion_dim=bundle.models["ser"].dim)
    scfg = StyleConfig(n_mels=bundle.mel.n_mels)
    assert cfg["denoiser"] == dcfg.to_dict() and cfg["style"] == scfg.to_dict()
    assert cfg["bundle_content_hash"] == bundle.content_hash
    model = DiffusionModel(dcfg, scfg).eval()
    load_weights(out, "diffusion", model)
    x = torch.from_numpy(mels)
    args = (x, torch.tensor([500.0, 50.0]), torch.from_numpy(np.stack([bundle.centroids[bundle.labels[3]]] * 2).astype(np.float32)),
            torch.ones(2, 1), models["style"](x))
    with torch.inference_mode():
        assert torch.equal(model.denoiser(*args), models["denoiser"](*args))
        assert torch.equal(model.style(x), models["style"](x))


@pytest.mark.parametrize("name, norm", [("ser", "global"), ("ser_speaker", "speaker")])
def test_a_bundle_ser_becomes_an_ser_run(bundle, models, mels, tmp_path, name, norm):
    """`emort train diffusion --ser BUNDLE` and re-export: the SER run folder computes what the
    graph computes (BatchNorms folded in the graph come back as scale 1 + the folded bias), keeps
    the model's own training record (its input normalisation) and holds out the project split's
    validation and test speakers besides the SER's own."""
    from emort.export.to_torch import write_ser_run
    from emort.training.ser import input_norm, load_ser
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    model, cfg = load_ser(write_ser_run(bundle, tmp_path / name, name))
    x = torch.from_numpy(mels[:, None])
    with torch.inference_mode():
        got, want = model(x), models[name](x)
    assert _worst([g.numpy() for g in got], [w.numpy() for w in want]) < 1e-5
    kept = {k: v for k, v in bundle.training[name].options.items() if k not in ("val_speakers", "test_speakers")}
    assert input_norm(cfg) == norm and {k: cfg["train"][k] for k in kept} == kept
    assert cfg["train"]["test_speakers"] == cfg["split"]["test_speakers"] and cfg["train"]["val_speakers"] == cfg["split"]["val_speakers"]
    assert set(VAL_SPEAKERS) <= set(cfg["split"]["val_speakers"]) and set(TEST_SPEAKERS) <= set(cfg["split"]["test_speakers"])
    assert set(bundle.training[name].split.test_speakers) <= set(cfg["split"]["test_speakers"])
    assert cfg["labels"] == list(bundle.labels) and np.allclose(cfg["norm"]["mean"], bundle.norm_mean)
    assert set(cfg["centroids"]) == (set(bundle.centroids) if name == "ser" else set())
