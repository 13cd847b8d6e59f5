"""Analytic-DPM (Bao et al., ICLR 2022): the optimal reverse variance of a DDPM step.

Derivation in x̂ space (``x̂ = x_t / s = x0 + σ n``, see :mod:`errprop.process`)
-------------------------------------------------------------------------------
Bao et al., Theorem 1, for the reverse family ``q_λ(x_{n−1} | x_n, x0) = N(μ̃_n, λ_n² I)`` with
``ᾱ_n`` the cumulative product, ``β̄_n = 1 − ᾱ_n`` and ``α_n = ᾱ_n / ᾱ_{n−1}`` (a strided step
uses the two grid points' ᾱ): the KL-optimal isotropic variance of ``p(x_{n−1} | x_n)`` is ::

    σ*_n² = λ_n² + (√(β̄_n/α_n) − √(β̄_{n−1} − λ_n²))² · (1 − β̄_n E‖∇ log q_n(x_n)‖² / d).

With an ε-model, ``∇ log q_n = −ε̂/√β̄_n``, so the last factor is ``1 − Γ_n`` with
``Γ_n = E_{q_n} ‖ε̂(x_n)‖² / d``, estimated by Monte Carlo on data (:func:`gamma_table`).
DDPM (``β̃``) is ``λ_n² = β̃_n = β̄_{n−1} β_n / β̄_n``.

Now write the step σ → σ' in x̂ space: ``ᾱ = s² = 1/(1+σ²)``, ``β̄ = σ² s²``, ``α_n = s²/s'²``, and a
variance in x_{n−1} becomes a variance in x̂' after division by ``s'²``:

- ``β̃_n = σ'² (s'² − s²)/(σ² s²) = s'² · σ'²(σ² − σ'²)/σ²``, so λ² turns into the Brownian bridge
  variance ``v̄ = σ'² (σ² − σ'²)/σ²`` (DDPM ``small``);
- ``√(β̄_n/α_n) = s' σ`` and ``√(β̄_{n−1} − λ²) = s' σ'²/σ``, so the bracket turns into
  ``(σ − σ'²/σ)² = (1 − c)² σ²`` with ``c = σ'²/σ²``.

Hence, for any process (the scale s has dropped out) ::

    v*(σ → σ') = v̄ + (1 − c)² σ² (1 − Γ(σ)),      Γ(σ) = E ‖(x̂ − D(x̂, σ))/σ‖² / d.

Check: ``E ‖ε − ε̂*‖² = d − E‖ε̂*‖²`` for the exact denoiser, so ``σ² (1 − Γ) = E tr Cov(x0 | x̂)/d``
and v* is the x̂-averaged, isotropic variance of the exact reverse transition
``x̂' = (1 − c) x0 + c x̂ + √v̄ z`` (x0 drawn from its posterior). Bao et al.'s Theorem 2 bounds
(Γ clipped to [0, 1]) are ``v̄ ≤ v* ≤ σ² − σ'²``; for data in ``[a, b]`` the upper bound tightens
to ``v̄ + (1 − c)² ((b − a)/2)²``. With a per-dimension data variance ≤ 1 the exact v* also lies in
DDPM's ``[β̃, β]`` (in x̂ space β is ``(σ² − σ'²) s²/s'²``): a Gaussian has the largest posterior
variance for its covariance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .data.gmm import GaussianMixture
from .errors import ErrpropError
from .keys import KEY_DATA, KEY_GAMMA
from .noise import Noise
from .streams import batched, draw_data

Denoise = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class GammaTable:
    """Γ(σ) = E‖ε̂‖²/d at increasing σ levels (float64, shape (m,)), with the Monte-Carlo standard
    error of each entry; called as ``table(σ)`` it interpolates linearly in log σ."""

    sigmas: torch.Tensor
    gamma: torch.Tensor
    stderr: torch.Tensor

    def __post_init__(self) -> None:
        order = torch.argsort(self.sigmas)
        self.sigmas = self.sigmas.to(torch.float64)[order]
        self.gamma = self.gamma.to(torch.float64)[order]
        self.stderr = self.stderr.to(torch.float64)[order]

    def __call__(self, sigma: float) -> float:
        """Γ at ``sigma`` (log-linear interpolation; exact on the table's own levels)."""
        lo, hi = float(self.sigmas[0]), float(self.sigmas[-1])
        if not lo * (1 - 1e-6) <= sigma <= hi * (1 + 1e-6):
            raise ErrpropError(
                f"analytic-DPM: σ = {sigma:.6g} is outside the Γ table's range "
                f"[{lo:.6g}, {hi:.6g}]; estimate it on levels that cover the sampler's grid")
        if len(self.sigmas) == 1:
            return float(self.gamma[0])
        logs = self.sigmas.log()
        x = torch.tensor(sigma, dtype=torch.float64).log().clamp(logs[0], logs[-1])
        i = int(torch.searchsorted(logs, x.reshape(1)).clamp(1, len(logs) - 1))
        w = (x - logs[i - 1]) / (logs[i] - logs[i - 1])
        return float(self.gamma[i - 1] * (1 - w) + self.gamma[i] * w)

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {"sigma": self.sigmas.tolist(), "gamma": self.gamma.tolist(),
                "stderr": self.stderr.tolist()}


@torch.no_grad()
def gamma_table(
    denoiser: Denoise,
    data: GaussianMixture | torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    n: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> GammaTable:
    """Estimate Γ(σ) = E_{x0, ε} ‖ε̂(x0 + σε, σ)‖² / d at every σ > 0 of ``sigmas`` (Bao et al.).

    Monte Carlo over n data samples x0 and antithetic noise pairs ±ε (the same x0 and ε at every
    level), with ``E‖ε‖² = d`` as a control variate: per pair
    ``A = (‖ε̂(x0 + σε)‖² + ‖ε̂(x0 − σε)‖²)/(2d)`` and ``B = ‖ε‖²/d``, and
    ``Γ̂ = mean A − λ (mean B − 1)`` with the variance-minimising λ. Both corrections leave the
    estimate unbiased for any model; they matter at large σ, where the variance needs
    ``σ²(1 − Γ)`` and Γ ≈ 1: the plain average of ‖ε̂‖²/d leaves an error ∝ σ²/√n in it there
    (σ_max ≈ 157 for the linear VP schedule), this one an error ∝ 1/√n.

    Args:
        denoiser: ``D(x̂, σ)``; ε̂ = (x̂ − D)/σ.
        data: a Gaussian mixture (exact draws) or a tensor (N, ...) of x0 (the first ``n`` of a
            seeded permutation are used).
        sigmas: the σ levels (a sampling grid: zeros are skipped). Precompute on the full set of
            trained levels (VP: ``process.sigmas``) to serve every sampling grid.
        n: x0 samples (and noise pairs, so 2n denoiser evaluations) per level.
    """
    levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1) if s > 0]
    if not levels:
        raise ErrpropError("analytic-DPM: no σ > 0 to estimate Γ at")
    if n < 2:
        raise ErrpropError(f"analytic-DPM: Γ needs n ≥ 2 samples per level, got {n}")
    x0 = draw_data(data, n, seed, KEY_DATA, dtype, device)
    eps = Noise.from_seed(seed, n, key=(KEY_GAMMA,), device=device).randn(*x0.shape[1:],
                                                                           dtype=dtype)
    d = x0[0].numel()
    b = eps.reshape(n, -1).double().pow(2).sum(1) / d
    gam, err = [], []
    for s in levels:
        def pair_mean(sl, s=s):
            x = torch.cat([x0[sl] + s * eps[sl], x0[sl] - s * eps[sl]])
            e = ((x - denoiser(x, s)) / s).reshape(x.shape[0], -1).double().pow(2).sum(1) / d
            return (e[: len(e) // 2] + e[len(e) // 2:]) / 2

        a = batched(pair_mean, n, batch_size)
        lam = float(((a - a.mean()) * (b - b.mean())).sum() / ((b - b.mean()) ** 2).sum())
        v = a - lam * (b - 1)
        gam.append(float(v.mean()))
        err.append(float(v.std() / n**0.5))
    return GammaTable(torch.tensor(levels), torch.tensor(gam), torch.tensor(err))


def analytic_variance(sigma: float, sigma_next: float, gamma: float,
                      data_range: tuple[float, float] | None = None) -> float:
    """The optimal DDPM reverse variance in x̂ space, ``v̄ + (1 − c)² σ² (1 − Γ)`` (module docstring),
    with Γ clipped to [0, 1] (Bao et al., Theorem 2) and, for data in ``data_range = (a, b)``, the
    variance capped at ``v̄ + (1 − c)² ((b − a)/2)²``."""
    c = sigma_next**2 / sigma**2
    vbar = sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    var = vbar + (1 - c) ** 2 * sigma**2 * (1 - min(max(gamma, 0.0), 1.0))
    if data_range is not None:
        a, b = data_range
        var = min(var, vbar + (1 - c) ** 2 * ((b - a) / 2) ** 2)
    return var


def analytic_ddpm_step(
    denoiser: Denoise,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    noise: Noise,
    gamma_table: GammaTable | None = None,
    data_range: tuple[float, float] | None = None,
):
    """Analytic-DPM ancestral step: DDPM's mean ``D + c (x̂ − D)`` with the optimal variance
    :func:`analytic_variance` at Γ = ``gamma_table(σ)``; the last step to σ' = 0 returns D.

    Same signature as the steps of :mod:`errprop.samplers`; pass it as ``step=`` to
    :func:`errprop.samplers.sample` with ``gamma_table=`` among the options.
    """
    if gamma_table is None:
        raise ErrpropError(
            "analytic-DPM step needs gamma_table= (see errprop.analytic_dpm.gamma_table)")
    denoised = denoiser(x, sigma)
    if sigma_next == 0:
        return denoised, denoised
    mean = denoised + (sigma_next**2 / sigma**2) * (x - denoised)
    var = analytic_variance(sigma, sigma_next, gamma_table(sigma), data_range)
    return mean + var**0.5 * noise.randn(*x.shape[1:], dtype=x.dtype), denoised
