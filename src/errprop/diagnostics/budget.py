"""DS's error budget E_I + E_D + E_S (Wang et al. 2024; docs/methods.md#error-budget, §12).

DS bounds ``KL(p_data ‖ p_sample) ≲ E_I + E_D + E_S``. Each term can be isolated where an exact
denoiser and exact draws of ``q_{σ_max}`` are available: on a Gaussian mixture (the mixture
itself), and on images for the empirical distribution of the training set (its ideal denoiser
D*, :class:`~errprop.data.empirical.EmpiricalDenoiser`; draws are training images, uniformly).
Three chains run on the same grid with the same injected noise (per-sample streams), from starts
that share one standard normal w per sample:

- ``A``: exact denoiser, started from the prior ``prior_std(σ_max) · w``;
- ``B``: exact denoiser, started from the true marginal ``x0 + σ_max w`` (x0 exact data draws);
- ``C``: the model's denoiser, started from the prior (what a user samples).

Then, with a distance d on sample sets (all MMD terms share one kernel bandwidth, fixed from the
data, and all SWD terms share one set of directions, so each is a metric):

- ``E_I = d(A, B)``: the start mismatch alone (same score, same noise, different start);
- ``E_D = d(B, data)``: the exact-score sampler from the exact start, i.e. discretisation alone;
  for deterministic samplers also ``d(B, R)`` and the path error ``mean ‖B − R‖`` against R, the
  converged probability-flow solution from the same starts (Heun, ``reference_steps`` steps on an
  EDM grid over the same σ range; R is a draw of the data distribution up to that solver's tiny
  error), free of the sampling floor, so it shows the sampler's order of convergence;
- ``E_S = d(C, A)``: learned minus exact (zero for the exact denoiser: the chains coincide).

The triangle inequality gives ``d(C, data) ≤ E_I + E_D + E_S``, DS's bound in a metric. Each
distance to the data comes with its floor (two independent data sets of the same n); the excess
cross-entropy ``E[−log p_data(x)] − E_data[−log p_data]`` (nats, exact density) is reported for
A, B, C (mixtures only: the empirical distribution has no density). On images the converged
reference R is skipped (512 Heun steps of D* over 60,000 images cost too much on a CPU); E_D is
then measured against the data only. Distances: ``mmd`` is √MMD² (not squared, so that it is a
metric), ``swd`` the sliced Wasserstein-2, ``path`` the mean Euclidean distance between paired samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..data.empirical import EmpiricalDenoiser
from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..generate import run_chains
from ..grids import edm_rho, make_grid
from ..keys import KEY_DATA, KEY_FLOOR, KEY_START, KEY_START_DATA
from ..metrics.mmd import mmd2
from ..metrics.swd import sliced_wasserstein
from ..noise import Noise
from ..process import Process
from ..samplers import Denoise, is_stochastic
from ..streams import default_dtype, draw_data
from ._util import grid_fields
from .modular import step_name

DS_GRIDS = ("edm", "exponential")


def _bandwidth(y: torch.Tensor) -> float:
    """EP's base bandwidth on one set: the mean off-diagonal squared distance."""
    y = y.flatten(1).float()
    d2 = torch.cdist(y, y) ** 2
    n = len(y)
    return float(d2.sum() / (n * (n - 1)))


class _Distances:
    """Distances with one kernel bandwidth and one set of SWD directions for every pair."""

    def __init__(self, mixture: GaussianMixture | None, data: torch.Tensor, seed: int) -> None:
        self.mixture, self.data, self.seed = mixture, data, seed
        self.beta = _bandwidth(data)
        self.data_nll = None if mixture is None else -float(mixture.log_prob(data.double()).mean())

    def __call__(self, x: torch.Tensor, y: torch.Tensor, path: bool = True) -> dict[str, float]:
        # float64: the paired distances (E_I, E_S, E_D against R) go to 0 with the step size.
        x, y = x.flatten(1).double(), y.flatten(1).double()
        if torch.equal(x, y):  # the kernel sums would leave a rounding residue of ~1e-16
            return {"mmd": 0.0, "swd": 0.0, "path": 0.0} if path else {"mmd": 0.0, "swd": 0.0}
        g = torch.Generator().manual_seed(self.seed)
        out = {"mmd": float(mmd2(x, y, bandwidth=self.beta).clamp_min(0).sqrt()),
               "swd": float(sliced_wasserstein(x, y, generator=g))}
        if path:
            out["path"] = float((x - y).norm(dim=1).mean())
        return out

    def to_data(self, x: torch.Tensor) -> dict[str, float]:
        """mmd, swd and excess cross-entropy of samples x against the data set."""
        out = self(x, self.data, path=False)
        if self.mixture is not None:
            out["xent"] = -float(self.mixture.log_prob(x.flatten(1).double()).mean()) - self.data_nll
        return out


