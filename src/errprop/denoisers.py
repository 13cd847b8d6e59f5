"""One model contract: ``denoiser(x̂, σ) -> x̂0`` (EDM's D), whatever the network predicts.

A network ``F(input, c_noise)`` knows nothing of diffusion. A parameterization turns it into a
denoiser with EDM's preconditioning (Karras et al. 2022, Table 1)::

    D(x̂; σ) = c_skip(σ) x̂ + c_out(σ) F(c_in(σ) x̂, c_noise(σ))

=============  ==========================  ===============  =====================  =============
name           c_skip                      c_out            c_in                   c_noise
=============  ==========================  ===============  =====================  =============
``eps``        1                           −σ               s(σ) (process)         process
``x0``         0                           1                s(σ) (process)         process
``v``          1/(1+σ²)                    −σ/√(1+σ²)       1/√(1+σ²)              process
``edm``        σ_d²/(σ²+σ_d²)              σσ_d/√(σ²+σ_d²)  1/√(σ²+σ_d²)           ln(σ)/4
=============  ==========================  ===============  =====================  =============

With a VP process, ``eps`` is exactly DDPM: the network sees ``x_t = s x̂`` and the timestep index,
and predicts ε; ``v`` is the v-prediction of Salimans & Ho (2022).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ErrpropError
from .process import Process

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")


def as_sigma(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """σ as a (batch,) tensor on x's device and dtype."""
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma.to(x.dtype)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


class Denoiser(nn.Module):
    """A preconditioned network as a denoiser ``D(x̂, σ) ≈ E[x0 | x̂]``.

    Args:
        net: ``net(input, c_noise) -> output`` with output shaped like input.
        parameterization: one of ``eps``, ``x0``, ``v``, ``edm``.
        process: the forward process (gives c_in and c_noise for eps/x0/v).
        sigma_data: σ_d of the EDM preconditioning.
        round_timesteps: condition the network on the nearest integer timestep index (eps/x0/v on
            a discrete process): diffusers' DPMSolverMultistep and UniPC schedulers do so on Karras
            grids, whose σ fall between the trained timesteps, while their update uses σ itself.
    """

    def __init__(
        self, net: nn.Module, parameterization: str, process: Process, sigma_data: float = 0.5,
        round_timesteps: bool = False,
    ) -> None:
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ErrpropError(
                f"model.parameterization: unknown {parameterization!r}; choose one of {PARAMETERIZATIONS}"
            )
        self.net, self.parameterization, self.process = net, parameterization, process
        self.sigma_data = sigma_data
        self.round_timesteps = round_timesteps

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for a (batch,) tensor of σ."""
        p, one = self.parameterization, torch.ones_like(sigma)
        if p != "edm":
            c_noise = self.process.c_noise(sigma)
            c_noise = c_noise.round() if self.round_timesteps else c_noise
        if p == "eps":
            return one, -sigma, self.process.scale(sigma), c_noise
        if p == "x0":
            return 0 * one, one, self.process.scale(sigma), c_noise
        if p == "v":
            r = (1 + sigma**2).rsqrt()
            return r**2, -sigma * r, r, c_noise
        sd2 = self.sigma_data**2
        r = (sigma**2 + sd2).rsqrt()
        return sd2 * r**2, sigma * self.sigma_data * r, r, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x̂0 estimate, shaped like ``x``; ``sigma`` is a float or a (batch,) tensor."""
        sigma = as_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = self.net(_bcast(c_in, x) * x, c_noise).to(x.dtype)
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * out


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """ε̂ = (x̂ − D)/σ, the noise estimate implied by a denoised estimate."""
    return (x - denoised) / _bcast(as_sigma(sigma, x), x)


class EpsilonScaled(nn.Module):
    """Epsilon scaling at sampling time (ADM-ES/EDM-ES, Ning et al. 2024; docs/methods.md#epsilon-scaling).

    The network's noise estimate is divided by ``λ_t = k·t + b`` (t the process's timestep index;
    k = 0 is the common choice, b slightly above 1): ``ε̂' = ε̂/λ_t``, i.e.
    ``D'(x̂, σ) = x̂ − (x̂ − D(x̂, σ))/λ_t``. Training-free; b is found by a 1-D search per model and
    step count. Wraps any denoiser.
    """

    def __init__(self, denoiser: nn.Module, b: float, k: float = 0.0, process: Process | None = None):
        super().__init__()
        if not b > 0:
            raise ErrpropError(f"epsilon scaling: b must be > 0, got {b}")
        if k != 0 and process is None:
            raise ErrpropError("epsilon scaling with k ≠ 0 needs the process (for the timestep t)")
        self.denoiser, self.b, self.k, self.process = denoiser, float(b), float(k), process

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        d = self.denoiser(x, sigma)
        lam = torch.as_tensor(self.b, dtype=x.dtype, device=x.device)
        if self.k:
            t = self.process.t(as_sigma(sigma, x)).to(x.device, x.dtype)
            lam = self.k * _bcast(t, x) + self.b
        return x - (x - d) / lam
