"""emort.export.denoiser_graph: the denoiser written as a 4-D ONNX graph computes what the PyTorch
module computes, for any architecture the config allows, and its weights read back by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the graph is written from the PyTorch module: pip install 'emort[train]'")
onnx = pytest.importorskip("onnx", reason="pip install 'emort[export]'")
ort = pytest.importorskip("onnxruntime")

from emort.export.denoiser_graph import REWRITE_4D, build  # noqa: E402
from emort.export.optimize import rewrites_of  # noqa: E402
from emort.runtime.errors import BundleError  # noqa: E402
from emort.training.models.denoiser import Denoiser, DenoiserConfig  # noqa: E402

CONFIGS = [
    DenoiserConfig(n_mels=12, channels=[16, 24], blocks_per_level=1, attention_levels=[1], emotion_dim=6, style_dim=5, cond_dim=20, heads=2),
    DenoiserConfig(n_mels=10, channels=[8, 16, 16, 24], blocks_per_level=3, attention_levels=[0, 2], emotion_dim=4, style_dim=7, cond_dim=12, heads=4),
]


def _random(cfg: DenoiserConfig, seed: int) -> Denoiser:
    """A denoiser with every weight random (the fresh module's zero-initialised output convolutions
    would make any graph look right)."""
    torch.manual_seed(seed)
    model = Denoiser(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def _feeds(cfg: DenoiserConfig, batch: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, cfg.n_mels, frames)).astype(np.float32),
            "t": rng.uniform(0, 1000, batch).astype(np.float32),
            "emotion": rng.standard_normal((batch, cfg.emotion_dim)).astype(np.float32),
            "emotion_mask": (np.arange(batch) % 2 == 0).astype(np.float32)[:, None],
            "style": rng.standard_normal((batch, cfg.style_dim)).astype(np.float32)}


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_the_graph_computes_what_the_module_computes(index):
    cfg = CONFIGS[index]
    model = _random(cfg, index)
    graph = build(model)
    assert rewrites_of(graph) == [REWRITE_4D]
    assert [i.name for i in graph.graph.input] == ["x", "t", "emotion", "emotion_mask", "style"]
    assert [o.name for o in graph.graph.output] == ["prediction"]
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, cfg.stride), (3, 5 * cfg.stride)):  # one graph for any batch and length
        feeds = _feeds(cfg, batch, frames, seed=batch)
        with torch.no_grad():
            want = model(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
        got = sess.run(None, feeds)[0]
        assert got.shape == want.shape == (batch, cfg.n_mels, frames)
        assert float(np.abs(want).max()) > 1.0  # a non-trivial output
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


def test_the_weights_read_back_by_name_and_a_mismatch_is_refused(tmp_path):
    from emort.export.to_torch import _load_graph

    cfg = CONFIGS[0]
    model = _random(cfg, 7)
    path = tmp_path / "denoiser.onnx"
    path.write_bytes(build(model).SerializeToString())
    example = tuple(torch.from_numpy(v) for v in _feeds(cfg, 1, cfg.stride).values())
    back = _load_graph(Denoiser(cfg), path, example)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    other = DenoiserConfig(**{**cfg.to_dict(), "channels": [16, 32]})
    with pytest.raises(BundleError, match="denoiser.onnx: graph does not match the Denoiser") as e:
        _load_graph(Denoiser(other), path, example)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("change", [{"blocks_per_level": 2}, {"attention_levels": [0, 1]}, {"heads": 4}])
def test_a_graph_of_another_architecture_is_refused_though_names_match(tmp_path, change):
    """More blocks, other attention levels, other heads: the module's weights are all in the graph
    by name and shape, but the graph computes another network."""
    from emort.export.to_torch import _load_graph

    cfg = CONFIGS[0]
    graph_cfg = DenoiserConfig(**{**cfg.to_dict(), **change})
    path = tmp_path / "denoiser.onnx"
    path.write_bytes(build(_random(graph_cfg, 3)).SerializeToString())
    example = tuple(torch.from_numpy(v) for v in _feeds(cfg, 1, cfg.stride).values())
    with pytest.raises(BundleError, match="graph does not match the Denoiser") as e:
        _load_graph(Denoiser(cfg), path, example)
    assert "\n" not in str(e.value)
