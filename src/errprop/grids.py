"""Sampling step grids: decreasing σ sequences of n levels followed by a final 0.

A grid of ``n`` steps has ``n + 1`` entries ``σ_0 > … > σ_{n-1} > σ_n = 0``; a first-order sampler
calls the network once per step. Grids over the timestep index t (uniform, quadratic) are read off
the process, so that on a VP model they land exactly on the trained timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import ErrpropError
from .process import Process, VPProcess

GRIDS = ("uniform", "quadratic", "edm", "exponential", "list")
SPACINGS = ("trailing", "leading", "linspace", "leading_multistep", "linspace_multistep")


def _with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def uniform_t(process: Process, n: int, spacing: str = "trailing", steps_offset: int = 0) -> torch.Tensor:
    """n timesteps evenly spaced in t.

    On a discrete VP process the spacings are diffusers' ``timestep_spacing``: ``trailing``
    (starts at t = T−1, the default: it covers the whole trained range), ``leading`` (DDIM's
    original ``range(0, T, T // n)``, which never reaches T−1) and ``linspace``. diffusers' multistep
    schedulers (``DPMSolverMultistep``, ``UniPCMultistep``) space ``leading`` and ``linspace``
    differently — n + 1 points with the one at t = 0 dropped — which are ``leading_multistep``
    (``range(0, T, T // (n+1))`` without 0) and ``linspace_multistep``; their ``trailing`` is ours.
    On a VE process t is continuous and the three coincide. ``steps_offset`` is diffusers' (added to
    the ``leading`` timesteps only, as its schedulers do).
    """
    if isinstance(process, VPProcess):
        T = process.T
        if n > T:
            raise ErrpropError(f"sample.steps: {n} steps on a process with T = {T} timesteps; "
                               f"the uniform grid allows at most {T}")
        if spacing == "trailing":
            ts = torch.arange(T, 0, -T / n, dtype=torch.float64).round() - 1
        elif spacing == "leading":
            ts = (torch.arange(n, dtype=torch.float64) * (T // n)).flip(0) + steps_offset
            if ts[0] > T - 1:
                raise ErrpropError(f"sample.steps_offset {steps_offset} puts the first of {n} leading "
                                   f"timesteps at {int(ts[0])}, past T − 1 = {T - 1}")
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, n, dtype=torch.float64).round().flip(0)
        elif spacing == "leading_multistep":
            ts = (torch.arange(1, n + 1, dtype=torch.float64) * (T // (n + 1))).flip(0) + steps_offset
            if ts[0] > T - 1:
                raise ErrpropError(f"sample.steps_offset {steps_offset} puts the first of {n} leading "
                                   f"timesteps at {int(ts[0])}, past T − 1 = {T - 1}")
        elif spacing == "linspace_multistep":
            ts = torch.linspace(0, T - 1, n + 1, dtype=torch.float64).round()[1:].flip(0)
        else:
            raise ErrpropError(f"sample.spacing: unknown {spacing!r}; choose one of {SPACINGS}")
        return _with_zero(process.sigmas[ts.long()])
    t_min, t_max = float(process.t(process.sigma_min)), float(process.t(process.sigma_max))
    return _with_zero(process.sigma(torch.linspace(t_max, t_min, n, dtype=torch.float64)))


def quadratic_t(process: Process, n: int) -> torch.Tensor:
    """n timesteps quadratic in t (DDIM, Song et al. 2021: t_i ∝ i², up to 0.8 T on VP).

    On a discrete VP process DDIM's ``int(t_i)`` repeats the first timesteps once n is large
    (1 repeat at n = 50, 4 at 100 for T = 1000), which would make zero-length steps; here each
    repeat is moved to the next free timestep (t_i ≥ t_{i−1} + 1), so n ≤ ⌊0.8 T⌋ + 1.
    """
    if isinstance(process, VPProcess):
        top = math.floor(0.8 * process.T)
        if n > top + 1:
            raise ErrpropError(f"sample.steps: {n} steps on a process with T = {process.T} "
                               f"timesteps; the quadratic grid (up to 0.8 T) allows at most {top + 1}")
        ts = (torch.linspace(0, math.sqrt(0.8 * process.T), n, dtype=torch.float64) ** 2).long()
        ts = torch.minimum(ts, torch.tensor(top))
        for i in range(1, n):  # push repeats up; the cap above leaves room for all of them
            ts[i] = max(int(ts[i]), int(ts[i - 1]) + 1)
        return _with_zero(process.sigmas[ts.flip(0)])
    t_min, t_max = float(process.t(process.sigma_min)), float(process.t(process.sigma_max))
    u = torch.linspace(1, 0, n, dtype=torch.float64) ** 2
    return _with_zero(process.sigma(t_min + u * (t_max - t_min)))


def edm_rho(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """EDM's polynomial grid σ_i = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ (DS eq. poly)."""
    i = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    inv = 1 / rho
    return _with_zero((sigma_max**inv + i * (sigma_min**inv - sigma_max**inv)) ** rho)


def exponential(sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """Geometric grid σ_i = σ_max (σ_min/σ_max)^{i/(n−1)} (Song et al.'s VE schedule; DS eq. exp)."""
    i = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    return _with_zero(sigma_max * (sigma_min / sigma_max) ** i)


def custom(sigmas: Sequence[float]) -> torch.Tensor:
    """A user list of σ levels (strictly decreasing, positive); the final 0 is appended."""
    s = torch.as_tensor(list(sigmas), dtype=torch.float64)
    if s.ndim != 1 or len(s) == 0 or (s <= 0).any() or (s[1:] >= s[:-1]).any():
        raise ErrpropError(
            f"sample.sigmas: need a non-empty, strictly decreasing list of σ > 0, got {list(sigmas)}")
    return _with_zero(s)


def make_grid(
    name: str,
    process: Process,
    n: int,
    *,
    rho: float = 7.0,
    spacing: str = "trailing",
    sigmas: Sequence[float] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    steps_offset: int = 0,
) -> torch.Tensor:
    """The grid ``name`` with ``n`` steps for ``process`` (σ range defaults to the process's).

    Every grid returned is strictly decreasing and ends at 0; one that cannot be (more steps than
    the process has timesteps, an empty σ range) is an error naming the limit, never a grid with
    zero-length steps.
    """
    if name != "list" and n < 1:
        raise ErrpropError(f"sample.steps must be ≥ 1, got {n}")
    lo = process.sigma_min if sigma_min is None else sigma_min
    hi = process.sigma_max if sigma_max is None else sigma_max
    if name in ("edm", "exponential") and not 0 < lo < hi:
        raise ErrpropError(f"sample.grid {name}: need 0 < σ_min < σ_max, got {lo:g} and {hi:g}")
    if name == "uniform":
        grid = uniform_t(process, n, spacing, steps_offset)
    elif name == "quadratic":
        grid = quadratic_t(process, n)
    elif name == "edm":
        grid = edm_rho(lo, hi, n, rho)
    elif name == "exponential":
        grid = exponential(lo, hi, n)
    elif name == "list":
        if not sigmas:
            raise ErrpropError("sample.sigmas: grid 'list' needs sample.sigmas")
        grid = custom(sigmas)
    else:
        raise ErrpropError(f"sample.grid: unknown {name!r}; choose one of {GRIDS}")
    if not (grid[1:] < grid[:-1]).all():  # a guard: the builders above should never get here
        raise ErrpropError(f"sample.grid {name} with {n} steps is not strictly decreasing "
                           f"({(grid[1:] >= grid[:-1]).sum().item()} repeated levels)")
    return grid
