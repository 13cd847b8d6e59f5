"""Sliced Wasserstein distance between two equal-size sample sets.

``SW_p(x, y) = (E_θ W_p^p(θ·x, θ·y))^{1/p}`` with θ uniform on the unit sphere, estimated with
``n_projections`` random directions; each 1-D ``W_p`` between equal-size empirical measures is the
mean of ``|sorted(θ·x) − sorted(θ·y)|^p``. Samples are flattened to vectors.
"""

from __future__ import annotations

import torch

from ..errors import ErrpropError


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
    p: float = 2,
) -> torch.Tensor:
    """Monte-Carlo sliced p-Wasserstein distance between the empirical measures of x and y.

    Args:
        x: (n, ...) samples; flattened to (n, D).
        y: (n, ...) samples of the same count n and size D.
        n_projections: number of random directions θ.
        generator: source of the directions (drawn on its device, then moved to x's); the
            global RNG when ``None``. Pass one for reproducible values.
        p: the order p ≥ 1.

    Returns:
        A scalar tensor in x's units (differentiable w.r.t. x and y). For D = 1 it is the exact
        W_p; for a shift y = x + v it equals ``‖v‖ (E_θ |θ·v̂|^p)^{1/p}`` (``‖v‖/√D`` for p = 2),
        up to the Monte-Carlo error of the directions.
    """
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ErrpropError(
            "sliced_wasserstein: x and y must hold the same (non-zero) number of samples; got "
            f"{tuple(x.shape)} and {tuple(y.shape)} (subsample the larger set)"
        )
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ErrpropError(
            f"sliced_wasserstein: samples of different sizes ({x.shape[1]} vs {y.shape[1]} values)"
        )
    if n_projections < 1:
        raise ErrpropError(f"sliced_wasserstein: n_projections must be ≥ 1, got {n_projections}")
    if not p >= 1:
        raise ErrpropError(f"sliced_wasserstein: p must be ≥ 1, got {p}")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    device = generator.device if generator is not None else x.device
    theta = torch.randn(x.shape[1], n_projections, generator=generator, device=device, dtype=dtype)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
    px = torch.sort(x.to(dtype) @ theta, dim=0).values
    py = torch.sort(y.to(dtype) @ theta, dim=0).values
    return (px - py).abs().pow(p).mean().pow(1.0 / p)
