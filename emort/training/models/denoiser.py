"""Emotion-conditioned mel denoiser (paper section 4.3, Table 4).

A 1-D U-Net over time with mel bands as channels: ResNet blocks whose
GroupNorm output is modulated (FiLM) by one conditioning vector = sinusoidal
time embedding + emotion embedding (an SER embedding, or a learned null
embedding for classifier-free guidance) + utterance-style embedding. Linear
attention at the two coarsest resolutions, where it pays. Fully convolutional
in time: any ``frames`` divisible by ``stride`` (= 2 ** (levels - 1)).
1-D convolutions keep the work in large GEMMs, which the CPU runs near peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from emort.runtime.settings import DictConvertible


@dataclass
class DenoiserConfig(DictConvertible):
    n_mels: int = 80
    channels: list[int] = field(default_factory=lambda: [96, 144, 192])
    blocks_per_level: int = 2
    attention_levels: list[int] = field(default_factory=lambda: [2])  # indices into channels
    emotion_dim: int = 128
    style_dim: int = 128
    cond_dim: int = 256
    heads: int = 4

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channels) - 1)


def timestep_frequencies(dim: int, device=None) -> torch.Tensor:
    """The ``dim // 2`` angular frequencies of :func:`timestep_embedding`, float32 (also written
    into the exported graph: emort.export.denoiser_graph)."""
    half = dim // 2
    return torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=device) / half)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps ``(batch,)`` -> ``(batch, dim)``."""
    freqs = timestep_frequencies(dim, t.device)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(c)[..., None].chunk(2, dim=1)  # (B, C, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(nn.functional.silu(h))
        return h + self.skip(x)


class LinearAttention1d(nn.Module):
    """Linear attention (Shen et al. 2021): softmax over features for q, over time for k; O(T)."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(1, dim)
        self.qkv = nn.Conv1d(dim, 3 * dim, 1, bias=False)
        self.out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, t).unbind(1)  # (B, H, D, T)
        q = q.softmax(dim=-2) * (c // self.heads) ** -0.5
        k = k.softmax(dim=-1)
        context = torch.matmul(k, v.transpose(-1, -2))  # (B, H, D, D)
        out = torch.matmul(context.transpose(-1, -2), q)  # (B, H, D, T)
        return x + self.out(out.reshape(b, c, t))


class Denoiser(nn.Module):
    """``forward(x, t, emotion, emotion_mask, style)`` -> prediction ``(batch, n_mels, frames)``.

    x: noisy normalised mel ``(B, n_mels, T)``; t: timesteps ``(B,)`` float;
    emotion: ``(B, emotion_dim)``; emotion_mask: ``(B, 1)``, 1 = use emotion,
    0 = the learned null embedding (classifier-free guidance); style: ``(B, style_dim)``.
    """

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        cd = config.cond_dim
        self.time_mlp = nn.Sequential(nn.Linear(cd, cd), nn.SiLU(), nn.Linear(cd, cd))
        self.emotion_proj = nn.Sequential(nn.Linear(config.emotion_dim, cd), nn.SiLU(), nn.Linear(cd, cd))
        self.null_emotion = nn.Parameter(torch.zeros(1, cd))
        self.style_proj = nn.Linear(config.style_dim, cd)
        chans = config.channels
        self.inp = nn.Conv1d(config.n_mels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = []
        cin = chans[0]
        for i, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(ResBlock1d(cin, ch, cd))
                cin = ch
            self.down.append(blocks)
            self.down_attn.append(LinearAttention1d(ch, config.heads) if i in config.attention_levels else nn.Identity())
            skips.append(ch)
            self.downsample.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
        self.mid = ResBlock1d(cin, cin, cd)
        self.mid_attn = LinearAttention1d(cin, config.heads)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            ch = chans[i]
            blocks = nn.ModuleList([ResBlock1d(cin + skips[i], ch, cd)])
            for _ in range(config.blocks_per_level - 1):
                blocks.append(ResBlock1d(ch, ch, cd))
            cin = ch
            self.up.append(blocks)
            self.up_attn.append(LinearAttention1d(ch, config.heads) if i in config.attention_levels else nn.Identity())
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv1d(ch, chans[i - 1], 3, padding=1)) if i > 0 else nn.Identity())
            if i > 0:
                cin = chans[i - 1]
        self.out_norm = nn.GroupNorm(8, chans[0])
        self.out = nn.Conv1d(chans[0], config.n_mels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def condition(self, t: torch.Tensor, emotion: torch.Tensor, emotion_mask: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        e = emotion_mask * self.emotion_proj(emotion) + (1 - emotion_mask) * self.null_emotion
        return self.time_mlp(timestep_embedding(t, self.config.cond_dim)) + e + self.style_proj(style)

    def forward(self, x: torch.Tensor, t: torch.Tensor, emotion: torch.Tensor, emotion_mask: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        c = self.condition(t, emotion, emotion_mask, style)
        h = self.inp(x)
        hs = []
        for blocks, attn, down in zip(self.down, self.down_attn, self.downsample):
            for blk in blocks:
                h = blk(h, c)
            h = attn(h)
            hs.append(h)
            h = down(h)
        h = self.mid_attn(self.mid(h, c))
        for blocks, attn, up in zip(self.up, self.up_attn, self.upsample):
            h = torch.cat([h, hs.pop()], dim=1)
            for blk in blocks:
                h = blk(h, c)
            h = up(attn(h))
        return self.out(nn.functional.silu(self.out_norm(h)))


def count_flops_per_frame(config: DenoiserConfig) -> float:
    """Multiply-add FLOPs (x2) of one forward per input frame (convolutions and attention only)."""
    flops = 0.0
    chans = config.channels
    cin = chans[0]
    flops += 2 * 3 * config.n_mels * chans[0]
    skips = []
    for i, ch in enumerate(chans):
        scale = 1 / 2**i
        for _ in range(config.blocks_per_level):
            flops += scale * 2 * (3 * cin * ch + 3 * ch * ch + (cin * ch if cin != ch else 0))
            cin = ch
        if i in config.attention_levels:
            flops += scale * 2 * (3 * ch * ch + ch * ch + 2 * ch * ch / config.heads)
        skips.append(ch)
        if i < len(chans) - 1:
            flops += scale / 2 * 2 * 3 * ch * ch
    scale = 1 / 2 ** (len(chans) - 1)
    flops += scale * 2 * (6 * cin * cin) + scale * 2 * (4 * cin * cin + 2 * cin * cin / config.heads)
    for i in reversed(range(len(chans))):
        ch = chans[i]
        scale = 1 / 2**i
        flops += scale * 2 * (3 * (cin + skips[i]) * ch + 3 * ch * ch + (cin + skips[i]) * ch)
        for _ in range(config.blocks_per_level - 1):
            flops += scale * 2 * 6 * ch * ch
        if i in config.attention_levels:
            flops += scale * 2 * (4 * ch * ch + 2 * ch * ch / config.heads)
        if i > 0:
            flops += (2 * scale) * 2 * 3 * ch * chans[i - 1]
            cin = chans[i - 1]
    flops += 2 * 3 * chans[0] * config.n_mels
    return flops
