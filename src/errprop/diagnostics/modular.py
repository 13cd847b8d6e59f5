"""Modular error per step (EP's E^mod, docs/methods.md#modular-error): how far a model step is from the truth.

On a Gaussian mixture the true reverse transition of a step σ → σ' is known in closed form. In x̂
space the forward chain is Brownian, so ``q(x̂' | x̂, x0)`` is the bridge
``N(x0 + c (x̂ − x0), v̄ I)`` with ``c = σ'²/σ²``, ``v̄ = σ'² (σ² − σ'²)/σ²``, and with the exact
posterior ``x0 | x̂ ~ Σ_k r_k N(m_k, V_k)`` ::

    q(x̂' | x̂) = Σ_k r_k N(x̂'; (1 − c) m_k + c x̂, (1 − c)² V_k + v̄ I).

A stochastic sampler step is Gaussian, ``p_θ(x̂' | x̂) = N(m_θ, diag(s_θ²))``. Its mean and standard
deviation are read off the step function itself (called with its noise replaced by 0 and ±1), so
any Gaussian step works — DDPM (β̃ or β), DDIM with η > 0, Analytic-DPM — without repeating the
samplers' formulas. ``E^mod = E_{x̂ ~ q_σ} KL(p_θ(·|x̂) ‖ q(·|x̂))`` is then a Monte-Carlo average
over x̂ ~ q_σ (forward-noised data) and one draw x̂' ~ p_θ per x̂ of ``log p_θ(x̂') − log q(x̂'|x̂)``,
both exact densities. As a control variate we add ``λ (r − 1)``, ``r = q/p_θ`` (``E_p[r] = 1``;
λ = 1 is Schulman's low-variance "k3" estimator, here λ is the variance-minimising value, and 0
when the importance weights r are too heavy-tailed to trust), which keeps the relative error
bounded when the KL is tiny (fine grids) instead of growing like 1/√KL.

On image data, where no q is known, :func:`denoising_excess` reports the per-step denoising error
``E‖ε̂ − ε‖²``. It **includes the irreducible part** ``E‖ε − E[ε|x̂]‖²``, which a perfect model also
pays; with an exact denoiser (a mixture) the reducible part ``E‖ε̂ − ε̂*‖²`` is given too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..keys import KEY_DATA, KEY_DATA_NOISE, KEY_STEP
from ..noise import Noise
from ..process import Process
from ..samplers import Denoise, get_step
from ..streams import batched, default_dtype, draw_data
from ._util import grid_fields

GAUSSIAN_STEPS = "ddpm, ddim with eta > 0, or errprop.analytic_dpm.analytic_ddpm_step"


class _ConstantNoise:
    """A stand-in for :class:`~errprop.noise.Noise` whose every normal draw is ``value``."""

    def __init__(self, n: int, value: float, device) -> None:
        self.n, self.value, self.device = n, value, device

    def __len__(self) -> int:
        return self.n

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.full((self.n, *shape), self.value, dtype=dtype, device=self.device)


def resolve_step(step: str | Callable) -> Callable:
    """A step function from a sampler name (:func:`errprop.samplers.get_step`) or a callable."""
    return get_step(step) if isinstance(step, str) else step


def step_moments(step: str | Callable, denoiser: Denoise, x: torch.Tensor, sigma: float,
                 sigma_next: float, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and per-coordinate std of a Gaussian sampler step ``x̂' = m_θ(x̂) + s_θ(x̂) ⊙ z``.

    Calls ``step`` three times with its noise replaced by z ≡ 0, +1, −1 (shapes like ``x``).
    Raises :class:`ErrpropError` when the step is deterministic (Euler, Heun, DDIM η = 0: no
    density) or not affine in its noise (e.g. churn, whose noise goes through the denoiser).
    """
    fn = resolve_step(step)
    n = x.shape[0]
    m, _ = fn(denoiser, x, sigma, sigma_next, _ConstantNoise(n, 0.0, x.device), **options)
    hi, _ = fn(denoiser, x, sigma, sigma_next, _ConstantNoise(n, 1.0, x.device), **options)
    lo, _ = fn(denoiser, x, sigma, sigma_next, _ConstantNoise(n, -1.0, x.device), **options)
    std = (hi - lo).abs() / 2
    tol = 1e-4 * (1 + m.abs().max()) if m.dtype != torch.float64 else 1e-9 * (1 + m.abs().max())
    if ((hi + lo - 2 * m).abs() > tol + 1e-3 * std).any():
        raise ErrpropError("modular error: the sampler step is not Gaussian in its noise (churn? "
                           f"a denoiser in training mode?); use {GAUSSIAN_STEPS}")
    if (std <= 0).any():
        raise ErrpropError(
            "modular error: the sampler step is deterministic, so KL(p_θ(·|x̂) ‖ q(·|x̂)) is "
            f"infinite; use {GAUSSIAN_STEPS}, or denoising_excess for a deterministic sampler")
    return m, std


