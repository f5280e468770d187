"""emort.export.optimize: the style encoder's 1-D convolutions rewritten as 2-D ones of height 1 and the
denoiser written in 4-D (both faster in onnxruntime), outputs equal to float rounding, recorded,
readable back into torch, refused when they would differ."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the rewrite reads and writes ONNX graphs: pip install 'emort[export]'")
ort = pytest.importorskip("onnxruntime")

from emort.export import optimize  # noqa: E402
from emort.export.denoiser_graph import REWRITE_4D  # noqa: E402
from emort.runtime.bundle import DEFAULT_BUNDLE, load_bundle, sha256_file  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402


def _run(model_or_path, feeds):
    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(None)


@pytest.fixture
def copy(tmp_path, shipped):
    """The shipped bundle with its graphs as torch exports them: the style encoder's rewrite undone,
    the denoiser exported again from the modules rebuilt from its graph; checksums updated."""
    import json

    pytest.importorskip("torch", reason="the denoiser as torch exports it: pip install 'emort[train]'")
    import torch

    from emort.export.onnx import _export
    from emort.export.to_torch import bundle_torch_models
    from emort.runtime.bundle import MANIFEST

    dst = tmp_path / "bundle"
    shutil.copytree(shipped.path, dst)
    m = json.loads((dst / MANIFEST).read_text())
    style = dst / shipped.models["style"].file
    model = onnx.load(str(style))
    optimize.conv2d_as_conv1d(model)
    onnx.save(model, str(style))
    den = dst / shipped.models["denoiser"].file
    f = optimize._example_feeds(shipped, "denoiser", np.random.default_rng(0))
    _export(bundle_torch_models(shipped)["denoiser"], tuple(torch.from_numpy(v) for v in f.values()), den, list(f), ["prediction"],
            {**{k: {0: "batch"} for k in f}, "x": {0: "batch", 2: "frames"}, "prediction": {0: "batch", 2: "frames"}})
    for path in (style, den):
        m["files"][path.name] = sha256_file(path)
    (dst / MANIFEST).write_text(json.dumps(m, indent=1))
    return dst


def _feeds(b, name, frames=120):
    rng = np.random.default_rng(5)
    f = optimize._example_feeds(b, name, rng)
    if name == "denoiser":  # a real-length input, not only the check's
        f["x"] = rng.standard_normal((2, b.mel.n_mels, frames)).astype(np.float32)
    else:
        f["mel"] = rng.standard_normal((2, b.mel.n_mels, frames)).astype(np.float32)
    return f


def test_optimize_bundle_rewrites_checks_and_records(copy):
    exported = load_bundle(copy)
    exported_graphs = {name: onnx.load(str(exported.model_path(name))) for name in ("denoiser", "style")}
    assert any(n.op_type == "Shape" for n in exported_graphs["denoiser"].graph.node)  # torch computes its reshapes at run time
    done = optimize.optimize_bundle(copy)
    assert done["denoiser"] == {"rewrite": REWRITE_4D, "convolutions": 43, "max_rel_diff": done["denoiser"]["max_rel_diff"]}
    assert done["style"]["rewrite"] == optimize.REWRITE and done["style"]["convolutions"] == 4
    assert all(r["max_rel_diff"] <= optimize.REWRITE_RTOL for r in done.values())
    b = load_bundle(copy)  # checksums verified on load: the manifest follows the new files
    for name, rewrite in (("denoiser", REWRITE_4D), ("style", optimize.REWRITE)):
        model = onnx.load(str(b.model_path(name)))
        assert optimize.rewrites_of(model) == [rewrite]
        assert not [n for n in model.graph.node if n.op_type == "Conv" and len(_weight(model, n).dims) != 4]
        feeds = _feeds(b, name)
        for got, want in zip(_run(b.model_path(name), feeds), _run(exported_graphs[name], feeds), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    ops = {n.op_type for n in onnx.load(str(b.model_path("denoiser"))).graph.node}
    assert not ops & {"Shape", "Gather", "Squeeze", "Cast", "Slice"}  # every reshape a constant one
    assert sha256_file(b.model_path("ser")) == sha256_file(exported.model_path("ser"))  # 2-D already: untouched
    again = optimize.optimize_bundle(copy)
    assert all(r["convolutions"] == 0 for r in again.values())


def _weight(model, node):
    return next(i for i in model.graph.initializer if i.name == node.input[1])


def test_the_rewrite_undoes_to_the_exported_graph(copy):
    model = onnx.load(str(copy / "denoiser.onnx"))  # as torch exports it: rewrite, undo, redo, undo
    original = [(n.name, list(_weight(model, n).dims)) for n in model.graph.node if n.op_type == "Conv"]
    assert len(original) == 43 and all(len(d) == 3 for _, d in original)
    feeds = _feeds(load_bundle(copy), "denoiser", 64)
    want = _run(model, feeds)[0]
    assert optimize.conv1d_as_conv2d(model) == 43 and optimize.conv1d_as_conv2d(model) == 0
    np.testing.assert_allclose(_run(model, feeds)[0], want, rtol=0, atol=1e-5)
    assert optimize.conv2d_as_conv1d(model) == 43 and optimize.rewrites_of(model) == []
    assert [(n.name, list(_weight(model, n).dims)) for n in model.graph.node if n.op_type == "Conv"] == original
    assert not [n for n in model.graph.node if n.name.endswith(("_as2d_unsqueeze", "_as2d_squeeze"))]
    np.testing.assert_allclose(_run(model, feeds)[0], want, rtol=0, atol=1e-5)


def test_a_rewrite_that_changes_the_outputs_is_refused_and_nothing_written(copy, monkeypatch):
    before = {p.name: sha256_file(p) for p in copy.iterdir()}
    monkeypatch.setattr(optimize, "REWRITE_RTOL", 0.0)
    with pytest.raises(EmortError, match="rewrite changes the outputs") as e:
        optimize.optimize_bundle(copy)
    assert "\n" not in str(e.value)
    assert {p.name: sha256_file(p) for p in copy.iterdir()} == before


def test_the_torch_modules_are_rebuilt_from_a_rewritten_bundle(copy):
    torch = pytest.importorskip("torch")
    from emort.export.to_torch import bundle_torch_models

    optimize.optimize_bundle(copy)
    b = load_bundle(copy)
    mods = bundle_torch_models(b)
    for name in ("style", "denoiser"):
        feeds = _feeds(b, name, 64)
        with torch.no_grad():
            got = mods[name](*[torch.from_numpy(feeds[k]) for k in b.models[name].inputs])
        want = _run(b.model_path(name), feeds)[0]
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_the_shipped_bundle_is_rewritten(shipped):
    """The default bundle ships with the rewrites (emort export optimize was run on it)."""
    assert shipped.path == DEFAULT_BUNDLE or shipped.path.resolve() == DEFAULT_BUNDLE.resolve()
    for name, rewrite in (("denoiser", REWRITE_4D), ("style", optimize.REWRITE)):
        assert optimize.rewrites_of(onnx.load(str(shipped.model_path(name)))) == [rewrite]


def _tiny_graph(opset: int = 17, extra_reader: bool = False):
    """x (1, 4, 16) -> Conv(W) -> Conv(Identity(W)) [-> + Shape(W) read]: unnamed nodes, a
    weight shared through an Identity node as torch's exporter writes it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    nodes = [helper.make_node("Identity", ["W"], ["W_copy"]),
             helper.make_node("Conv", ["x", "W", "B"], ["y1"], pads=[1, 1]),
             helper.make_node("Conv", ["y1", "W_copy"], ["y2"], pads=[2, 2], dilations=[2])]
    outputs = [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("Shape", ["W"], ["w_shape"]))
        outputs.append(helper.make_tensor_value_info("w_shape", TensorProto.INT64, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16])], outputs, [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("extra_reader", [False, True])
def test_shared_weights_and_unnamed_nodes_are_rewritten_safely(extra_reader):
    model = _tiny_graph(extra_reader=extra_reader)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 4, 16)).astype(np.float32)}
    want = _run(model, feeds)
    n = optimize.conv1d_as_conv2d(model)
    assert n == (0 if extra_reader else 2)  # a weight another node reads keeps its shape: its convolutions stay 1-D
    got = _run(model, feeds)  # runs (unique node names, every Conv's weight of its rank)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    if n:
        assert optimize.conv2d_as_conv1d(model) == 2
        np.testing.assert_allclose(_run(model, feeds)[0], want[0], rtol=0, atol=1e-5)


