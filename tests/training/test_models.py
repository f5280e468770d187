"""emort.training.models: SER presets, denoiser shapes / FLOP model / CFG null embedding, style encoder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model tests need the [train] extra")

from emort.training.models.denoiser import (  # noqa: E402
    Denoiser,
    DenoiserConfig,
    count_flops_per_frame,
)
from emort.training.models.ser import SER_PRESETS, Bottleneck, ResNetSER  # noqa: E402
from emort.training.models.style import StyleConfig, StyleEncoder  # noqa: E402


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _cond(cfg: DenoiserConfig, b: int, gen: torch.Generator):
    return (
        torch.full((b,), 300.0),
        torch.randn(b, cfg.emotion_dim, generator=gen),
        torch.ones(b, 1),
        torch.randn(b, cfg.style_dim, generator=gen),
    )


# --- SER -------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "small", "small-stats", "small-v0.1"])
@pytest.mark.parametrize("frames", [50, 173])
def test_ser_preset_forward_variable_length(preset: str, frames: int):
    torch.manual_seed(0)
    cfg = SER_PRESETS[preset]
    model = ResNetSER(cfg).eval()
    with torch.no_grad():
        logits, emb = model(torch.randn(2, 1, 80, frames))
    assert logits.shape == (2, 6)
    assert emb.shape == (2, cfg.embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()
    assert (emb >= 0).all()  # ReLU'd projection


def test_ser_config_from_0_1_checkpoints_keeps_full_resolution_stem():
    from emort.training.models.ser import SERConfig

    old = {k: v for k, v in SER_PRESETS["small"].to_dict().items() if k != "stem_stride"}  # 0.1.0 ser.json
    assert SERConfig.from_dict(old).stem_stride == 1 == SER_PRESETS["small-v0.1"].stem_stride
    assert ResNetSER(SERConfig.from_dict(old)).stem[0].stride == (1, 1)
    assert ResNetSER(SER_PRESETS["small"]).stem[0].stride == (2, 2)


def test_ser_train_mode_batch_of_two_backprops():
    model = ResNetSER(SER_PRESETS["tiny"]).train()
    logits, _ = model(torch.randn(2, 1, 80, 64))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_utterance_stats_uniform_attention_gives_exact_band_statistics():
    from emort.training.models.ser import UtteranceStats

    utt = UtteranceStats(n_mels=5, hidden=4)
    torch.nn.init.zeros_(utt.att.weight)
    torch.nn.init.zeros_(utt.att.bias)  # softmax of zeros: every frame weighs the same
    x = torch.randn(3, 1, 5, 37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    utt = utt.double()
    got = utt.statistics(x)
    m = x[:, 0]
    want = torch.cat([m.mean(-1), m.std(-1, unbiased=False), m.diff(dim=-1).pow(2).mean(-1).sqrt()], dim=1)
    torch.testing.assert_close(got, want)


def test_utterance_stats_attention_can_ignore_padding():
    """A frame weight driven by the level of the frame lets the statistics skip silent padding."""
    from emort.training.models.ser import UtteranceStats

    utt = UtteranceStats(n_mels=4, hidden=4).double()
    with torch.no_grad():
        utt.att.weight.fill_(1.0)  # logit = sum over bands: padding at -3 gets ~e^-16 the weight of speech
        utt.att.bias.zero_()
    speech = 1.0 + 0.1 * torch.randn(1, 1, 4, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    padded = torch.cat([speech, torch.full((1, 1, 4, 50), -3.0, dtype=torch.float64)], dim=-1)
    mu_sd = utt.statistics(padded)[:, :8]
    uniform = torch.cat([speech[:, 0].mean(-1), speech[:, 0].std(-1, unbiased=False)], dim=1)
    # Not exactly uniform over the speech frames (the weights follow the level) but close, and far
    # from the statistics with the padding counted in.
    assert (mu_sd - uniform).abs().max() < 0.05
    with torch.no_grad():
        utt.att.weight.zero_()  # uniform weights: the padding is counted and drags the mean to ~-1.5
    assert (utt.statistics(padded)[:, :4] - speech[:, 0].mean(-1)).abs().min() > 2.0


def test_small_stats_wires_the_branch_into_the_embedding():
    cfg = SER_PRESETS["small-stats"]
    model = ResNetSER(cfg).train()
    assert model.proj.in_features == 2 * 16 * 8 + cfg.utt_stats
    logits, _ = model(torch.randn(2, 1, 80, 64))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert model.utt.att.weight.grad.abs().sum() > 0 and model.utt.proj.weight.grad.abs().sum() > 0
    assert ResNetSER(SER_PRESETS["small"]).utt is None  # earlier checkpoints keep their shapes


def test_small_stats_exports_to_onnx_with_any_length(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX parity needs the [export] extra")
    from emort.export.onnx import _export, parity

    torch.manual_seed(0)
    model = ResNetSER(SER_PRESETS["small-stats"]).eval()
    x = torch.randn(1, 1, 80, 120)
    io = (["mel"], ["logits", "embedding"], {"mel": {0: "batch", 3: "frames"}, "logits": {0: "batch"}, "embedding": {0: "batch"}})
    _export(model, (x,), tmp_path / "ser.onnx", *io)
    rng = np.random.default_rng(0)
    for frames in (40, 120, 333):
        assert parity(model, tmp_path / "ser.onnx", {"mel": rng.standard_normal((2, 1, 80, frames)).astype(np.float32)},
                      ["logits", "embedding"]) < 1e-3


def test_resnet50_preset_is_bottleneck():
    cfg = SER_PRESETS["resnet50"]
    assert cfg.block == "bottleneck" and cfg.layers == [3, 4, 6, 3]
    model = ResNetSER(cfg)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    assert _n_params(model) > 20_000_000
    assert model.proj.in_features == 2 * 64 * 8 * 4  # last stage 512 mid channels x expansion 4
    assert model.head.out_features == 6


def test_ser_presets_grow():
    sizes = [_n_params(ResNetSER(SER_PRESETS[p])) for p in ("tiny", "small", "resnet18", "resnet34")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


# --- denoiser --------------------------------------------------------------------------------


def _small_denoiser(**kw) -> tuple[Denoiser, DenoiserConfig]:
    cfg = DenoiserConfig(channels=[16, 32, 48], blocks_per_level=1, attention_levels=[2], emotion_dim=32, style_dim=24, cond_dim=32, **kw)
    torch.manual_seed(0)
    model = Denoiser(cfg).eval()
    # The output conv (and each block's conv2) starts at zero; randomise so outputs depend on inputs.
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0 and p.ndim > 0:
                p.normal_(0, 0.05)
    return model, cfg


@pytest.mark.parametrize("frames", [16, 48, 96])
def test_denoiser_fully_convolutional_in_time(frames: int):
    model, cfg = _small_denoiser()
    assert cfg.stride == 4 and frames % cfg.stride == 0
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg.n_mels, frames, generator=gen)
    with torch.no_grad():
        y = model(x, *_cond(cfg, 2, gen))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_denoiser_default_zero_init_output():
    cfg = DenoiserConfig()
    model = Denoiser(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        y = model(torch.randn(1, 80, 32, generator=gen), *_cond(cfg, 1, gen))
    assert y.shape == (1, 80, 32) and torch.count_nonzero(y) == 0


def test_count_flops_per_frame_matches_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    cfg = DenoiserConfig()
    model = Denoiser(cfg).eval()
    frames = 64
    gen = torch.Generator().manual_seed(0)
    args = (torch.randn(1, cfg.n_mels, frames, generator=gen), *_cond(cfg, 1, gen))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(*args)
    measured = fc.get_total_flops() / frames
    predicted = count_flops_per_frame(cfg)
    assert predicted == pytest.approx(measured, rel=0.10), (predicted, measured)


def test_count_flops_per_frame_scales_with_width():
    small = count_flops_per_frame(DenoiserConfig(channels=[16, 32], blocks_per_level=1, attention_levels=[1]))
    big = count_flops_per_frame(DenoiserConfig(channels=[32, 64], blocks_per_level=1, attention_levels=[1]))
    assert 2.0 < big / small < 4.5  # mostly quadratic in width, plus width-linear in/out convs


def test_emotion_mask_zero_uses_null_embedding():
    model, cfg = _small_denoiser()
    with torch.no_grad():
        model.null_emotion.normal_()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, cfg.n_mels, 32, generator=gen)
    t, e1, _, style = _cond(cfg, 1, gen)
    e2 = torch.randn(1, cfg.emotion_dim, generator=gen) * 3
    with torch.no_grad():
        off1 = model(x, t, e1, torch.zeros(1, 1), style)
        off2 = model(x, t, e2, torch.zeros(1, 1), style)
        on1 = model(x, t, e1, torch.ones(1, 1), style)
        on2 = model(x, t, e2, torch.ones(1, 1), style)
    torch.testing.assert_close(off1, off2)
    assert (on1 - on2).abs().max() > 1e-4
    assert (on1 - off1).abs().max() > 1e-4
    # Per-row masks inside one batch: the masked row matches its single-row result.
    with torch.no_grad():
        mixed = model(x.repeat(2, 1, 1), t.repeat(2), torch.cat([e2, e2]), torch.tensor([[0.0], [1.0]]), style.repeat(2, 1))
    torch.testing.assert_close(mixed[:1], off1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed[1:], on2, atol=1e-5, rtol=1e-4)


# --- style encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [8, 40, 200])
def test_style_encoder_any_length(frames: int):
    torch.manual_seed(0)
    cfg = StyleConfig(channels=32, style_dim=24)
    enc = StyleEncoder(cfg).eval()
    with torch.no_grad():
        s = enc(torch.randn(3, cfg.n_mels, frames))
    assert s.shape == (3, 24)
    assert torch.isfinite(s).all()


def test_style_encoder_length_invariant_for_repeated_content():
    """Attention pooling is a weighted mean: tiling a clip in time barely moves the style vector."""
    torch.manual_seed(0)
    enc = StyleEncoder(StyleConfig(channels=32, style_dim=24)).eval()
    x = torch.randn(1, 80, 60)
    with torch.no_grad():
        a = enc(x)
        b = enc(x.repeat(1, 1, 4))
    assert b.shape == a.shape
    # Only the convolution borders differ between the two.
    assert (a - b).norm() / a.norm() < 0.1


def test_ema_update_is_the_per_tensor_average():
    """0.32 updates the EMA with multi-tensor kernels: the same arithmetic as 0.31's loop, bit for bit."""
    import copy

    from emort.training.diffusion import EMA, DiffusionModel

    torch.manual_seed(0)
    model = DiffusionModel(DenoiserConfig(n_mels=80, channels=[16, 32], blocks_per_level=1, emotion_dim=8), StyleConfig(n_mels=80))
    ema = EMA(model, 0.999)
    ref = copy.deepcopy(ema.shadow)
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        ema.update(model, step)
        d = min(0.999, (1 + step) / (10 + step))
        for s, p in zip(ref.state_dict().values(), model.state_dict().values()):
            s.mul_(d).add_(p, alpha=1 - d) if s.dtype.is_floating_point else s.copy_(p)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), ema.shadow.state_dict().values()))
    assert not torch.equal(next(iter(ref.state_dict().values())), next(iter(model.state_dict().values())))
