"""SA-K: the Sequence-Aware loss of Nguyen et al. (AAAI 2024), METHODS §2.

``L = L_simple + λ L_sa`` with ``L_sa = E ‖(1/K) Σ_{s ∈ window(t)} τ_s (ε_θ(x_s, s) − ε_s)‖²``: the
errors of K consecutive steps are summed *before* the norm, so errors that cancel along the chain
are not penalised and errors that add up are — the first-order estimation gap of Theorem 1.

Defaults follow the released code (``tau="none"``, ``window_noise="independent"``,
``direction="down"``, ``t_sampling="antithetic"``, ``simple_on="anchor"``): the window goes down
from the anchor t; steps below the first are masked out but the sum is still divided by K; each
x_s has its own noise; L_simple uses the anchor alone. The K evaluations are one batched call of
size K·B. Indices are errprop's ``t = 0..T−1`` (paper step t + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import eps_from_denoised
from ..errors import ErrpropError
from ..noise import Noise
from ..process import Process, VPProcess
from .simple import SimpleLoss

TAUS = ("paper", "relative", "none")


def tau(process: VPProcess) -> torch.Tensor:
    """τ_i of Theorem 1 (float64, indexed by errprop's t = i − 1; τ = 0 for paper step 1).

    ``τ_i = [√ᾱ_{i−1}(1 − ᾱ_1)] / [√α_1 (1 − ᾱ_{i−1})] · γ_{1,i} · √(1 − ᾱ_i)/√ᾱ_i`` for paper steps
    i = 2..T, with ``γ_{1,i} = √ᾱ_{i−1} β_i / (1 − ᾱ_i)``.
    """
    abar, beta = process.alphas_cumprod, process.betas
    a_prev, a_i, b_i = abar[:-1], abar[1:], beta[1:]  # paper i = 2..T ↔ our index 1..T−1
    alpha_1 = 1 - beta[0]
    gamma1 = a_prev.sqrt() * b_i / (1 - a_i)
    t = a_prev.sqrt() * (1 - abar[0]) / (alpha_1.sqrt() * (1 - a_prev)) * gamma1 * ((1 - a_i) / a_i).sqrt()
    return torch.cat([t.new_zeros(1), t])


def window_mean(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(1/K) Σ_j w_j err_j for err (K, B, ...) and weights (K, B) (masked steps have w = 0)."""
    w = weight.reshape(*weight.shape, *([1] * (err.ndim - 2)))
    return (w * err).sum(0) / err.shape[0]


@dataclass
class SequenceAwareLoss:
    """SA-K on a discrete VP process; call as ``loss(denoiser, x0, noise)``.

    Returns ``{"loss", "loss_simple", "loss_sa"}`` (scalars; squared norms summed over data
    dimensions, mean over the batch). Every draw comes from the per-sample streams ``noise``:
    first the anchor's t and ε exactly as :class:`SimpleLoss` draws them, then the window's noise.
    Antithetic t pairs sample i with sample i + B/2 of the same batch.
    """

    process: Process
    K: int = 2
    lam: float = 1.0
    tau: str = "none"
    window_noise: str = "independent"
    direction: str = "down"
    t_sampling: str = "antithetic"
    simple_on: str = "anchor"

    def __post_init__(self) -> None:
        if not isinstance(self.process, VPProcess):
            raise ErrpropError("loss.name 'sa' needs a discrete VP process (process.kind: vp)")
        checks = {"K": self.K >= 1, "lam": self.lam >= 0, "tau": self.tau in TAUS,
                  "window_noise": self.window_noise in ("independent", "chain"),
                  "direction": self.direction in ("down", "up"),
                  "t_sampling": self.t_sampling in ("uniform", "antithetic"),
                  "simple_on": self.simple_on in ("anchor", "window")}
        for name, ok in checks.items():
            if not ok:
                raise ErrpropError(f"loss.sa.{name}: invalid value {getattr(self, name)!r}")
        self._base = SimpleLoss(self.process, weighting="eps", sigma_sampling=self.t_sampling)
        self._tau = tau(self.process)

    def window(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step indices (K, B) of each anchor's window and their validity mask (0 ≤ s ≤ T−1)."""
        j = torch.arange(self.K, device=t.device)[:, None]
        s = t[None] - j if self.direction == "down" else t[None] + j
        valid = (s >= 0) & (s <= self.process.T - 1)
        return s.clamp(0, self.process.T - 1), valid

    def weights(self, s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """τ weights (K, B) of the window's steps (``relative``: divided by the anchor's τ)."""
        if self.tau == "none":
            return valid.to(torch.float32)
        w = self._tau.to(s.device)[s] * valid
        if self.tau == "relative":
            anchor = w[0]
            w = torch.where(anchor > 0, w / anchor.clamp_min(1e-300), torch.zeros_like(w))
        return w.float()

    def forward_samples(self, x0: torch.Tensor, s: torch.Tensor, n0: torch.Tensor, noise: Noise):
        """x̂_s and ε_s (K, B, ...) of the window: independent noise per step, or one forward chain."""
        sig = self.process.sigmas.to(x0.device)[s].to(x0.dtype)  # (K, B)
        b = sig.reshape(*sig.shape, *([1] * (x0.ndim - 1)))
        if self.window_noise == "independent":
            eps = torch.stack([n0] + [noise.randn(*x0.shape[1:]).to(x0.device) for _ in range(self.K - 1)])
            return x0[None] + b * eps, eps
        # chain: in x̂ = x0 + σ n the VP chain is Brownian, x̂_{s+1} = x̂_s + √(σ²_{s+1} − σ²_s) z.
        order = sig.argsort(0)  # lowest noise first, per sample
        sig_sorted = sig.gather(0, order)
        b_sorted = sig_sorted.reshape(*sig.shape, *([1] * (x0.ndim - 1)))
        x = [x0 + b_sorted[0] * n0]
        for j in range(1, self.K):
            step = (b_sorted[j] ** 2 - b_sorted[j - 1] ** 2).clamp_min(0).sqrt()
            x.append(x[-1] + step * noise.randn(*x0.shape[1:]).to(x0.device))
        x_sorted = torch.stack(x)
        inverse = order.argsort(0).reshape(*order.shape, *([1] * (x0.ndim - 1))).expand_as(x_sorted)
        xs = x_sorted.gather(0, inverse)
        return xs, (xs - x0[None]) / b

    def __call__(self, denoiser, x0: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
        sigma_anchor = self._base.sample_sigma(noise).to(x0.device)
        t = self.process.t(sigma_anchor).round().long()
        n0 = noise.randn(*x0.shape[1:]).to(x0.device)
        s, valid = self.window(t)
        xs, eps = self.forward_samples(x0, s, n0, noise)
        K, B = s.shape
        sig = self.process.sigmas.to(x0.device)[s].to(x0.dtype).reshape(K * B)
        flat = xs.reshape(K * B, *x0.shape[1:])
        eps_hat = eps_from_denoised(flat, denoiser(flat, sig), sig).reshape(xs.shape)  # one call
        err = eps_hat - eps
        per_step = err.flatten(2).pow(2).sum(-1)  # (K, B)
        if self.simple_on == "anchor":
            l_simple = per_step[0].mean()
        else:
            l_simple = (per_step * valid).sum() / valid.sum()
        l_sa = window_mean(err, self.weights(s, valid)).flatten(1).pow(2).sum(1).mean()
        total = l_simple + self.lam * l_sa
        return {"loss": total, "loss_simple": l_simple.detach(), "loss_sa": l_sa.detach()}