def test_graphs_before_opset_13_are_left_as_they_are():
    model = _tiny_graph(opset=12)
    assert optimize.conv1d_as_conv2d(model) == 0 and optimize.rewrites_of(model) == []


def test_without_torch_the_denoiser_is_left_and_the_style_encoder_still_rewritten(copy, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):  # as a runtime + export install without the [train] extra
        if name == "emort.export.to_torch" or name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    before = sha256_file(copy / "denoiser.onnx")
    monkeypatch.setattr(builtins, "__import__", no_torch)
    done = optimize.optimize_bundle(copy)
    monkeypatch.undo()
    assert done["denoiser"]["convolutions"] == 0 and "pip install 'emort[train,export]'" in done["denoiser"]["skipped"]
    assert "denoiser.onnx" in done["denoiser"]["skipped"] and "\n" not in done["denoiser"]["skipped"]
    assert done["style"]["convolutions"] == 4
    b = load_bundle(copy)  # the manifest follows the rewritten style encoder, the denoiser unchanged
    assert sha256_file(b.model_path("denoiser")) == before


def test_the_cli_notes_a_skipped_denoiser_and_exits_1(copy, monkeypatch):
    from typer.testing import CliRunner

    from emort.cli.app import app

    monkeypatch.setattr(optimize, "_denoiser_4d", lambda b: (_ for _ in ()).throw(EmortError(f"{b.model_path('denoiser')}: no torch here")))
    r = CliRunner().invoke(app, ["export", "optimize", "--bundle", str(copy)])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "denoiser: not rewritten:" in out and "no torch here" in out and "style: conv1d-as-conv2d, 4 convolutions" in out


def test_a_stop_before_the_manifest_is_written_leaves_the_bundle_as_it_was(copy, monkeypatch):
    """The rewritten graphs go in under new names and the manifest names them last: a stop (Ctrl-C,
    a full disk) at that step leaves a bundle that loads, without stray files (0.24 rewrote the
    graph in place first, leaving a checksum mismatch)."""
    before = {p.name: sha256_file(p) for p in copy.iterdir()}

    def stopped(*a, **k):
        raise KeyboardInterrupt

    import emort.export.manifest as manifest_mod

    monkeypatch.setattr(manifest_mod, "update_manifest", stopped)  # where every graph commit writes the manifest
    with pytest.raises(KeyboardInterrupt):
        optimize.optimize_bundle(copy)
    assert {p.name: sha256_file(p) for p in copy.iterdir()} == before
    load_bundle(copy)
    monkeypatch.undo()
    optimize.optimize_bundle(copy)
    b = load_bundle(copy)
    assert b.models["style"].file.startswith("style-") and not (copy / "style.onnx").exists()
