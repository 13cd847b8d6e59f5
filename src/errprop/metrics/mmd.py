"""Maximum mean discrepancy with a multi-bandwidth Gaussian kernel (EP's regularizer, docs/methods.md#mmd).

Samples are flattened to vectors. The kernel is ``k(a, b) = Σ_m exp(−‖a − b‖² / (β m))`` over the
bandwidth multipliers m (default 2^{−2..2}); the base bandwidth β is the mean off-diagonal squared
distance over all samples of x and y together, computed without gradient (as EP's released code).
Everything else is differentiable, so :func:`mmd2` serves both as a metric and as a training
regularizer. Memory is O((n + m)²).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ErrpropError

MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _kernel_blocks(
    x: torch.Tensor,
    y: torch.Tensor,
    multipliers: Sequence[float],
    bandwidth: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel matrices K_xx (n, n), K_xy (n, m), K_yy (m, m) on flattened samples."""
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] < 1 or y.shape[0] < 1:
        raise ErrpropError(f"mmd2: x and y need a sample axis; got {tuple(x.shape)}, {y.shape}")
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ErrpropError(
            f"mmd2: x and y hold samples of different sizes ({x.shape[1]} vs {y.shape[1]} values)"
        )
    if not multipliers or any(m <= 0 for m in multipliers):
        raise ErrpropError(f"mmd2: multipliers must be positive numbers, got {multipliers}")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    z = torch.cat([x, y]).to(dtype)
    sq = (z * z).sum(dim=1)
    n_all = z.shape[0]
    off_diagonal = ~torch.eye(n_all, dtype=torch.bool, device=z.device)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min(0.0) * off_diagonal
    if bandwidth is None:
        if n_all < 2:
            raise ErrpropError("mmd2: need at least two samples in x and y together")
        with torch.no_grad():
            beta = d2.sum() / (n_all * (n_all - 1))
            beta = beta.clamp_min(torch.finfo(dtype).tiny)
    else:
        if not bandwidth > 0:
            raise ErrpropError(f"mmd2: bandwidth must be positive, got {bandwidth}")
        beta = torch.tensor(float(bandwidth), dtype=dtype, device=z.device)
    k = sum(torch.exp(-d2 / (beta * m)) for m in multipliers)
    n = x.shape[0]
    return k[:n, :n], k[:n, n:], k[n:, n:]


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    multipliers: Sequence[float] = MULTIPLIERS,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """Biased MMD²: ``mean K_xx − 2 mean K_xy + mean K_yy`` (EP's regularizer R).

    Args:
        x: (n, ...) samples; flattened to (n, D).
        y: (m, ...) samples of the same size D.
        multipliers: bandwidth multipliers m of the kernel sum.
        bandwidth: the base bandwidth β; default: the mean off-diagonal squared distance over
            the n + m samples (no gradient flows through it).

    Returns:
        A scalar tensor (≥ 0 up to rounding), differentiable w.r.t. x and y.
    """
    kxx, kxy, kyy = _kernel_blocks(x, y, multipliers, bandwidth)
    return kxx.mean() - 2.0 * kxy.mean() + kyy.mean()


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    multipliers: Sequence[float] = MULTIPLIERS,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """Unbiased MMD² (U-statistic: the diagonals of K_xx and K_yy left out); may be negative.

    Same arguments as :func:`mmd2`; needs at least two samples in each of x and y.
    """
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ErrpropError(f"mmd2_unbiased: need ≥ 2 samples in x and in y, got {n} and {m}")
    kxx, kxy, kyy = _kernel_blocks(x, y, multipliers, bandwidth)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sxx - 2.0 * kxy.mean() + syy
