"""A time-conditioned residual MLP for d-dimensional data (knows nothing of diffusion)."""

from __future__ import annotations

import torch
from torch import nn

from .embedding import sinusoidal


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = nn.functional.silu(self.fc1(self.norm(h)) + self.emb(emb))
        return h + self.fc2(self.drop(r))


class MLP(nn.Module):
    """``F(x, c_noise)`` for x of shape (batch, dim): residual blocks with a noise embedding.

    Args:
        dim: data dimension.
        width: hidden width.
        depth: number of residual blocks.
        emb_dim: size of the sinusoidal embedding of ``c_noise``.
        dropout: dropout inside each block.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 3, emb_dim: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.emb = nn.Sequential(nn.Linear(emb_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width, width, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.emb(sinusoidal(c_noise, self.emb_dim))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
