"""A bundle's ONNX graphs back to the training code's torch modules (no run folders needed).

The architecture comes from the bundle's manifest (its ``training`` records, read through
:class:`emort.runtime.bundle.Bundle`), the weights from each graph's initializers. The
torch exporter (``emort.export.onnx``, TorchScript path, constant folding on) keeps most
``state_dict`` names but rewrites two kinds of layers, which are recovered here:

* GroupNorm becomes ``Reshape -> InstanceNormalization -> Reshape -> Mul -> Add`` with the
  affine weight and bias as unnamed ``(C, 1)`` initializers: matched to the module's
  GroupNorms in forward order.
* A BatchNorm right after a convolution (the SER's ResNet) is folded into that convolution:
  the graph's folded weight and bias go into the convolution, matched in forward order, and
  the BatchNorm becomes ``nn.Identity`` (exact, and what the graph computes).

Identical weights (e.g. GroupNorms still at their initial ones) are stored once and shared
through ``Identity`` nodes; those are followed back to the stored tensor.

Every match is checked (count, shape, convolution stride / padding / dilation / groups,
GroupNorm groups and epsilon, the graph's module scope), and every weight of the graph and
of the module must be used: a bundle whose graph does not match the architecture its
manifest records raises one :class:`~emort.runtime.errors.BundleError` line naming the file.

A denoiser graph written by :mod:`emort.export.denoiser_graph` (``emort.rewrites`` metadata
``denoiser-4d``, the shipped one since 0.14) stores every weight under its ``state_dict`` name:
it is read by name, and the module so filled must write the same graph again (nodes and
constants), which a graph of another architecture does not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from emort.export.denoiser_graph import REWRITE_4D
from emort.export.denoiser_graph import build as build_denoiser_graph
from emort.export.optimize import conv2d_as_conv1d, rewrites_of
from emort.runtime.bundle import MANIFEST, Bundle
from emort.runtime.errors import BundleError, EmortError
from emort.training.diffusion import DiffusionModel
from emort.training.models.denoiser import DenoiserConfig
from emort.training.models.ser import SER_PRESETS, ResNetSER, SERConfig
from emort.training.models.style import StyleConfig

_CONV = (nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def bundle_torch_models(bundle: Bundle) -> dict[str, nn.Module]:
    """The bundle's models as torch modules (eval mode), called exactly like its ONNX sessions.

    Returns ``{"ser", "style", "denoiser"}`` plus ``"ser_speaker"`` when the bundle has it.
    Each takes its inputs positionally in the order of ``bundle.models[name].inputs`` and
    returns the graph's outputs in the order of ``bundle.models[name].outputs``:

    * ``ser`` / ``ser_speaker`` (:class:`~emort.training.models.ser.ResNetSER`): mel
      ``(batch, 1, n_mels, frames)`` float32 -> (logits ``(batch, labels)``, embedding
      ``(batch, dim)``). Its BatchNorms are folded into the convolutions, as in the graph.
    * ``style`` (:class:`~emort.training.models.style.StyleEncoder`): normalised mel
      ``(batch, n_mels, frames)`` -> style ``(batch, style_dim)``.
    * ``denoiser`` (:class:`~emort.training.models.denoiser.Denoiser`): x ``(batch, n_mels,
      frames)`` with frames a multiple of ``bundle.stride``, t ``(batch,)`` float timesteps,
      emotion ``(batch, E)``, emotion_mask ``(batch, 1)``, style ``(batch, S)`` -> prediction
      ``(batch, n_mels, frames)``.

    Architecture: the SER from ``training.<name>.model`` (else its ``preset``); the
    diffusion model from ``training.diffusion``'s ``channels`` and ``blocks_per_level``,
    with the emotion and style widths from ``models.ser.dim`` / ``models.style.dim`` and
    the remaining options (attention levels, heads, conditioning width, style channels) at
    the config defaults, which ``emort train diffusion`` always uses.

    Needs torch and onnx (the ``[train,export]`` extras). Raises BundleError (one line,
    naming the file) when the manifest lacks the training record a model needs or a
    graph does not match the architecture built from it.
    """
    out: dict[str, nn.Module] = {}
    for name in ("ser", "ser_speaker"):
        if name in bundle.models:
            out[name] = _ser(bundle, name)
    out.update(_diffusion(bundle))
    return out


def _ser(bundle: Bundle, name: str) -> ResNetSER:
    rec = bundle.training.get(name)
    if rec is not None and rec.model:
        cfg = SERConfig.from_dict({"n_mels": bundle.mel.n_mels, "num_classes": len(bundle.labels), **rec.model})
    elif rec is not None and rec.preset in SER_PRESETS:
        cfg = SERConfig.from_dict({**SER_PRESETS[rec.preset].to_dict(), "n_mels": bundle.mel.n_mels, "num_classes": len(bundle.labels)})
    else:
        raise BundleError(f"{bundle.path / MANIFEST}: training.{name} records no SER architecture (model or preset); "
                          f"cannot rebuild {bundle.models[name].file} in torch")
    model = ResNetSER(cfg)
    example = (torch.zeros(1, 1, bundle.mel.n_mels, 64),)
    bundle.verify([name])  # a Bundle loaded with only some graphs checked
    return _load_graph(model, bundle.model_path(name), example)


def write_diffusion_run(bundle: Bundle, out: Path) -> Path:
    """The bundle's style encoder and denoiser as a diffusion run folder, for ``emort train
    diffusion --init-from``: ``out/diffusion.safetensors`` (the graphs' weights, which are the
    exported run's EMA weights) and ``out/diffusion.json`` (architecture and provenance). So a
    shipped model can be adapted to new data or a retrained SER without its training run.
    Needs torch, onnx and safetensors; raises BundleError as :func:`bundle_torch_models`.
    """
    from emort.training.common import save_checkpoint

    diff = _diffusion_model(bundle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, "diffusion", diff, {
        "kind": "diffusion",
        "denoiser": diff.denoiser.config.to_dict(),
        "style": diff.style.config.to_dict(),
        "from_bundle": str(bundle.path),
        "bundle_content_hash": bundle.content_hash,
    })
    return out


def ser_run_key(bundle: Bundle, name: str = "ser") -> str:
    """Hash of what :func:`write_ser_run` reads of ``bundle`` for SER ``name``: the graph's
    checksum, its training record and the manifest's mel settings, labels, normalisation and
    (for ``ser``) emotion centroids. A diffusion run trained on the SER resumes on any bundle
    with the same key: a new statistics classifier or denoiser in the bundle changes its
    :attr:`~emort.runtime.bundle.Bundle.content_hash`, not this."""
    import dataclasses
    import hashlib
    import json

    rec = bundle.training.get(name)
    key = {"graph": bundle.files.get(bundle.models[name].file), "training": dataclasses.asdict(rec) if rec is not None else None,
           "mel": bundle.mel.to_dict(), "labels": list(bundle.labels),
           "norm": [np.asarray(bundle.norm_mean).tolist(), np.asarray(bundle.norm_std).tolist()],
           "centroids": {k: np.asarray(v).tolist() for k, v in bundle.centroids.items()} if name == "ser" else None}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ser_run_record(folder: Path) -> dict:
    """The ``ser.json`` of an SER run folder written by :func:`write_ser_run` (``{}`` when there is
    none); one-line EmortError when it cannot be read."""
    import json

    f = Path(folder) / "ser.json"
    if not f.exists():
        return {}
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise EmortError(f"{f}: unreadable ({type(e).__name__}: {e}); delete {folder} or choose another --out") from None
    if not isinstance(rec, dict):
        raise EmortError(f"{f}: not an SER run record; delete {folder} or choose another --out")
    return rec


def holds_ser(bundle: Bundle, folder: Path, record: dict, name: str = "ser") -> bool:
    """Whether the SER run ``folder`` (its ``record``: :func:`ser_run_record`) holds ``bundle``'s
    SER ``name``: by :func:`ser_run_key` when it records the same one, else by comparing the SER
    itself (weights, architecture, mel settings, labels, normalisation, centroids), as for folders
    of emort 0.9, which recorded only the bundle's content hash; a match found that way records the
    key in ``ser.json``."""
    import hashlib
    import tempfile

    from emort.runtime.atomic import write_json_atomic

    key = ser_run_key(bundle, name)
    if not record or record.get("bundle_ser_key") == key:
        return bool(record)
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="emort-ser-") as d:
        write_ser_run(bundle, Path(d), name)
        fresh = ser_run_record(Path(d))
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
                  for p in (folder / "ser.safetensors", Path(d) / "ser.safetensors")]
    same = digest[0] is not None and digest[0] == digest[1] and all(
        record.get(k) == fresh.get(k) for k in ("model", "mel", "labels", "norm", "centroids"))
    if same:
        write_json_atomic(folder / "ser.json", {**record, "bundle_ser_key": key})
    return same


def write_ser_run(bundle: Bundle, out: Path, name: str = "ser") -> Path:
    """The bundle's SER ``name`` (``ser``, or the per-speaker ``ser_speaker``) as an SER run
    folder, for ``emort train diffusion --ser`` and ``emort export onnx --ser / --speaker-ser``: a
    diffusion model can then be trained or adapted on the shipped SER's embeddings (e.g. on a
    new corpus), and the shipped SERs exported with it, without their training runs.
    ``out/ser.safetensors`` holds the graph's weights in a
    :class:`~emort.training.models.ser.ResNetSER` whose BatchNorms are scale 1 plus the bias the
    graph folded into the convolution before each (the same function); ``out/ser.json`` holds the
    architecture, mel settings, labels, normalisation and (``ser`` only: the bundle carries no
    others) centroids from the manifest. Its held-out speakers are the SER's own plus the project
    split's validation and test speakers
    (``emort.training.splits``), so a diffusion run on it never trains on them. For inference
    and for conditioning only: the BatchNorms' statistics are synthetic (mean 0, variance
    1 - eps), so training the SER further in train mode would compute another function.
    Raises BundleError as :func:`bundle_torch_models`.
    """
    from emort.training.common import save_checkpoint
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    folded = _ser(bundle, name)
    model = ResNetSER(folded.config).eval()  # eval: the forward below must not update BatchNorm statistics
    state = model.state_dict()
    have = folded.state_dict()
    for k in state:
        if k in have:
            state[k] = have[k]
    # Each BatchNorm the graph folded away follows one convolution (the data flow of one
    # forward pass, as the folding in _load_graph matched them); that convolution has no bias
    # here, so the BatchNorm becomes scale 1 plus the folded bias: what the graph computes.
    example = (torch.zeros(1, 1, bundle.mel.n_mels, 64),)
    conv_of = {bn: conv for conv, bn in _forward_order(model, example)["bn_after_conv"].items()}
    for q, m in model.named_modules():
        if isinstance(m, _BN) and f"{q}.weight" not in have:
            conv = conv_of.get(q)
            if conv is None or f"{conv}.bias" not in have or f"{conv}.bias" in state:
                raise BundleError(f"{bundle.model_path(name)}: BatchNorm {q} was folded, but not into a bias-free convolution before it")
            state[f"{q}.weight"] = torch.ones_like(m.weight)
            state[f"{q}.bias"] = have[f"{conv}.bias"].reshape(m.bias.shape)
            state[f"{q}.running_mean"] = torch.zeros_like(m.running_mean)
            state[f"{q}.running_var"] = torch.full_like(m.running_var, 1.0 - m.eps)
    model.load_state_dict(state)
    rec = bundle.training.get(name)
    split = rec.split if rec is not None else None
    val = sorted(set(split.val_speakers if split else ()) | set(VAL_SPEAKERS))
    test = sorted(set(split.test_speakers if split else ()) | set(TEST_SPEAKERS))
    # The training options keep what the run did, but name the same held-out speakers as the
    # split: speakers of corpora it never read were held out all the same, and runs fused or
    # paired with it (statistics classifier, diffusion) check the two lists against theirs.
    train = {**(rec.options if rec is not None else {}), "val_speakers": val, "test_speakers": test}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, "ser", model, {
        "kind": "ser",
        "model": folded.config.to_dict(),
        "preset": rec.preset if rec is not None else None,
        "mel": bundle.mel.to_dict(),
        "labels": list(bundle.labels),
        "norm": {"mean": np.asarray(bundle.norm_mean).tolist(), "std": np.asarray(bundle.norm_std).tolist()},
        "train": train,
        "split": {"train_speakers": list(split.train_speakers) if split else [], "val_speakers": val, "test_speakers": test},
        "best": rec.best if rec is not None else None,
        "centroids": {k: np.asarray(v).tolist() for k, v in bundle.centroids.items()} if name == "ser" else {},
        "from_bundle": str(bundle.path),
        "bundle_content_hash": bundle.content_hash,
        "bundle_ser_key": ser_run_key(bundle, name),
    })
    return out


def _diffusion(bundle: Bundle) -> dict[str, nn.Module]:
    diff = _diffusion_model(bundle)
    return {"style": diff.style, "denoiser": diff.denoiser}


def _diffusion_model(bundle: Bundle) -> DiffusionModel:
    rec = bundle.training.get("diffusion")
    opts = rec.options if rec is not None else {}
    if "channels" not in opts:
        raise BundleError(f"{bundle.path / MANIFEST}: training.diffusion records no channels; "
                          f"cannot rebuild {bundle.models['denoiser'].file} in torch")
    n_mels = bundle.mel.n_mels
    emotion_dim = bundle.models["ser"].dim or DenoiserConfig.emotion_dim
    style_dim = bundle.models["style"].dim or StyleConfig.style_dim
    dcfg = DenoiserConfig(n_mels=n_mels, channels=[int(c) for c in opts["channels"]],
                          blocks_per_level=int(opts.get("blocks_per_level", DenoiserConfig.blocks_per_level)),
                          emotion_dim=emotion_dim, style_dim=style_dim)
    diff = DiffusionModel(dcfg, StyleConfig(n_mels=n_mels, style_dim=style_dim))
    frames = 2 * dcfg.stride
    bundle.verify(["style", "denoiser"])
    _load_graph(diff.style, bundle.model_path("style"), (torch.zeros(1, n_mels, frames),))
    _load_graph(diff.denoiser, bundle.model_path("denoiser"),
                (torch.zeros(1, n_mels, frames), torch.zeros(1), torch.zeros(1, emotion_dim), torch.ones(1, 1),
                 torch.zeros(1, style_dim)))
    return diff.eval()


def _load_graph(module: nn.Module, path: Path, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """Fill ``module`` with the weights of the ONNX graph at ``path`` (see the module docstring)."""
    def fail(msg: str) -> BundleError:
        return BundleError(f"{path}: graph does not match the {type(module).__name__} the manifest describes: {msg}")

    try:
        model = onnx.load(str(path))
        conv2d_as_conv1d(model)  # a graph whose 1-D convolutions were rewritten for onnxruntime: the modules are 1-D
        graph = model.graph
    except Exception as e:  # unreadable or not ONNX: the same one line as any other bundle fault
        raise BundleError(f"{path}: not a readable ONNX graph ({type(e).__name__})") from None
    if REWRITE_4D in rewrites_of(model):
        return _load_by_name(module, model, fail)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    real = list(inits)
    root = {k: k for k in inits}
    for n in graph.node:  # the exporter stores identical weights once, the others as Identity nodes of it
        if n.op_type == "Identity" and n.input[0] in root:
            root[n.output[0]] = root[n.input[0]]
            inits[n.output[0]] = inits[n.input[0]]
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    state = module.state_dict()
    module.eval()
    order = _forward_order(module, example)
    loaded: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str, init: str, reshape: tuple[int, ...] | None = None) -> None:
        arr = inits[init]
        want = tuple(state[key].shape) if key in state else None
        if reshape is not None and arr.size == int(np.prod(reshape)):
            arr = arr.reshape(reshape)
        if want is not None and tuple(arr.shape) != want:
            raise fail(f"{key} is {tuple(arr.shape)} in the graph, {want} in the module")
        loaded[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
        used.add(root[init])

    # 1. Weights the exporter kept under their state_dict names.
    for key in state:
        if key in inits:
            take(key, key)
    # The exporter names what it did not rewrite "onnx::<Op>_<n>"; any other name is a module weight.
    unknown = [k for k in inits if not k.startswith("onnx::") and k not in state]
    if unknown:
        raise fail(f"the module has no {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")

    # 2. Convolutions (named, or with a BatchNorm folded in), matched to Conv nodes in order.
    conv_nodes = [n for n in graph.node if n.op_type == "Conv"]
    named_convs = {n.input[1]: n for n in conv_nodes if n.input[1] in state}
    folded_nodes = [n for n in conv_nodes if n.input[1] not in state]
    bn_after = order["bn_after_conv"]
    lost = [q for q, _ in order["conv"] if f"{q}.weight" not in inits and q not in bn_after]
    if lost:
        raise fail(f"no weights in the graph for {', '.join(lost[:3])}{' ...' if len(lost) > 3 else ''}")
    folded = [(q, m) for q, m in order["conv"] if f"{q}.weight" not in inits]
    if len(folded) != len(folded_nodes):
        raise fail(f"{len(folded_nodes)} convolutions with a BatchNorm folded in the graph, {len(folded)} in the module")
    for q, m in order["conv"]:
        node = named_convs.get(f"{q}.weight")
        if node is not None:
            _check_conv(node, q, m, fail)
    for (q, m), node in zip(folded, folded_nodes):
        _check_conv(node, q, m, fail)
        w = inits.get(node.input[1])
        if w is None or tuple(w.shape) != tuple(m.weight.shape):
            raise fail(f"convolution {q}: graph weight {None if w is None else tuple(w.shape)}, module {tuple(m.weight.shape)}")
        if len(node.input) < 3 or node.input[2] not in inits:
            raise fail(f"convolution {q}: the graph's folded convolution has no bias")
        if m.bias is None:  # the folded BatchNorm's shift lives in the convolution's bias from now on
            m.bias = nn.Parameter(torch.zeros(m.out_channels))
            state[f"{q}.bias"] = m.bias.detach()
        take(f"{q}.weight", node.input[1])
        take(f"{q}.bias", node.input[2])
        bn = bn_after[q]
        _replace(module, bn, nn.Identity())
        for k in list(state):
            if k.startswith(bn + "."):
                del state[k]

    # 3. GroupNorm affine parameters, matched to the graph's InstanceNormalization patterns in order.
    patterns = []
    for n in graph.node:
        if n.op_type != "InstanceNormalization":
            continue
        reshape = _only(consumers.get(n.output[0], []), "Reshape")
        mul = reshape and _only(consumers.get(reshape.output[0], []), "Mul")
        add = mul and _only(consumers.get(mul.output[0], []), "Add")
        if not add:
            raise fail(f"InstanceNormalization {n.name or n.output[0]} is not followed by a GroupNorm's Reshape, Mul, Add")
        w = next((i for i in mul.input if i in inits), None)
        b = next((i for i in add.input if i in inits), None)
        if w is None or b is None:
            raise fail(f"GroupNorm at {mul.name or mul.output[0]} has no affine weights in the graph")
        if w in state:  # kept its name: loaded in step 1
            continue
        groups = _const(graph, producer, inits, producer[n.input[0]].input[1]) if n.input[0] in producer else None
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        patterns.append((mul, w, b, None if groups is None or groups.size < 2 else int(groups.reshape(-1)[1]), eps))
    gns = [(q, m) for q, m in order["groupnorm"] if f"{q}.weight" not in inits]
    if len(gns) != len(patterns):
        raise fail(f"{len(patterns)} GroupNorms in the graph, {len(gns)} in the module")
    for (q, m), (mul, w, b, groups, eps) in zip(gns, patterns):
        _check_scope(mul, q, fail)
        if groups is not None and groups != m.num_groups:
            raise fail(f"GroupNorm {q} has {groups} groups in the graph, {m.num_groups} in the module")
        if abs(eps - m.eps) > 1e-3 * m.eps:
            raise fail(f"GroupNorm {q} has epsilon {eps:g} in the graph, {m.eps:g} in the module")
        take(f"{q}.weight", w, (m.num_channels,))
        take(f"{q}.bias", b, (m.num_channels,))

    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise fail(f"no weights in the graph for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    extra = [k for k in real if k not in used and inits[k].dtype.kind == "f" and inits[k].size > 1]
    if extra:
        raise fail(f"graph weights the module does not use: {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    module.load_state_dict(loaded, strict=False)
    return module.eval()


def _load_by_name(module: nn.Module, model: onnx.ModelProto, fail) -> nn.Module:
    """Weights of a graph written by :mod:`emort.export.denoiser_graph`: every ``state_dict``
    tensor is stored under its own name, in the graph's layout (the same values, axes of length 1
    added). The module, so filled, must write the graph again node for node, with the same
    initializers (names and shapes): a graph of another architecture (more blocks, other
    attention levels or heads) shares many weight names with the module but not its nodes."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = module.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, want in state.items():
        arr = inits.get(key)
        if arr is None:
            raise fail(f"no weights in the graph for {key}")
        if [d for d in arr.shape if d != 1] != [d for d in want.shape if d != 1]:  # the same up to axes of length 1
            raise fail(f"{key} is {tuple(arr.shape)} in the graph, {tuple(want.shape)} in the module")
        loaded[key] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(tuple(want.shape)))
    module.load_state_dict(loaded)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    again = build_denoiser_graph(module, opset).graph
    if list(again.node) != list(graph.node):
        ours = {(n.name, n.op_type) for n in again.node}
        extra = [n.name for n in graph.node if (n.name, n.op_type) not in ours]
        raise fail(f"its nodes differ from those this module writes ({len(graph.node)} in the graph, {len(again.node)} from the module"
                   + (f"; e.g. {extra[0]}" if extra else "") + ")")
    shapes = {i.name: list(i.dims) for i in again.initializer}
    if {i.name: list(i.dims) for i in graph.initializer} != shapes:
        raise fail("its constants differ from those this module writes")
    return module.eval()


