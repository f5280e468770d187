"""TensorRT engines on a real GPU: build from the shipped bundle, compare with onnxruntime on CPU.

Every test here is marked ``gpu`` and skips with its reason where TensorRT, CUDA
or a GPU is missing (always, on the CPU machines this project is developed on).
"""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.session import native_tensorrt_available

pytestmark = pytest.mark.gpu

#: FP16 engines vs FP32 onnxruntime: max |diff| relative to the reference's max |value|.
FP16_TOL = 3e-2


@pytest.fixture(scope="module")
def gpu_bundle():
    if not native_tensorrt_available():
        pytest.skip("needs an NVIDIA GPU with TensorRT: `import tensorrt` / `cuda.bindings` failed or no GPU is visible "
                    "(pip install 'emort[tensorrt]' on a GPU host)")
    from emort.runtime.bundle import load_bundle
    from emort.runtime.errors import BundleError

    try:
        return load_bundle()
    except BundleError as e:
        pytest.skip(f"no default bundle to build engines from: {e}")


@pytest.fixture(scope="module")
def engines(gpu_bundle, tmp_path_factory):
    from emort.export.tensorrt import build_engines

    out = tmp_path_factory.mktemp("engines")
    return out, build_engines(gpu_bundle, out_dir=out, fp16=True)


def _feeds(b, name: str, batch: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = b.mel.n_mels
    if name == "ser":
        return {"mel": rng.standard_normal((batch, 1, n, frames)).astype(np.float32)}
    if name == "style":
        return {"mel": rng.standard_normal((batch, n, frames)).astype(np.float32)}
    e_dim = len(next(iter(b.centroids.values())))
    s_dim = b.models["style"].dim
    return {
        "x": rng.standard_normal((batch, n, frames)).astype(np.float32),
        "t": rng.uniform(1, b.schedule.num_train_steps - 1, batch).astype(np.float32),
        "emotion": rng.standard_normal((batch, e_dim)).astype(np.float32),
        "emotion_mask": (np.arange(batch) % 2 == 0).astype(np.float32)[:, None],
        "style": rng.standard_normal((batch, s_dim)).astype(np.float32),
    }


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / (np.abs(ref).max() + 1e-6))


@pytest.mark.parametrize("name", ["ser", "style", "denoiser", "denoiser@fp16"])
def test_engine_matches_onnxruntime(gpu_bundle, engines, name):
    from emort.runtime.session import OrtModel
    from emort.runtime.trt import TrtModel

    b = gpu_bundle
    _, paths = engines
    key, name = name, name.split("@")[0]
    ref = OrtModel(b.model_path(name), "cpu")
    with TrtModel(paths[key]) as m:
        assert m.precision == ("fp16" if key.endswith("@fp16") else "fp32")
        assert m.input_names == ref.input_names and m.output_names == ref.output_names
        frames = 8 * b.stride * 4  # a multiple of the stride, inside the profile
        for batch in (1, 2):
            feeds = _feeds(b, name, batch, frames, seed=batch)
            want = ref(**feeds)
            for _ in range(3):  # plain run, CUDA-graph capture, graph replay
                got = m(**feeds)
                for g, w, out in zip(got, want, m.output_names, strict=True):
                    assert g.shape == w.shape, out
                    assert _rel(g, w) < FP16_TOL, f"{name}.{out}: {_rel(g, w):.3g}"


def test_graph_replay_tracks_new_inputs(gpu_bundle, engines):
    """A replayed graph must read the new input values, not the captured ones."""
    from emort.runtime.trt import TrtModel

    b = gpu_bundle
    _, paths = engines
    frames = 16 * b.stride
    with TrtModel(paths["denoiser"]) as m:
        outs = [m(**_feeds(b, "denoiser", 2, frames, seed=s))[0] for s in range(4)]
        assert len(m._graphs) == 1
        again = m(**_feeds(b, "denoiser", 2, frames, seed=0))[0]
        np.testing.assert_allclose(again, outs[0], rtol=1e-3, atol=1e-3)
        assert not np.allclose(outs[2], outs[3])
        # larger shapes grow the buffers and drop stale graphs; results stay right
        big = m(**_feeds(b, "denoiser", 4, 64 * b.stride, seed=9))[0]
        assert big.shape == (4, b.mel.n_mels, 64 * b.stride) and len(m._graphs) == 0
        np.testing.assert_allclose(m(**_feeds(b, "denoiser", 2, frames, seed=0))[0], outs[0], rtol=1e-3, atol=1e-3)


def test_engines_are_cached_and_found(gpu_bundle, engines):
    from emort.export.tensorrt import build_engines
    from emort.runtime.trt import find_engine

    out, paths = engines
    calls = []
    again = build_engines(gpu_bundle, out_dir=out, progress=lambda n, s: calls.append(s))
    assert again == paths and set(calls) == {"cached"}
    for key, p in paths.items():
        name, _, precision = key.partition("@")
        assert find_engine(out, name, source=gpu_bundle.model_path(name), precision=precision or "fp32") == p


def test_load_model_uses_native_engine(gpu_bundle, engines):
    from emort.runtime.session import load_model
    from emort.runtime.trt import TrtModel

    out, _ = engines
    m = load_model(gpu_bundle.model_path("style"), "tensorrt", engine_dir=out, name="style")
    assert isinstance(m, TrtModel) and m.precision == "fp32"
    d = load_model(gpu_bundle.model_path("denoiser"), "tensorrt", engine_dir=out, name="denoiser", precision="fp16")
    assert isinstance(d, TrtModel) and d.precision == "fp16"
