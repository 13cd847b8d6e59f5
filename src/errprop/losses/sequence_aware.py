"""SA-K: the Sequence-Aware loss of Nguyen et al. (AAAI 2024), docs/methods.md#sequence-aware-loss.

``L = L_simple + λ L_sa`` with ``L_sa = E ‖(1/K) Σ_{s ∈ window(t)} τ_s (ε_θ(x_s, s) − ε_s)‖²``: the
errors of K consecutive steps are summed *before* the norm, so errors that cancel along the chain
are not penalised and errors that add up are — the first-order estimation gap of Theorem 1.

Defaults follow the released code (``tau="none"``, ``window_noise="independent"``,
``direction="down"``, ``t_sampling="antithetic"``, ``simple_on="anchor"``): the window goes down
from the anchor t; steps below the first are masked out but the sum is still divided by K; each
x_s has its own noise; L_simple uses the anchor alone; squared norms are summed over data
dimensions. The paper writes the window upwards (s = t..t+K−1, t ∈ {1−K..T}, τ = 0 outside 2..T)
and weights it by τ; ``direction="up"`` with ``tau="paper"`` is that form.

The K evaluations are one batched call of size K·B (K calls of B for images on a CPU, which
is faster there), and the loss works with any parameterization
of the denoiser: ε̂ = (x̂ − D)/σ. Indices are errprop's ``t = 0..T−1`` (paper step t + 1).
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
CHOICES = {"tau": TAUS, "window_noise": ("independent", "chain"), "direction": ("down", "up"),
           "t_sampling": ("uniform", "antithetic"), "simple_on": ("anchor", "window")}


def tau(process: VPProcess) -> torch.Tensor:
    """τ_i of SA's Theorem 1: (T,) float64 indexed by errprop's t = i − 1, so τ[0] = τ_1 = 0.

    ``τ_i = [√ᾱ_{i−1}(1 − ᾱ_1)] / [√α_1 (1 − ᾱ_{i−1})] · γ_{1,i} · √(1 − ᾱ_i)/√ᾱ_i`` for paper steps
    i = 2..T, with ``γ_{1,i} = √ᾱ_{i−1} β_i / (1 − ᾱ_i)``. The first factor is Π_{j=2}^{i−1} γ_{2,j}:
    τ_i is how much a unit error of ε_θ at step i moves the DDPM chain's x_1 (in x_t space).
    """
    abar, beta = process.alphas_cumprod, process.betas
    a_prev, a_i, b_i = abar[:-1], abar[1:], beta[1:]  # paper i = 2..T ↔ our index 1..T−1
    alpha_1 = 1 - beta[0]
    gamma1 = a_prev.sqrt() * b_i / (1 - a_i)
    t = a_prev.sqrt() * (1 - abar[0]) / (alpha_1.sqrt() * (1 - a_prev)) * gamma1 * ((1 - a_i) / a_i).sqrt()
    return torch.cat([t.new_zeros(1), t])


def window_mean(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(1/K) Σ_j w_j err_j``: err (K, B, ...) and weights (K, B) → (B, ...); masked steps have w = 0."""
    w = weight.reshape(*weight.shape, *([1] * (err.ndim - 2)))
    return (w * err).sum(0) / err.shape[0]