Exact = GaussianMixture | EmpiricalDenoiser


def exact_draws(exact: Exact, n: int, seed: int, key: int) -> torch.Tensor:
    """``n`` exact draws (float64) of the distribution ``exact`` is the denoiser of: a mixture's,
    or uniform draws from the points of an ideal denoiser, each key its own streams."""
    if isinstance(exact, GaussianMixture):
        return draw_data(exact, n, seed, key, torch.float64)
    return exact.sample(Noise.from_seed(seed, n, key=(key,))).double().cpu()


def _shape(exact: Exact) -> tuple[int, ...]:
    return (exact.dim,) if isinstance(exact, GaussianMixture) else exact.shape


@torch.no_grad()
def converged_reference(mixture: GaussianMixture, process: Process, start: torch.Tensor,
                        sigma_min: float, sigma_max: float, steps: int = 512, seed: int = 0,
                        ) -> torch.Tensor:
    """The probability-flow ODE solved from ``start`` at σ_max with the exact denoiser: Heun on an
    EDM ρ = 7 grid of ``steps`` steps down to ``sigma_min`` and then to 0 (float64)."""
    grid = edm_rho(sigma_min, sigma_max, steps)
    out = run_chains(mixture, process, grid, len(start), tuple(start.shape[1:]), seed=seed,
                     step="heun", record=[steps], start=start, dtype=torch.float64)
    return out[steps]


