"""The standard denoising losses, in EDM's form ``λ(σ) ‖D(x̂; σ) − x0‖²`` (docs/methods.md#baseline-loss).

Every weighting is the classical loss of a parameterization written for the denoiser D:

==========  ==============================  =========================================
weighting   λ(σ)                            equals
==========  ==============================  =========================================
``eps``     1/σ²                            DDPM's L_simple ‖ε̂ − ε‖² (Ho et al. 2020)
``x0``      1                               ‖x̂0 − x0‖²
``v``       (1 + σ²)/σ²                     ‖v̂ − v‖² (Salimans & Ho 2022)
``edm``     (σ² + σ_d²)/(σ σ_d)²            EDM's loss (Karras et al. 2022, eq. 8)
==========  ==============================  =========================================

Squared norms are **summed over data dimensions** and averaged over the batch, as in the SA
paper's code: λ of an added regularizer is then on the scale of a per-sample squared norm.

Noise levels: ``uniform`` (t uniform over the process, DDPM), ``antithetic`` (half the batch
uniform, the other half mirrored, t' = T − 1 − t, as the SA code does) or ``lognormal`` (EDM:
ln σ ~ N(P_mean, P_std²)). ``input_perturbation`` γ > 0 is DDPM-IP (Ning et al. 2023): the input is
``x0 + σ(ε + γ ξ)`` while the target stays ε.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import PARAMETERIZATIONS, eps_from_denoised
from ..errors import ErrpropError
from ..noise import Noise
from ..process import Process

SIGMA_SAMPLING = ("uniform", "antithetic", "lognormal")
#: The weightings (see the module table): one per parameterization, each its classical loss.
WEIGHTINGS = PARAMETERIZATIONS


def _b(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def loss_weight(weighting: str, sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """λ(σ) of a weighting (see the module table)."""
    if weighting == "eps":
        return sigma**-2
    if weighting == "x0":
        return torch.ones_like(sigma)
    if weighting == "v":
        return (1 + sigma**2) / sigma**2
    if weighting == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    raise ErrpropError(f"loss.weighting: unknown {weighting!r}; choose one of {WEIGHTINGS}")


@dataclass
class SimpleLoss:
    """``E λ(σ) ‖D(x0 + σ n; σ) − x0‖²`` — the baseline every objective in errprop builds on.

    Call as ``loss(denoiser, x0, noise)``; ``noise`` holds one random stream per sample (σ and n
    come from it), so the loss of a sample does not depend on its batch. Returns a dict of scalar
    tensors: ``loss`` (what is optimized) and ``loss_simple``.
    """

    process: Process
    weighting: str = "eps"
    sigma_sampling: str = "uniform"
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    input_perturbation: float = 0.0

    def __post_init__(self) -> None:
        loss_weight(self.weighting, torch.ones(1))
        if self.sigma_sampling not in SIGMA_SAMPLING:
            raise ErrpropError(
                f"loss.sigma_sampling: unknown {self.sigma_sampling!r}; choose one of {SIGMA_SAMPLING}"
            )
        if self.input_perturbation < 0:
            raise ErrpropError(f"loss.input_perturbation must be ≥ 0, got {self.input_perturbation}")

    def sample_sigma(self, noise: Noise) -> torch.Tensor:
        """One training noise level per stream, (batch,) float32 on the noise's device."""
        if self.sigma_sampling == "lognormal":
            return (self.p_mean + self.p_std * noise.randn(1)[:, 0]).exp()
        u = noise.rand(1)[:, 0]
        if self.sigma_sampling == "antithetic":
            half = len(u) // 2
            u = torch.cat([u[:half], 1 - u[:half], u[2 * half:]])
        return self.process.sample_sigma(u)

    def per_sample(self, denoiser, x0: torch.Tensor, sigma: torch.Tensor, n: torch.Tensor,
                   xi: torch.Tensor | None = None) -> torch.Tensor:
        """λ(σ)‖D − target‖² per sample for given σ (batch,), noise n and IP noise ξ."""
        s = _b(sigma, x0)
        x = x0 + s * n if xi is None else x0 + s * (n + self.input_perturbation * xi)
        denoised = denoiser(x, sigma)
        if self.weighting == "eps":  # DDPM's own form ‖ε̂ − ε‖²: the same value, no 1/σ² on rounding
            return (eps_from_denoised(x, denoised, sigma) - n).flatten(1).pow(2).sum(1)
        target = x - s * n  # = x0, or x0 + σγξ under input perturbation (target ε unchanged)
        err = (denoised - target).flatten(1).pow(2).sum(1)
        return loss_weight(self.weighting, sigma, self.sigma_data) * err

    def __call__(self, denoiser, x0: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
        sigma = self.sample_sigma(noise).to(x0.device)
        n = noise.randn(*x0.shape[1:]).to(x0.device)
        xi = noise.randn(*x0.shape[1:]).to(x0.device) if self.input_perturbation > 0 else None
        loss = self.per_sample(denoiser, x0, sigma, n, xi).mean()
        return {"loss": loss, "loss_simple": loss.detach()}
