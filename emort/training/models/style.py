"""Utterance-style encoder (paper section 4.3): CNN + attention pooling over a mel."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from emort.runtime.settings import DictConvertible


@dataclass
class StyleConfig(DictConvertible):
    n_mels: int = 80
    channels: int = 128
    style_dim: int = 128


class StyleEncoder(nn.Module):
    """``forward(mel)``: normalised mel ``(batch, n_mels, frames)`` -> style ``(batch, style_dim)``."""

    def __init__(self, config: StyleConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.convs = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 5, padding=2), nn.GroupNorm(8, c), nn.SiLU(),
            nn.Conv1d(c, c, 5, padding=2), nn.GroupNorm(8, c), nn.SiLU(),
            nn.Conv1d(c, c, 5, padding=2), nn.GroupNorm(8, c), nn.SiLU(),
        )
        self.score = nn.Conv1d(c, 1, 1)  # attention logits per frame
        self.out = nn.Linear(2 * c, config.style_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.convs(mel)  # (B, C, T)
        w = torch.softmax(self.score(h), dim=-1)  # (B, 1, T)
        mean = (h * w).sum(-1)  # (B, C)
        std = torch.sqrt(((h - mean[..., None]) ** 2 * w).sum(-1) + 1e-5)
        return self.out(torch.cat([mean, std], dim=1))
