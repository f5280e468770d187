"""The denoiser written as an ONNX graph by hand, in 4-D from input to output.

The PyTorch exporter writes :class:`~emort.training.models.denoiser.Denoiser` as 1-D
convolutions, each GroupNorm as a reshape computed at run time from the input's shape
(``Shape``, ``Gather``, ``Slice``, ``Concat``, ``Cast`` ...), and each FiLM as an
``Unsqueeze``; the ``conv1d-as-conv2d`` rewrite (:mod:`emort.export.optimize`) then wraps
every convolution in an ``Unsqueeze`` and a ``Squeeze``. Of the 686 operators onnxruntime ran
per call of that graph (its profiler, ``benchmarks/ort_profile.py``), 294 only moved shapes
around, each a kernel launch; of this graph's 401, 126 do. This module writes the same
network with the mel frames as the last axis of a ``(batch, channels, 1, frames)`` tensor
throughout: 2-D convolutions of height 1 with no reshapes between them, every reshape a
constant shape with ``0`` (copy) and ``-1`` (infer) entries, and the GroupNorm affine folded
with the FiLM modulation that follows it (``norm2(h) * (1 + scale) + shift`` as one multiply
and one add on the feature map), every block's per-channel factor and offset coming from one
matrix product on the conditioning vector (:func:`_films`).

Same inputs, output, names and dynamic axes as the exported graph, and the same weights,
stored under their ``state_dict`` names (convolution kernels as ``(C_out, C_in, 1, k)``, the
affines of the norms that are not folded as ``(C, 1, 1)``), so :func:`emort.export.to_torch.bundle_torch_models` reads
them back by name. Outputs within float rounding of PyTorch's (:func:`build` is checked by
:func:`emort.export.optimize.optimize_bundle` before anything is written).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REWRITE_4D = "denoiser-4d"


class _Graph:
    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.films: list[tuple[str, int]] = []  # (block, channels) of each residual block, in order
        self._n = 0

    def weight(self, key: str, shape: tuple[int, ...] | None = None) -> str:
        """The ``state_dict`` tensor ``key`` as an initializer of the same name (reshaped)."""
        if key not in self.inits:
            arr = np.asarray(self.state[key], dtype=np.float32)
            self.inits[key] = numpy_helper.from_array(arr.reshape(shape) if shape else arr, key)
        return key

    def const(self, name: str, value, dtype=np.float32) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name

    def shape(self, *dims: int) -> str:
        return self.const("shape_" + "_".join(str(d).replace("-", "m") for d in dims), list(dims), np.int64)

    def op(self, op: str, inputs: list[str], scope: str = "", name: str | None = None, **attrs) -> str:
        """Append one node; its output (``name``, else numbered in ``scope``)."""
        if name is None:
            self._n += 1
            out, name = f"{scope}/{op}_{self._n}_output_0", f"{scope}/{op}_{self._n}"
        else:
            out = name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def silu(self, x: str, scope: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x], scope)], scope)

    def linear(self, x: str, key: str) -> str:
        return self.op("Gemm", [x, self.weight(f"{key}.weight"), self.weight(f"{key}.bias")], "/" + key, transB=1)

    def conv(self, x: str, key: str, stride: int = 1, bias: bool = True) -> str:
        w = np.asarray(self.state[f"{key}.weight"])
        c_out, c_in, k = w.shape
        inputs = [x, self.weight(f"{key}.weight", (c_out, c_in, 1, k))]
        if bias:
            inputs.append(self.weight(f"{key}.bias"))
        pad = k // 2
        return self.op("Conv", inputs, "/" + key, kernel_shape=[1, k], strides=[1, stride], pads=[0, pad, 0, pad])

    def group_norm(self, x: str, key: str, channels: int, groups: int, affine: bool = True, eps: float = 1e-5) -> str:
        """GroupNorm over ``(B, C, 1, T)``: the InstanceNormalization of ``(B, groups, C/groups * T)``."""
        scope = "/" + key
        h = self.op("Reshape", [x, self.shape(0, groups, -1)], scope)
        h = self.op("InstanceNormalization", [h, self.const(f"ones_{groups}", np.ones(groups)), self.const(f"zeros_{groups}", np.zeros(groups))],
                    scope, epsilon=eps)
        h = self.op("Reshape", [h, self.shape(0, channels, 1, -1)], scope)
        if affine:
            h = self.op("Mul", [h, self.weight(f"{key}.weight", (channels, 1, 1))], scope)
            h = self.op("Add", [h, self.weight(f"{key}.bias", (channels, 1, 1))], scope)
        return h


def _res_block(g: _Graph, x: str, c: str, key: str, cin: int, cout: int) -> str:
    h = g.conv(g.silu(g.group_norm(x, f"{key}.norm1", cin, 8), f"/{key}"), f"{key}.conv1")
    g.films.append((key, cout))  # its factor and offset come from the one FiLM product (_films)
    h = g.group_norm(h, f"{key}.norm2", cout, 8, affine=False)
    h = g.op("Add", [g.op("Mul", [h, f"/{key}.film/factor"], f"/{key}.norm2"), f"/{key}.film/offset"], f"/{key}.norm2")
    h = g.conv(g.silu(h, f"/{key}"), f"{key}.conv2")
    skip = g.conv(x, f"{key}.skip") if f"{key}.skip.weight" in g.state else x
    return g.op("Add", [h, skip], f"/{key}")


def _films(g: _Graph, c: str) -> list[onnx.NodeProto]:
    """Every block's FiLM with its norm2 affine folded in, from one Gemm on the conditioning ``c``.

    Block ``k`` computes ``(n * w + b) * (1 + s) + f`` with ``n`` the normalised map, ``w, b`` the
    affine and ``(s, f) = W c + v`` the FiLM: ``n * [w (1 + s)] + [b (1 + s) + f]``, whose factor
    ``w + (w W_s) c + w v_s`` and offset ``b + f + (b W_s + W_f) c + b v_s + v_f`` are linear in
    ``c``. The folded weights are computed in the graph from the named ones (onnxruntime folds
    those constants when it loads the graph), so the stored weights stay the module's.
    """
    main, g.nodes = g.nodes, []  # these nodes go before the blocks that read them: returned, not appended
    weights, biases, sizes = [], [], []
    for key, ch in g.films:
        s = f"/{key}.film/fold"
        w_s, w_f = f"{s}/w_scale", f"{s}/w_shift"
        g.nodes.append(helper.make_node("Split", [g.weight(f"{key}.film.weight"), g.const(f"split_{ch}", [ch, ch], np.int64)], [w_s, w_f],
                                        name=f"{s}/split_w", axis=0))
        v_s, v_f = f"{s}/b_scale", f"{s}/b_shift"
        g.nodes.append(helper.make_node("Split", [g.weight(f"{key}.film.bias"), g.const(f"split_{ch}", [ch, ch], np.int64)], [v_s, v_f],
                                        name=f"{s}/split_b", axis=0))
        gamma, beta = g.weight(f"{key}.norm2.weight"), g.weight(f"{key}.norm2.bias")
        gamma_col = g.op("Unsqueeze", [gamma, g.const("axes_1", [1], np.int64)], name=f"{s}/gamma_col")
        beta_col = g.op("Unsqueeze", [beta, g.const("axes_1", [1], np.int64)], name=f"{s}/beta_col")
        w_factor = g.op("Mul", [gamma_col, w_s], name=f"{s}/w_factor")
        w_offset = g.op("Add", [g.op("Mul", [beta_col, w_s], name=f"{s}/bw_s"), w_f], name=f"{s}/w_offset")
        b_factor = g.op("Add", [gamma, g.op("Mul", [gamma, v_s], name=f"{s}/gv_s")], name=f"{s}/b_factor")
        b_f = g.op("Add", [beta, v_f], name=f"{s}/b_f")
        b_offset = g.op("Add", [b_f, g.op("Mul", [beta, v_s], name=f"{s}/bv_s")], name=f"{s}/b_offset")
        weights += [w_factor, w_offset]
        biases += [b_factor, b_offset]
        sizes += [ch, ch]
    w = g.op("Concat", weights, name="/film/weight", axis=0)
    b = g.op("Concat", biases, name="/film/bias", axis=0)
    y = g.op("Gemm", [c, w, b], name="/film/Gemm", transB=1)
    y = g.op("Reshape", [y, g.shape(0, sum(sizes), 1, 1)], name="/film/Reshape")
    outs = [f"/{key}.film/{part}" for key, _ in g.films for part in ("factor", "offset")]
    g.nodes.append(helper.make_node("Split", [y, g.const("split_films", sizes, np.int64)], outs, name="/film/Split", axis=1))
    nodes, g.nodes = g.nodes, main
    return nodes


def _attention(g: _Graph, x: str, key: str, channels: int, heads: int) -> str:
    d = channels // heads
    scope = "/" + key
    qkv = g.conv(g.group_norm(x, f"{key}.norm", channels, 1), f"{key}.qkv", bias=False)
    qkv = g.op("Reshape", [qkv, g.shape(0, 3 * heads, d, -1)], scope)  # (B, 3H, D, T)
    q, k, v = (f"{scope}/{n}" for n in "qkv")
    g.nodes.append(helper.make_node("Split", [qkv, g.const(f"split3_{heads}", [heads] * 3, np.int64)], [q, k, v], name=f"{scope}/Split", axis=1))
    q = g.op("Mul", [g.op("Softmax", [q], scope, axis=2), g.const(f"scale_{d}", d ** -0.5)], scope)
    k = g.op("Softmax", [k], scope, axis=3)
    context = g.op("MatMul", [k, g.op("Transpose", [v], scope, perm=[0, 1, 3, 2])], scope)  # (B, H, D, D)
    out = g.op("MatMul", [g.op("Transpose", [context], scope, perm=[0, 1, 3, 2]), q], scope)  # (B, H, D, T)
    out = g.conv(g.op("Reshape", [out, g.shape(0, channels, 1, -1)], scope), f"{key}.out")
    return g.op("Add", [x, out], scope)


def build(denoiser, opset: int = 17) -> onnx.ModelProto:
    """The graph of ``denoiser`` (a :class:`~emort.training.models.denoiser.Denoiser`) as
    described in the module docstring. Inputs ``x (batch, n_mels, frames)``, ``t (batch,)``,
    ``emotion (batch, E)``, ``emotion_mask (batch, 1)``, ``style (batch, S)``; output
    ``prediction (batch, n_mels, frames)``; ``frames`` a multiple of the config's stride."""
    cfg = denoiser.config
    state = {k: v.detach().cpu().numpy() for k, v in denoiser.state_dict().items()}
    g = _Graph(state)
    cd, chans = cfg.cond_dim, list(cfg.channels)

    # Conditioning (B, cond_dim): sinusoidal time embedding -> MLP, + emotion or the null embedding, + style.
    from emort.training.models.denoiser import timestep_frequencies

    freqs = timestep_frequencies(cd).numpy()[None]  # torch's values (numpy's float32 exp differs by an ulp)
    args = g.op("Mul", [g.op("Unsqueeze", ["t", g.const("axes_1", [1], np.int64)], "/cond"), g.const("freqs", freqs)], "/cond")
    temb = g.op("Concat", [g.op("Cos", [args], "/cond"), g.op("Sin", [args], "/cond")], "/cond", axis=-1)
    temb = g.linear(g.silu(g.linear(temb, "time_mlp.0"), "/time_mlp"), "time_mlp.2")
    emo = g.linear(g.silu(g.linear("emotion", "emotion_proj.0"), "/emotion_proj"), "emotion_proj.2")
    emo = g.op("Add", [g.op("Mul", ["emotion_mask", emo], "/cond"),
                       g.op("Mul", [g.op("Sub", [g.const("one", 1.0), "emotion_mask"], "/cond"), g.weight("null_emotion")], "/cond")], "/cond")
    c = g.op("Add", [g.op("Add", [temb, emo], "/cond"), g.linear("style", "style_proj")], "/cond")
    at = len(g.nodes)  # every block's FiLM goes here, once the blocks are known

    h = g.conv(g.op("Reshape", ["x", g.shape(0, cfg.n_mels, 1, -1)], "/inp"), "inp")
    skips = []
    cin = chans[0]
    for i, ch in enumerate(chans):
        for j in range(cfg.blocks_per_level):
            h = _res_block(g, h, c, f"down.{i}.{j}", cin, ch)
            cin = ch
        if i in cfg.attention_levels:
            h = _attention(g, h, f"down_attn.{i}", ch, cfg.heads)
        skips.append(h)
        if i < len(chans) - 1:
            h = g.conv(h, f"downsample.{i}", stride=2)
    h = _attention(g, _res_block(g, h, c, "mid", cin, cin), "mid_attn", cin, cfg.heads)
    for n, i in enumerate(reversed(range(len(chans)))):
        ch = chans[i]
        h = g.op("Concat", [h, skips.pop()], f"/up.{n}", axis=1)
        cat = cin + ch
        for j in range(cfg.blocks_per_level):
            h = _res_block(g, h, c, f"up.{n}.{j}", cat if j == 0 else ch, ch)
        cin = ch
        if i in cfg.attention_levels:
            h = _attention(g, h, f"up_attn.{n}", ch, cfg.heads)
        if i > 0:
            # nn.Upsample(scale_factor=2, mode="nearest"): output frame j reads input frame floor(j / 2).
            h = g.op("Resize", [h, "", g.const("scales_up", [1.0, 1.0, 1.0, 2.0])], f"/upsample.{n}.0", mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            h = g.conv(h, f"upsample.{n}.1")
            cin = chans[i - 1]
    h = g.conv(g.silu(g.group_norm(h, "out_norm", chans[0], 8), "/out"), "out")
    g.nodes[at:at] = _films(g, c)
    out = "prediction"
    g.nodes.append(helper.make_node("Reshape", [h, g.shape(0, cfg.n_mels, -1)], [out], name="/out/Reshape_prediction"))

    def vi(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    graph = helper.make_graph(
        g.nodes, "denoiser",
        [vi("x", ["batch", cfg.n_mels, "frames"]), vi("t", ["batch"]), vi("emotion", ["batch", cfg.emotion_dim]),
         vi("emotion_mask", ["batch", 1]), vi("style", ["batch", cfg.style_dim])],
        [vi(out, ["batch", cfg.n_mels, "frames"])], list(g.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="emort")
    model.ir_version = 8
    model.metadata_props.append(onnx.StringStringEntryProto(key="emort.rewrites", value=REWRITE_4D))
    onnx.checker.check_model(model)
    return model