@dataclass
class SequenceAwareLoss:
    """SA-K on a discrete VP process; call as ``loss(denoiser, x0, noise)`` with x0 (B, ...).

    Fields (defaults = the released code, docs/methods.md#sa-code): ``K`` window length (≥ 1); ``lam`` the
    weight λ ≥ 0 of L_sa (paper: SA-2 λ = 1, SA-3 0.3, SA-4 0.2); ``tau`` ``none`` (code: τ ≡ 1),
    ``paper`` (Theorem 1's τ_s) or ``relative`` (τ_s/τ_anchor; a window whose anchor has τ = 0
    weighs nothing); ``window_noise`` ``independent`` (code) or ``chain`` (one forward
    trajectory); ``direction`` ``down`` (code: t, t−1, …) or ``up`` (paper: t, t+1, …);
    ``t_sampling`` ``antithetic`` (code) or ``uniform``; ``simple_on`` ``anchor`` (code) or
    ``window`` (L_simple averaged over all valid evaluations of the window).

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
        if not isinstance(self.K, int) or self.K < 1:
            raise ErrpropError(f"loss.sa.K must be an integer ≥ 1, got {self.K!r}")
        if not self.lam >= 0:
            raise ErrpropError(f"loss.sa.lam must be ≥ 0, got {self.lam}")
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ErrpropError(f"loss.sa.{name}: unknown {value!r}; choose one of {allowed}")
        self._base = SimpleLoss(self.process, weighting="eps", sigma_sampling=self.t_sampling)
        self._tau = tau(self.process)

    def window(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step indices (K, B) of each anchor's window (row 0 = the anchor t, (B,)) and their
        validity mask (0 ≤ s ≤ T−1); invalid steps are clamped into range and masked out."""
        j = torch.arange(self.K, device=t.device)[:, None]
        s = t[None] - j if self.direction == "down" else t[None] + j
        valid = (s >= 0) & (s <= self.process.T - 1)
        return s.clamp(0, self.process.T - 1), valid

    def weights(self, s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """τ weights (K, B) float32 of the window's steps (``relative``: divided by the anchor's τ)."""
        if self.tau == "none":
            return valid.to(torch.float32)
        w = self._tau.to(s.device)[s] * valid
        if self.tau == "relative":
            anchor = w[0]
            w = torch.where(anchor > 0, w / anchor.clamp_min(1e-300), torch.zeros_like(w))
        return w.float()

    def forward_samples(
        self, x0: torch.Tensor, s: torch.Tensor, n0: torch.Tensor, noise: Noise
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̂_s = x0 + σ_s ε_s and ε_s, both (K, B, ...), for the window steps s (K, B).

        ``independent``: ε at the anchor is ``n0`` (B, ...), every other step draws its own.
        ``chain``: one forward trajectory, x_{s+1} ~ q(x_{s+1} | x_s), starting from the window's
        lowest step with noise ``n0``; then ε_s = (x̂_s − x0)/σ_s = (x_s − √ᾱ_s x0)/√(1 − ᾱ_s).
        """
        sig = self.process.sigmas.to(x0.device)[s].to(x0.dtype)  # (K, B)
        b = sig.reshape(*sig.shape, *([1] * (x0.ndim - 1)))
        if self.window_noise == "independent":
            eps = torch.stack([n0] + [noise.randn(*x0.shape[1:]).to(x0.device) for _ in range(self.K - 1)])
            return x0[None] + b * eps, eps
        # chain: in x̂ = x_t/√ᾱ_t the VP chain is Brownian, x̂_{s+1} = x̂_s + √(σ²_{s+1} − σ²_s) z.
        order = sig.argsort(0)  # lowest noise first, per sample
        b_sorted = sig.gather(0, order).reshape(b.shape)
        x = [x0 + b_sorted[0] * n0]
        for j in range(1, self.K):
            step = (b_sorted[j] ** 2 - b_sorted[j - 1] ** 2).clamp_min(0).sqrt()
            x.append(x[-1] + step * noise.randn(*x0.shape[1:]).to(x0.device))
        inverse = order.argsort(0).reshape(b.shape).expand(self.K, *x0.shape)
        xs = torch.stack(x).gather(0, inverse)
        return xs, (xs - x0[None]) / b

    @staticmethod
    def _denoise(denoiser, flat: torch.Tensor, sig: torch.Tensor, B: int) -> torch.Tensor:
        """D(x̂_s, σ_s) of all K·B window points: one call, except for images on a CPU, where K
        calls of B were faster (a U-Net step at batch K·B cost more than K steps at B, its
        activations no longer fitting the caches). B2 times both: docs/results/b2_objective_cost.md,
        its "K·B baseline" column (that file's git history holds the earlier runs)."""
        if flat.device.type == "cpu" and flat.ndim > 2:
            return torch.cat([denoiser(x, s) for x, s in zip(flat.split(B), sig.split(B), strict=True)])
        return denoiser(flat, sig)

    def __call__(self, denoiser, x0: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
        sigma_anchor = self._base.sample_sigma(noise).to(x0.device)
        t = self.process.t(sigma_anchor).round().long()
        n0 = noise.randn(*x0.shape[1:]).to(x0.device)
        s, valid = self.window(t)
        xs, eps = self.forward_samples(x0, s, n0, noise)
        K, B = s.shape
        sig = self.process.sigmas.to(x0.device)[s].to(x0.dtype).reshape(K * B)
        flat = xs.reshape(K * B, *x0.shape[1:])
        eps_hat = eps_from_denoised(flat, self._denoise(denoiser, flat, sig, B), sig).reshape(xs.shape)
        err = eps_hat - eps
        per_step = err.flatten(2).pow(2).sum(-1)  # (K, B)
        if self.simple_on == "anchor":
            l_simple = per_step[0].mean()
        else:
            l_simple = (per_step * valid).sum() / valid.sum()
        l_sa = window_mean(err, self.weights(s, valid)).flatten(1).pow(2).sum(1).mean()
        total = l_simple + self.lam * l_sa
        return {"loss": total, "loss_simple": l_simple.detach(), "loss_sa": l_sa.detach()}