@torch.no_grad()
def error_budget(
    denoiser: Denoise,
    mixture: Exact,
    process: Process,
    *,
    sampler: str | Callable = "heun",
    options: dict | None = None,
    grid: str = "edm",
    steps: int = 32,
    sigmas: torch.Tensor | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    grid_options: dict | None = None,
    n: int = 1000,
    seed: int = 0,
    reference_steps: int = 512,
    reference: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> dict:
    """E_I, E_D, E_S of one sampler, grid and step count (module docstring).

    Args:
        denoiser: the model D(x̂, σ) (pass the mixture itself to check E_S = 0).
        mixture: the data distribution: a Gaussian mixture, or the ideal denoiser of a training
            set (:class:`~errprop.data.empirical.EmpiricalDenoiser`).
        sampler, options: the step (name or function) and its keyword options.
        grid, steps, sigma_min, sigma_max, grid_options: the grid
            (:func:`errprop.grids.make_grid`), unless ``sigmas`` is given.
        n: chains per start and data samples per set.
        reference_steps: Heun steps of the converged reference (deterministic samplers only).
        reference: a precomputed :func:`converged_reference` for these starts (reused across
            grids and step counts with the same σ range, n and seed).
        dtype: the dtype the model is called in (the exact chains run in float64).

    Returns:
        ``{"E_I": {mmd, swd, path}, "E_D": {mmd, swd, xent[, mmd_ref, swd_ref, path]},
        "E_S": {mmd, swd, path}, "total": {mmd, swd, xent}, "floor": {mmd, swd, xent},
        "to_data": {exact_prior, exact_start, learned_prior: {mmd, swd, xent}},
        "sigma", "t", "sampler", "grid", "steps", "n", "seed"}``.
    """
    if not isinstance(mixture, GaussianMixture | EmpiricalDenoiser):
        raise ErrpropError("error budget: needs an exact reference: a Gaussian-mixture data set or "
                           "the ideal denoiser of a training set (exact score and q_σmax)")
    is_mixture = isinstance(mixture, GaussianMixture)
    grid_name = grid if sigmas is None else "list"
    if sigmas is None:
        sigmas = make_grid(grid, process, steps, sigma_min=sigma_min, sigma_max=sigma_max,
                           **(grid_options or {}))
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    m, smax = len(sigmas) - 1, float(sigmas[0])
    shape = _shape(mixture)
    w = Noise.from_seed(seed, n, key=(KEY_START,)).randn(*shape, dtype=torch.float64)
    x0 = exact_draws(mixture, n, seed, KEY_START_DATA)
    prior_start = process.prior_std(smax) * w
    true_start = x0 + smax * w

    def run(d, start, dt):
        return run_chains(d, process, sigmas, n, shape, seed=seed, step=sampler, options=options,
                          record=[m], start=start, dtype=dt)[m].double()

    a = run(mixture, prior_start, torch.float64)
    b = run(mixture, true_start, torch.float64)
    # the exact denoiser as the model: chain C is chain A, computed once
    c = a if denoiser is mixture else run(denoiser, prior_start, dtype or default_dtype(denoiser))
    data = exact_draws(mixture, n, seed, KEY_DATA)
    data2 = exact_draws(mixture, n, seed, KEY_FLOOR)
    dist = _Distances(mixture if is_mixture else None, data, seed)
    b_to_data = dist.to_data(b)
    e_d = dict(b_to_data)
    if not is_stochastic(sampler, options) and (is_mixture or reference is not None):
        if reference is None:
            reference = converged_reference(mixture, process, true_start, float(sigmas[-2]), smax,
                                            reference_steps, seed)
        ref = dist(b, reference)
        e_d.update(mmd_ref=ref["mmd"], swd_ref=ref["swd"], path=ref["path"])
    e_i, e_s = dist(a, b), dist(c, a)
    total = dist.to_data(c)
    g = grid_fields(process, sigmas)
    return {
        "measure": "error_budget", "E_I": e_i, "E_D": e_d, "E_S": e_s, "total": total,
        "floor": dist.to_data(data2),
        "to_data": {"exact_prior": dist.to_data(a), "exact_start": b_to_data,
                    "learned_prior": total},
        "sigma": g["sigma"], "t": g["t"], "sampler": step_name(sampler),
        "grid": grid_name, "steps": m, "n": n, "seed": seed,
    }


@torch.no_grad()
def compare_schedules(
    denoiser: Denoise,
    mixture: Exact,
    process: Process,
    *,
    sampler: str | Callable = "heun",
    options: dict | None = None,
    steps: Sequence[int] = (8, 16, 32),
    grids: Sequence[str] = DS_GRIDS,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    n: int = 1000,
    seed: int = 0,
    reference_steps: int = 512,
    dtype: torch.dtype | None = None,
) -> dict:
    """DS Table 2 as a measurement: the error budget of each σ grid (default the polynomial ``edm``
    and the ``exponential`` one) at each step count, for one denoiser.

    DS predicts that E_D + E_I favour ``exponential`` and E_S favours ``edm``, so that a
    well-trained score prefers ``exponential`` and a less-trained one ``edm``. This returns the
    measured terms; ``preferred`` names, per step count, the grid with the smaller total distance
    to the data (``mmd``) and the smaller E_I + E_D and E_S.

    Returns:
        ``{"steps": [...], "grids": {grid: {"E_I": {metric: [per steps]}, "E_D": ..., "E_S": ...,
        "total": ...}}, "preferred": {"total", "E_I+E_D", "E_S": [grid per steps]}, "floor",
        "sampler", "n", "seed"}``.
    """
    steps = [int(s) for s in steps]
    out: dict = {"measure": "schedule_comparison", "steps": steps, "grids": {},
                 "sampler": step_name(sampler), "n": n, "seed": seed}
    lo = process.sigma_min if sigma_min is None else sigma_min
    hi = process.sigma_max if sigma_max is None else sigma_max
    reference = None
    if not is_stochastic(sampler, options) and isinstance(mixture, GaussianMixture):
        w = Noise.from_seed(seed, n, key=(KEY_START,)).randn(mixture.dim, dtype=torch.float64)
        x0 = draw_data(mixture, n, seed, KEY_START_DATA, torch.float64)
        reference = converged_reference(mixture, process, x0 + hi * w, lo, hi, reference_steps,
                                        seed)
    for g in grids:
        table: dict = {}
        for k in steps:
            r = error_budget(denoiser, mixture, process, sampler=sampler, options=options, grid=g,
                             steps=k, sigma_min=lo, sigma_max=hi, n=n, seed=seed,
                             reference=reference, dtype=dtype)
            for term in ("E_I", "E_D", "E_S", "total"):
                for metric, v in r[term].items():
                    table.setdefault(term, {}).setdefault(metric, []).append(v)
            out["floor"] = r["floor"]
        out["grids"][g] = table
    t = out["grids"]

    def best(score) -> list[str]:
        return [min(grids, key=lambda g: score(t[g], i)) for i in range(len(steps))]

    out["preferred"] = {
        "total": best(lambda r, i: r["total"]["mmd"][i]),
        "E_I+E_D": best(lambda r, i: r["E_I"]["mmd"][i] + r["E_D"]["mmd"][i]),
        "E_S": best(lambda r, i: r["E_S"]["mmd"][i]),
    }
    return out
