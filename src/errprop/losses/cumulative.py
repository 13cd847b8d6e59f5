"""EP: the cumulative-error regularizer of Li & van der Schaar (ICLR 2024), METHODS §3.

As the released code runs it: each training step draws a head step h ~ U{1..T−1} and a length
ℓ ~ U{1..L}; the tail is τ = max(h − ℓ, 0) (errprop's 0-based index, so the tail is at least the
first noise level σ_0, never clean data). Half *a* of the batch is noised to h and taken h → τ by
the model's **own sampler steps** (the same step functions as :mod:`errprop.samplers`), with
gradient through every step (``backprop="full"``) or the last (``"last"``); half *b* is noised to
τ directly. ``R = MMD²(a, b)`` (biased, multi-bandwidth, bandwidth without gradient) measures how
far the model's own chain has drifted from the true marginal q(x_τ) — a cumulative error — and the
loss is ``base + λ R``. MMD is scale-invariant here (the bandwidth is the mean pairwise distance),
so comparing in x̂ = x_t/s or in x_t space gives the same R.

Under DDP each rank computes R over its own local half-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..errors import ErrpropError
from ..metrics.mmd import MULTIPLIERS, mmd2
from ..noise import Noise
from ..process import Process, VPProcess
from ..samplers import ddim_step, ddpm_step
from .simple import SimpleLoss


def _draw_int(noise: Noise, low: int, high: int) -> int:
    """One integer uniform on [low, high] from the batch's first stream (one draw per step)."""
    u = float(noise[:1].rand(1)[0, 0])
    return low + min(int(u * (high - low + 1)), high - low)


@dataclass
class CumulativeErrorLoss:
    """``base + λ MMD²(rollout of half a, forward-noised half b)``; call as ``loss(denoiser, x0, noise)``.

    Returns ``{"loss", "loss_simple", "loss_ep"}``. The base loss sees the whole batch.
    """

    process: Process
    base: SimpleLoss | None = None
    L: int = 5
    lam: float = 1.0
    sampler: str = "ancestral"
    backprop: str = "full"
    multipliers: Sequence[float] = field(default_factory=lambda: list(MULTIPLIERS))

    def __post_init__(self) -> None:
        if not isinstance(self.process, VPProcess):
            raise ErrpropError("loss.name 'ep' needs a discrete VP process (process.kind: vp)")
        if self.L < 1:
            raise ErrpropError(f"loss.ep.L must be ≥ 1, got {self.L}")
        if self.lam < 0:
            raise ErrpropError(f"loss.ep.lam must be ≥ 0, got {self.lam}")
        if self.sampler not in ("ancestral", "ddim"):
            raise ErrpropError(f"loss.ep.sampler: unknown {self.sampler!r}; choose 'ancestral' or 'ddim'")
        if self.backprop not in ("full", "last"):
            raise ErrpropError(f"loss.ep.backprop: unknown {self.backprop!r}; choose 'full' or 'last'")
        if not self.multipliers or any(m <= 0 for m in self.multipliers):
            raise ErrpropError(f"loss.ep.multipliers must be positive numbers, got {self.multipliers}")
        if self.base is None:
            self.base = SimpleLoss(self.process)

    def rollout(self, denoiser, x: torch.Tensor, h: int, tail: int, noise: Noise) -> torch.Tensor:
        """The model's own steps h → h−1 → … → tail from x at σ_h (gradient per ``backprop``)."""
        sig = self.process.sigmas
        for i in range(h, tail, -1):
            if self.backprop == "last" and i == tail + 1:
                x = x.detach()
            if self.sampler == "ancestral":
                x, _ = ddpm_step(denoiser, x, float(sig[i]), float(sig[i - 1]), noise)
            else:
                x, _ = ddim_step(denoiser, x, float(sig[i]), float(sig[i - 1]), noise)
        return x

    def __call__(self, denoiser, x0: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
        B = x0.shape[0]
        if B < 4:
            raise ErrpropError(f"loss 'ep' needs a batch of ≥ 4 (two half-batches of ≥ 2), got {B}")
        base = self.base(denoiser, x0, noise)
        h = _draw_int(noise, 1, self.process.T - 1)
        tail = max(h - _draw_int(noise, 1, self.L), 0)
        half = B // 2
        a, b = noise[:half], noise[half:2 * half]
        sig = self.process.sigmas
        x_a = x0[:half] + float(sig[h]) * a.randn(*x0.shape[1:]).to(x0.device)
        x_b = x0[half:2 * half] + float(sig[tail]) * b.randn(*x0.shape[1:]).to(x0.device)
        r = mmd2(self.rollout(denoiser, x_a, h, tail, a), x_b, multipliers=self.multipliers)
        return {"loss": base["loss"] + self.lam * r, "loss_simple": base["loss_simple"],
                "loss_ep": r.detach()}
