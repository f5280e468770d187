"""ResNet over log-mel images for speech-emotion recognition (paper section 4.2).

Written in-house (no torchvision). ``resnet50`` is the paper's configuration;
the small ones train on 2 CPU cores in minutes. Input ``(batch, 1, n_mels,
frames)`` with any ``frames``; global pooling over frequency then mean+std over
time gives the *emotion embedding*; a linear head gives the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from emort.runtime.settings import DictConvertible


@dataclass
class SERConfig(DictConvertible):
    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50)
    layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    width: int = 16  # channels of the first stage; doubles per stage
    embedding_dim: int = 128
    num_classes: int = 6
    dropout: float = 0.3
    # 2 halves the map before the first stage (as torchvision's stem does): ~8x cheaper per
    # step on 2 CPU cores, so the same minutes buy far more epochs. 1 = checkpoints from 0.1.0.
    stem_stride: int = 1
    # Width of the utterance-statistics branch (0 = off): attentive per-band mean / std / delta
    # RMS of the input log-mel, beside the CNN's pooled map. ``n_mels`` sizes its attention.
    utt_stats: int = 0
    n_mels: int = 80


#: Named configurations. ``resnet50`` = the paper's model (Table 3).
SER_PRESETS: dict[str, SERConfig] = {
    "tiny": SERConfig(layers=[1, 1, 1, 1], width=8, embedding_dim=32, stem_stride=2),
    "small": SERConfig(layers=[1, 1, 1, 1], width=16, embedding_dim=128, stem_stride=2),
    # `small` + the utterance-statistics branch (the statistics a feature SVM wins with).
    "small-stats": SERConfig(layers=[1, 1, 1, 1], width=16, embedding_dim=128, stem_stride=2, utt_stats=64),
    "resnet18": SERConfig(layers=[2, 2, 2, 2], width=32, embedding_dim=256, stem_stride=2),
    "resnet34": SERConfig(layers=[3, 4, 6, 3], width=32, embedding_dim=256, stem_stride=2),
    "resnet50": SERConfig(block="bottleneck", layers=[3, 4, 6, 3], width=64, embedding_dim=512, stem_stride=2),
    # emort 0.1.0's `small` (full-resolution stem): the SER the shipped diffusion model first trained with.
    "small-v0.1": SERConfig(layers=[1, 1, 1, 1], width=16, embedding_dim=128, stem_stride=1),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, cmid: int, stride: int):
        super().__init__()
        cout = cmid * 4
        self.conv1 = nn.Conv2d(cin, cmid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cmid)
        self.conv2 = nn.Conv2d(cmid, cmid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cmid)
        self.conv3 = nn.Conv2d(cmid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.short(x))


class UtteranceStats(nn.Module):
    """Attentive statistics of the (normalised) log-mel itself: per band, the weighted mean, the
    weighted std and the RMS of the frame-to-frame delta, with one learned weight per frame
    (softmax over time, so silence and padding can be ignored). The CNN pools frequency away
    before its time statistics; this keeps the spectral envelope and its dynamics per band."""

    def __init__(self, n_mels: int, hidden: int):
        super().__init__()
        self.att = nn.Conv1d(n_mels, 1, 1)
        self.norm = nn.BatchNorm1d(3 * n_mels)
        self.proj = nn.Linear(3 * n_mels, hidden)

    def statistics(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` -> ``(B, 3F)``: weighted mean, std and delta RMS per band."""
        x = mel[:, 0]  # (B, F, T)
        w = torch.softmax(self.att(x), dim=-1)  # (B, 1, T)
        mu = (x * w).sum(-1)
        sd = ((x - mu[..., None]) ** 2 * w).sum(-1).clamp_min(1e-6).sqrt()
        dx = x[..., 1:] - x[..., :-1]
        wd = w[..., 1:] / w[..., 1:].sum(-1, keepdim=True).clamp_min(1e-6)  # weight of the later frame
        drms = (dx**2 * wd).sum(-1).clamp_min(1e-6).sqrt()
        return torch.cat([mu, sd, drms], dim=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(self.norm(self.statistics(mel))))


class ResNetSER(nn.Module):
    """``forward(mel)``: mel ``(batch, 1, n_mels, frames)`` -> (logits ``(batch, classes)``,
    embedding ``(batch, embedding_dim)``)."""

    def __init__(self, config: SERConfig):
        super().__init__()
        self.config = config
        block = BasicBlock if config.block == "basic" else Bottleneck
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, config.stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages = []
        cin = w
        for i, n in enumerate(config.layers):
            cmid = w * 2**i
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                stages.append(block(cin, cmid, stride))
                cin = cmid * block.expansion
        self.stages = nn.Sequential(*stages)
        # mean + std over time of the frequency-pooled map (statistics pooling).
        self.utt = UtteranceStats(config.n_mels, config.utt_stats) if config.utt_stats else None
        self.proj = nn.Linear(2 * cin + config.utt_stats, config.embedding_dim)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.embedding_dim, config.num_classes)

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(mel))  # (B, C, F', T')
        h = h.mean(dim=2)  # (B, C, T')
        stats = torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=1)  # (B, 2C)
        if self.utt is not None:
            stats = torch.cat([stats, self.utt(mel)], dim=1)
        return torch.relu(self.proj(stats))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(mel)
        return self.head(self.drop(emb)), emb