def reverse_transition_log_prob(mixture: GaussianMixture, x: torch.Tensor, sigma: float,
                                sigma_next: float, x_next: torch.Tensor) -> torch.Tensor:
    """log q(x̂' | x̂) of the exact reverse step σ → σ' > 0 of a Gaussian mixture (module docstring).

    Args:
        x: (n, d) points x̂ at σ; x_next: (n, d) points x̂' at σ'.

    Returns:
        (n,) float64 log densities.
    """
    if not 0 < sigma_next < sigma:
        raise ErrpropError(
            f"reverse transition needs 0 < σ' < σ, got σ = {sigma}, σ' = {sigma_next}")
    x = x.to(torch.float64).reshape(x.shape[0], -1)
    x_next = x_next.to(torch.float64).reshape(x_next.shape[0], -1)
    post = mixture.posterior(x, sigma)
    c = sigma_next**2 / sigma**2
    vbar = sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    d = x.shape[1]
    means = (1 - c) * post.means + c * x[:, None, :]
    covs = (1 - c) ** 2 * post.covs + vbar * torch.eye(d, dtype=torch.float64, device=x.device)
    L = torch.linalg.cholesky(covs)
    diff = (x_next[:, None, :] - means).unsqueeze(-1)
    sol = torch.linalg.solve_triangular(L, diff, upper=False).squeeze(-1)
    logdet = 2 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    logn = -0.5 * (sol**2).sum(-1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
    return torch.logsumexp(post.resp.log() + logn, 1)


def kl_estimate(log_p: torch.Tensor, log_q: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of E_p[log p − log q] with the control variate λ(r − 1), r = q/p."""
    n = log_p.shape[0]
    k1 = log_p - log_q
    r = (-k1).clamp(max=50).exp()
    var_r = r.var() if n > 1 else torch.zeros((), dtype=r.dtype)
    ess = r.sum() ** 2 / (r**2).sum()
    if var_r <= 1e-300:
        lam = 1.0
    elif ess >= 0.5 * n:
        lam = float(-((k1 - k1.mean()) * (r - r.mean())).sum() / (n - 1) / var_r)
    else:
        lam = 0.0
    v = k1 + lam * (r - 1)
    return float(v.mean()), float(v.std() / math.sqrt(n)) if n > 1 else float("nan")


def _indices(n_steps: int, at: Sequence[int] | None) -> list[int]:
    idx = list(range(n_steps)) if at is None else [int(i) for i in at]
    bad = [i for i in idx if not 0 <= i < n_steps]
    if bad:
        raise ErrpropError(f"modular error: step indices {bad} are outside 0..{n_steps - 1}")
    return idx


@torch.no_grad()
def modular_error(
    denoiser: Denoise,
    mixture: GaussianMixture,
    sigmas: torch.Tensor,
    *,
    step: str | Callable = "ddpm",
    options: dict | None = None,
    n: int = 1000,
    seed: int = 0,
    at: Sequence[int] | None = None,
    process: Process | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """E^mod per step of a grid: ``E_{x̂~q_σ} KL(p_θ(x̂'|x̂) ‖ q(x̂'|x̂))`` in nats (EP's modular error).

    Args:
        denoiser: the model ``D(x̂, σ)`` (the mixture itself gives the error of the Gaussian
            approximation of the reverse step alone).
        mixture: the data distribution (exact q).
        sigmas: the grid ``σ_0 > … > σ_{m−1} > σ_m = 0`` (:func:`errprop.grids.make_grid`).
        step: a Gaussian sampler step (name or function); ``options`` its keyword options (DDPM
            ``large`` needs ``process``).
        n: samples x̂ ~ q_σ per step (the same x0 and noise at every step).
        at: step indices j (step σ_j → σ_{j+1}) to evaluate; default all. The last step (to σ = 0)
            has no density and is reported as None.
        process: gives the timestep index ``t`` of each σ for a VP process.
        dtype: the dtype the denoiser is called in (float64 for a mixture, float32 otherwise).

    Returns:
        ``{"measure", "index", "sigma", "sigma_next", "t", "t_next", "kl", "kl_stderr", "n",
        "seed", "step"}``: per-step lists (float, None where undefined).
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    idx = _indices(len(sigmas) - 1, at)
    dtype = dtype or default_dtype(denoiser)
    options = options or {}
    d = mixture.dim
    x0 = draw_data(mixture, n, seed, KEY_DATA, torch.float64, device)
    f64 = torch.float64
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(d, dtype=f64)
    z = Noise.from_seed(seed, n, key=(KEY_STEP,), device=device).randn(d, dtype=f64)
    kl, se = [], []
    for j in idx:
        s, s_next = float(sigmas[j]), float(sigmas[j + 1])
        if s_next == 0:
            kl.append(float("nan"))
            se.append(float("nan"))
            continue
        x = x0 + s * eps
        mean, std = step_moments(step, denoiser, x.to(dtype), s, s_next, **options)
        mean, std = mean.to(torch.float64), std.to(torch.float64)
        x_next = mean + std * z
        log_p = (-0.5 * z**2 - std.log()).sum(1) - 0.5 * d * math.log(2 * math.pi)
        log_q = reverse_transition_log_prob(mixture, x, s, s_next, x_next)
        value, err = kl_estimate(log_p, log_q)
        kl.append(value)
        se.append(err)
    start = grid_fields(process, sigmas[idx]) if process is not None else {
        "sigma": [float(sigmas[j]) for j in idx], "t": None}
    nxt = grid_fields(process, sigmas[[j + 1 for j in idx]]) if process is not None else {
        "sigma": [float(sigmas[j + 1]) for j in idx], "t": None}
    return {
        "measure": "modular_kl", "unit": "nats", "index": idx,
        "sigma": start["sigma"], "sigma_next": nxt["sigma"], "t": start["t"], "t_next": nxt["t"],
        "kl": kl, "kl_stderr": se, "n": n, "seed": seed, "step": step_name(step),
    }


@torch.no_grad()
def denoising_excess(
    denoiser: Denoise,
    data: GaussianMixture | torch.Tensor,
    sigmas: torch.Tensor,
    *,
    n: int = 1000,
    seed: int = 0,
    exact: Denoise | None = None,
    process: Process | None = None,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Per-step denoising error ``E‖ε̂ − ε‖²`` (summed over dimensions) at every σ > 0 of a grid.

    ``x̂ = x0 + σ ε`` with x0 from ``data`` (a mixture or a tensor (N, ...) of samples), and
    ``ε̂ = (x̂ − D(x̂, σ))/σ`` (ε-MSE, L_simple's summand). This **includes the irreducible part**
    ``E‖ε − E[ε|x̂]‖²``, which even a perfect model pays; it is not a KL. With ``exact`` (the exact
    denoiser, e.g. the mixture) the split is reported too: ``reducible = E‖ε̂ − ε̂*‖²`` and
    ``irreducible = E‖ε̂* − ε‖²`` (they add up to ``excess`` exactly in expectation).

    Returns:
        ``{"measure", "sigma", "t", "excess", "excess_per_dim", "excess_stderr", ["reducible",
        "reducible_stderr", "irreducible"], "includes_irreducible", "n", "seed"}``.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    levels = sigmas[sigmas > 0]
    dtype = dtype or default_dtype(denoiser)
    x0 = draw_data(data, n, seed, KEY_DATA, dtype, device)
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(*x0.shape[1:],
                                                                                dtype=dtype)
    d = x0[0].numel()
    out: dict = {"excess": [], "excess_stderr": []}
    if exact is not None:
        out.update(reducible=[], reducible_stderr=[], irreducible=[])
    for s in levels.tolist():
        def errors(sl, s=s):
            x = x0[sl] + s * eps[sl]
            e_hat = ((x - denoiser(x, s)) / s).reshape(x.shape[0], -1).double()
            e = eps[sl].reshape(x.shape[0], -1).double()
            cols = [(e_hat - e).pow(2).sum(1)]
            if exact is not None:
                e_star = e_hat if exact is denoiser else (  # (D* is seconds per call on images)
                    (x - exact(x, s)) / s).reshape(x.shape[0], -1).double()
                cols += [(e_hat - e_star).pow(2).sum(1), (e_star - e).pow(2).sum(1)]
            return torch.stack(cols, 1)

        v = batched(errors, n, batch_size)
        out["excess"].append(float(v[:, 0].mean()))
        out["excess_stderr"].append(float(v[:, 0].std() / math.sqrt(n)) if n > 1 else float("nan"))
        if exact is not None:
            out["reducible"].append(float(v[:, 1].mean()))
            out["reducible_stderr"].append(
                float(v[:, 1].std() / math.sqrt(n)) if n > 1 else float("nan"))
            out["irreducible"].append(float(v[:, 2].mean()))
    grid = (grid_fields(process, levels) if process is not None
            else {"sigma": levels.tolist(), "t": None})
    return {
        "measure": "denoising_excess", "sigma": grid["sigma"], "t": grid["t"], **out,
        "excess_per_dim": [v / d for v in out["excess"]],
        "includes_irreducible": True,
        "note": "E‖ε̂ − ε‖² includes the irreducible part E‖ε − E[ε|x̂]‖², nonzero even for a "
                "perfect model",
        "n": n, "seed": seed,
    }


def step_name(step) -> str:
    """A sampler's name: the registry's for a registered step function, else the function's."""
    if isinstance(step, str):
        return step
    from ..samplers import SAMPLERS

    named = next((k for k, v in SAMPLERS.items() if v.step is step), None)
    return named or getattr(step, "__name__", type(step).__name__)
