"""The estimation gap of SA (Nguyen et al. 2024, Fig. 4; docs/methods.md#estimation-gap).

Real x0 are noised to a start level σ_{t0} (VP default: paper step t0 = 300 of T = 1000), and two
chains run from that same x̂_{t0} down to σ = 0, **sharing every injected noise** (two
:class:`~errprop.noise.Noise` objects built from the same seeds, so draw k of chain i is the same
number in both):

- the model chain: the sampler step with the model's denoiser;
- the oracle chain: the same step with the denoiser replaced by ``(x̂, σ) ↦ x0`` (the known x0).
  For DDPM with β̃ (``small``) this is exactly the forward posterior ``q(x̂' | x̂, x0)`` (the
  Brownian bridge), so the oracle chain's marginals are the forward marginals ``q(x̂_t | x0)``;
  for DDIM/Euler it is the x0-conditioned probability-flow ODE.

``gap_j = mean_i ‖x_j^θ − x_j^oracle‖`` (L2 over the sample's dimensions, mean over samples), in
the scaled space x_t = s x̂ by default (SA's space) or in x̂. Theorem 1 of SA is its first-order
expansion, ``d_θ = Σ_i τ_i (ε_θ(x_i, i) − ε_i)``. The chains are simulated directly, step by step,
each at its own (σ, σ') pair: nothing of the released code's recursion (ᾱ at the wrong index) is
reused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import ErrpropError
from ..keys import KEY_DATA_NOISE
from ..noise import Noise
from ..process import Process, VPProcess
from ..samplers import Denoise, sample
from ._util import grid_fields, to_space
from .modular import resolve_step, step_name

SA_T0 = 300  # SA Fig. 4 starts at x_300 of T = 1000 (paper step, 1-based)


def default_start(process: Process, t0: int = SA_T0) -> float:
    """σ at paper step ``t0`` of a VP process (index ``t0 − 1``; ``t0`` is scaled to T/1000 when
    T ≠ 1000). For a VE process: the σ that the default linear VP (T = 1000) has at t0 (≈ 1.24 for
    t0 = 300), so that VP and VE runs start at the same noise level."""
    if isinstance(process, VPProcess):
        idx = round(t0 * process.T / 1000) - 1
        return float(process.sigmas[min(max(idx, 0), process.T - 1)])
    return float(VPProcess().sigmas[t0 - 1])


def gap_grid(process: Process, sigma0: float, sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """The grid of the gap's chains: σ0 followed by the levels of ``sigmas`` below σ0 (and 0).

    Default (``sigmas`` None): every trained level below σ0 for a VP process (SA's full-length
    DDPM chain), or an EDM ρ = 7 grid of 100 steps from σ0 to the process's σ_min for a VE process.
    """
    if sigmas is None:
        if isinstance(process, VPProcess):
            sigmas = process.sigmas.flip(0)
        else:
            from ..grids import edm_rho

            sigmas = edm_rho(process.sigma_min, sigma0, 100)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    below = sigmas[(sigmas < sigma0 * (1 - 1e-9)) & (sigmas > 0)]
    return torch.cat([torch.tensor([sigma0], dtype=torch.float64), below,
                      torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def estimation_gap(
    denoiser: Denoise,
    process: Process,
    x0: torch.Tensor,
    *,
    t0: int = SA_T0,
    sigma0: float | None = None,
    sigmas: torch.Tensor | None = None,
    step: str | Callable = "ddpm",
    options: dict | None = None,
    seed: int = 0,
    space: str = "scaled",
) -> dict:
    """SA's estimation gap along a sampling chain started from real data noised to σ0.

    Args:
        denoiser: the model ``D(x̂, σ)``.
        process: the forward process (for t and the scale s).
        x0: (n, ...) real data; both chains run in its dtype and on its device.
        t0, sigma0: the start: σ0 if given, else :func:`default_start` of ``t0``.
        sigmas: a sampling grid whose levels below σ0 are used (default :func:`gap_grid`).
        step, options: the sampler step (name or function) and its keyword options.
        seed: start noise and injected noise of sample i come from stream (seed, i).
        space: ``scaled`` (x_t = s x̂, default) or ``unscaled`` (x̂).

    Returns:
        ``{"measure", "sigma", "t", "gap", "gap_stderr", "n", "seed", "step", "space", "t0",
        "sigma0"}``: one value per grid point, the start (gap 0) first and σ = 0 last.
    """
    if not torch.is_tensor(x0) or x0.ndim < 2 or len(x0) < 1:
        raise ErrpropError("estimation gap: x0 must be a tensor (n, ...) of real data samples")
    s0 = default_start(process, t0) if sigma0 is None else float(sigma0)
    if not s0 > 0:
        raise ErrpropError(f"estimation gap: the start σ0 must be > 0, got {s0}")
    grid = gap_grid(process, s0, sigmas)
    dtype, n = x0.dtype, len(x0)
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=x0.device).randn(*x0.shape[1:],
                                                                                dtype=dtype)
    start = x0 + s0 * eps
    step_fn = resolve_step(step)
    options = options or {}
    paths = {}
    for name, d in (("model", denoiser), ("oracle", lambda x, sigma: x0)):
        states = [start]
        sample(d, start, grid, Noise.from_seed(seed, n, device=x0.device), step_fn,
               lambda info, states=states: states.append(info["x_next"]), **options)
        paths[name] = states
    gap, err = [], []
    for j, s in enumerate(grid.tolist()):
        diff = to_space(process, paths["model"][j] - paths["oracle"][j], s, space)
        dist = diff.reshape(n, -1).double().norm(dim=1)
        gap.append(float(dist.mean()))
        err.append(float(dist.std() / math.sqrt(n)) if n > 1 else float("nan"))
    g = grid_fields(process, grid)
    return {"measure": "estimation_gap", "sigma": g["sigma"], "t": g["t"], "gap": gap,
            "gap_stderr": err, "n": n, "seed": seed, "step": step_name(step), "space": space,
            "t0": t0 if sigma0 is None else None, "sigma0": s0}
