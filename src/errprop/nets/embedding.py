"""Sinusoidal embedding of the network's noise-level input (Vaswani et al. 2017; DDPM)."""

from __future__ import annotations

import math

import torch


def sinusoidal(c_noise: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(batch,) → (batch, dim) features [cos(c ω_j), sin(c ω_j)], ω_j = max_period^{-j/(dim/2)}."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], 1)