def _forward_order(module: nn.Module, example: tuple[torch.Tensor, ...]) -> dict:
    """Convolutions and GroupNorms in the order one forward calls them (the order the exporter
    traced), and which BatchNorm takes which convolution's output directly."""
    names = {m: q for q, m in module.named_modules()}
    order: dict = {"conv": [], "groupnorm": [], "bn_after_conv": {}}
    out_of: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # hold the outputs so their ids are not reused during the pass

    def on_conv(m, args, out):
        order["conv"].append((names[m], m))
        out_of[id(out)] = names[m]
        keep.append(out)

    def on_gn(m, args, out):
        order["groupnorm"].append((names[m], m))

    def on_bn(m, args, out):
        src = out_of.get(id(args[0]))
        if src is not None:
            order["bn_after_conv"][src] = names[m]

    hooks: list = []
    for m in module.modules():
        fn: Callable | None = on_conv if isinstance(m, _CONV) else on_gn if isinstance(m, nn.GroupNorm) else on_bn if isinstance(m, _BN) else None
        if fn is not None:
            hooks.append(m.register_forward_hook(fn))
    try:
        with torch.no_grad():
            module(*example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _check_conv(node, q: str, m: nn.Module, fail) -> None:
    """The Conv node computes what convolution ``q`` computes: same stride, padding, dilation, groups."""
    _check_scope(node, q, fail)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    pad = list(m.padding) if isinstance(m.padding, tuple) else None
    want = {"strides": list(m.stride), "dilations": list(m.dilation), "group": m.groups, "pads": None if pad is None else pad + pad}
    for k, v in want.items():
        got = attrs.get(k)
        if got is not None and v is not None and (list(got) if isinstance(got, (list, tuple)) else got) != v:
            raise fail(f"convolution {q} has {k} {got} in the graph, {v} in the module")


def _check_scope(node, q: str, fail) -> None:
    """The exporter names nodes ``/<scope>/.../<leaf module>/<Op>``: the leaf must end ``q``."""
    parts = node.name.split("/")
    if len(parts) >= 3 and parts[-2] and not q.endswith(parts[-2]):
        raise fail(f"the graph's {node.name} is matched to module {q}")


def _only(nodes: list, op: str):
    return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op else None


def _const(graph, producer: dict, inits: dict, name: str) -> np.ndarray | None:
    """A constant tensor (initializer or Constant node output), or None."""
    if name in inits:
        return inits[name]
    n = producer.get(name)
    if n is not None and n.op_type == "Constant":
        for a in n.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def _replace(root: nn.Module, qualname: str, new: nn.Module) -> None:
    parent_name, _, child = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
