"""Error-optimal sampling grids: choose where N steps go from the errors each step makes.

Anchors, and what is taken from each:

- Watson, Ho, Norouzi & Chan (2021), "Learning to Efficiently Sample from Diffusion Probabilistic
  Models": when the error of a path decomposes into per-step terms, the best path of exactly N
  steps through a candidate set of timesteps is found by dynamic programming in O(N·M²). They
  decompose the DDPM ELBO; here the per-step term is errprop's **modular KL** ``E_{x̂~q_σ}
  KL(p_θ(x̂'|x̂) ‖ q(x̂'|x̂))`` (exact on Gaussian mixtures, :mod:`errprop.diagnostics.modular`), for
  any Gaussian step (DDPM, DDIM with η > 0) — objective ``modular``.
- Sabour, Fidler & Kreis (2024), "Align Your Steps" (ICML): optimise the schedule against a KL
  upper bound (KLUB) between the true and the discretised process, estimated with the learned
  model: on an interval [σ', σ] the discretised sampler keeps using D(x̂_σ, σ) where the true
  process uses D(x̂_s, s), and the KLUB adds ``∫_{σ'}^{σ} ‖D(x̂_s, s) − D(x̂_σ, σ)‖² / s³ ds`` with
  x̂_s = x0 + s ε on shared (x0, ε). That also decomposes per interval, so the same DP finds its
  optimum on the candidate set (AYS itself searches iteratively) — objective ``klub``; it needs no
  density, so it works on images and with deterministic samplers.
- On a mixture the quantity all of this stands in for — the final excess cross-entropy of the
  samples — is exact: objective ``xent`` starts from the best of the DP grid and every hand-made
  grid (any endpoints) and moves one level at a time, the end levels included (coordinate descent
  on the candidate set), while the 1 %-trimmed final excess cross-entropy of n samples with fixed
  noise falls; its cost is counted in sampling runs.

The family searched: grids that end at σ_min (the process's t = 0) with N − 1 steps between
candidate levels, then the final step to σ = 0 (which every grid in the family shares). On a
mixture the first level is free too and the path pays the prior's error there,
``KL(N(0, prior_std(σ)² I) ‖ q_σ)`` (the ELBO's L_T, exact): starting lower saves steps but starts
further from the truth. On images, where that KL is unknown, grids start at σ_max (t = T − 1), as
AYS's do. Candidates: M levels log-uniform in σ (on a discrete VP process snapped to its
timesteps) together with the levels of the hand-made grids of the family (uniform-t ``linspace``,
EDM-ρ, exponential σ, and with a free start ``leading`` and quadratic-t), so the DP optimum is
never worse than those on its own objective (tests check it). ``trailing`` spacing, which stops
short of σ_min, is compared by final quality only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .data.gmm import GaussianMixture
from .diagnostics.modular import kl_estimate, reverse_transition_log_prob, step_moments
from .errors import ErrpropError
from .grids import edm_rho, exponential, uniform_t
from .keys import KEY_DATA, KEY_DATA_NOISE, KEY_START, KEY_STEP
from .noise import Noise
from .process import Process, VPProcess
from .streams import default_dtype, draw_data, reference_sets

OBJECTIVES = ("modular", "klub", "xent")


def hand_made(process: Process, n: int, free_start: bool = False) -> dict[str, torch.Tensor]:
    """The hand-made grids of ``n`` steps in the DP's family: those ending at σ_min, and starting at
    σ_max unless ``free_start``."""
    from .grids import quadratic_t

    lo, hi = process.sigma_min, process.sigma_max
    out = {"edm": edm_rho(lo, hi, n), "exponential": exponential(lo, hi, n)}
    if isinstance(process, VPProcess):
        out["uniform-linspace"] = uniform_t(process, n, "linspace")
        if free_start:
            out["uniform-leading"] = uniform_t(process, n, "leading")
            if n <= int(0.8 * process.T) + 1:
                out["quadratic"] = quadratic_t(process, n)
    return out


def every_hand_made(process: Process, n: int) -> dict[str, torch.Tensor]:
    """Every hand-made grid of ``n`` steps, whatever its endpoints (the starting points of ``xent``)."""
    from .grids import make_grid

    out = {f"uniform-{sp}": make_grid("uniform", process, n, spacing=sp)
           for sp in ("trailing", "leading", "linspace")}
    return {**out, "quadratic": make_grid("quadratic", process, n), **hand_made(process, n)}


def candidates(process: Process, m: int = 48, extra: list[torch.Tensor] = ()) -> torch.Tensor:
    """Descending σ levels > 0 from σ_max to σ_min: ``m`` log-uniform ones (snapped to the
    timesteps of a discrete VP process) and the positive levels of ``extra`` grids."""
    lo, hi = process.sigma_min, process.sigma_max
    levels = torch.exp(torch.linspace(math.log(hi), math.log(lo), m, dtype=torch.float64))
    if isinstance(process, VPProcess):
        levels = process.sigmas[process.t(levels).round().long().unique()]
    pool = torch.cat([levels, *[g[g > 0].to(torch.float64) for g in extra]])
    pool = pool[(pool >= lo * (1 - 1e-12)) & (pool <= hi * (1 + 1e-12))]
    pool = torch.unique(pool.round(decimals=12)).flip(0)
    return pool


def shortest_path(cost: torch.Tensor, n_edges: int,
                  start_cost: torch.Tensor | None = None) -> tuple[list[int], float]:
    """Indices i_0 < i_1 < … < i_k = M − 1 (k = ``n_edges``) minimising
    ``start_cost[i_0] + Σ cost[i_j, i_{j+1}]``; without ``start_cost`` the path starts at i_0 = 0.

    ``cost`` is (M, M) with finite entries above the diagonal. Dynamic programming, O(k·M²).
    """
    m = cost.shape[0]
    if not 1 <= n_edges <= m - 1:
        raise ErrpropError(f"optimal grid: {n_edges + 1} steps need at least {n_edges + 1} candidate "
                           f"levels, there are {m}")
    c = cost.to(torch.float64).clone()
    c[torch.tril(torch.ones(m, m, dtype=torch.bool))] = math.inf
    best = torch.full((m,), math.inf, dtype=torch.float64)
    if start_cost is None:
        best[0] = 0.0
    else:
        best[:] = start_cost.to(torch.float64)
    back = []
    for _ in range(n_edges):
        total = best[:, None] + c  # (from, to)
        best, arg = total.min(0)
        back.append(arg)
    path = [m - 1]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1], float(best[m - 1])


class _Memo:
    """The denoiser with its last call remembered: the steps from one level to every lower one
    evaluate the network once."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.key, self.value = denoiser, None, None

    def __call__(self, x: torch.Tensor, sigma):
        key = (id(x), float(sigma))
        if key != self.key:
            self.key, self.value = key, self.denoiser(x, sigma)
        return self.value


@torch.no_grad()
def modular_costs(denoiser, mixture: GaussianMixture, levels: torch.Tensor, step: str | Callable = "ddpm",
                  options: dict | None = None, n: int = 500, seed: int = 0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """(M, M) modular KL (nats) of one Gaussian step from ``levels[i]`` to ``levels[j]``, j > i."""
    m, d = len(levels), mixture.dim
    dtype = default_dtype(denoiser)
    x0 = draw_data(mixture, n, seed, KEY_DATA, torch.float64, device)
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(d, dtype=torch.float64)
    z = Noise.from_seed(seed, n, key=(KEY_STEP,), device=device).randn(d, dtype=torch.float64)
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    memo = _Memo(denoiser)
    for i in range(m - 1):
        s = float(levels[i])
        x = (x0 + s * eps).to(dtype)
        for j in range(i + 1, m):
            s_next = float(levels[j])
            mean, std = step_moments(step, memo, x, s, s_next, **(options or {}))
            mean, std = mean.to(torch.float64), std.to(torch.float64)
            x_next = mean + std * z
            log_p = (-0.5 * z**2 - std.log()).sum(1) - 0.5 * d * math.log(2 * math.pi)
            log_q = reverse_transition_log_prob(mixture, x.double(), s, s_next, x_next)
            cost[i, j] = kl_estimate(log_p, log_q)[0]
    return cost


@torch.no_grad()
def klub_costs(denoiser, data: GaussianMixture | torch.Tensor, levels: torch.Tensor, n: int = 500,
               seed: int = 0, batch_size: int | None = None,
               device: str | torch.device = "cpu") -> torch.Tensor:
    """(M, M) AYS-style KLUB of holding D(x̂_σ_i, σ_i) over [σ_j, σ_i]: the right Riemann sum over the
    candidate levels of ``(σ_{k−1} − σ_k)/σ_k³ · E‖D(x̂_k, σ_k) − D(x̂_i, σ_i)‖²`` for i < k ≤ j, with
    x̂_k = x0 + σ_k ε on shared (x0, ε)."""
    m = len(levels)
    dtype = default_dtype(denoiser)
    x0 = draw_data(data, n, seed, KEY_DATA, dtype, device)
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(*x0.shape[1:], dtype=dtype)
    bs = batch_size or n
    den = torch.stack([torch.cat([denoiser(x0[a:a + bs] + float(s) * eps[a:a + bs], float(s))
                                  for a in range(0, n, bs)]).reshape(n, -1).double() for s in levels])
    w = torch.zeros(m, dtype=torch.float64)
    w[1:] = (levels[:-1] - levels[1:]) / levels[1:] ** 3
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    for i in range(m - 1):
        gap = (den[i + 1:] - den[i]).pow(2).sum(-1).mean(-1)  # k = i+1 … M−1
        cost[i, i + 1:] = torch.cumsum(w[i + 1:] * gap, 0)
    return cost


def path_cost(cost: torch.Tensor, levels: torch.Tensor, grid: torch.Tensor,
              start_cost: torch.Tensor | None = None) -> float:
    """Σ of ``cost`` along a grid whose positive levels are all candidates (else an error), plus
    ``start_cost`` at its first level."""
    pos = grid[grid > 0].to(torch.float64)
    idx = [int(torch.argmin((levels - s).abs())) for s in pos]
    if any(abs(float(levels[i]) - float(s)) > 1e-9 * float(s) for i, s in zip(idx, pos)):
        raise ErrpropError("optimal grid: a level of the grid is not among the candidates")
    start = 0.0 if start_cost is None else float(start_cost[idx[0]])
    return start + float(sum(cost[a, b] for a, b in zip(idx, idx[1:])))


@torch.no_grad()
def prior_costs(process: Process, mixture: GaussianMixture, levels: torch.Tensor, n: int = 500,
                seed: int = 0) -> torch.Tensor:
    """(M,) KL(N(0, prior_std(σ)² I) ‖ q_σ) in nats: the error of starting the sampler at σ from the
    prior instead of the true marginal (the ELBO's L_T; exact density, Monte Carlo over the prior)."""
    d = mixture.dim
    z = Noise.from_seed(seed, n, key=(KEY_START,)).randn(d, dtype=torch.float64)
    out = []
    for s in levels.tolist():
        std = process.prior_std(s)
        x = std * z
        log_p = (-0.5 * z**2).sum(1) - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)
        out.append(float((log_p - mixture.log_prob(x, s).double()).mean()))
    return torch.tensor(out, dtype=torch.float64)


def with_zero(levels: torch.Tensor, path: list[int]) -> torch.Tensor:
    """The grid σ_{i_0} > … > σ_{i_k} > 0 of a path through ``levels``."""
    return torch.cat([levels[path], levels.new_zeros(1)])


def dp_grid(cost: torch.Tensor, levels: torch.Tensor, n_steps: int,
            start_cost: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The grid of ``n_steps`` steps minimising the summed per-step cost (plus ``start_cost`` at
    its first level, which is then free), and that minimum."""
    if n_steps < 2:
        raise ErrpropError("optimal grid: need ≥ 2 steps (one step from σ_max is the whole grid)")
    path, value = shortest_path(cost, n_steps - 1, start_cost)
    return with_zero(levels, path), value


def descend(evaluate: Callable[[torch.Tensor], float], levels: torch.Tensor, start: torch.Tensor,
            max_rounds: int = 3, ends: bool = False) -> tuple[torch.Tensor, float, int]:
    """Coordinate descent of ``evaluate(grid)`` over the levels of ``start`` on the candidate set
    (each level moves to a neighbouring candidate while that lowers the value; the first and last
    positive levels too when ``ends``). Returns (grid, value, number of evaluations)."""
    pos = start[start > 0].to(torch.float64)
    idx = [int(torch.argmin((levels - s).abs())) for s in pos]
    best, calls = evaluate(with_zero(levels, idx)), 1
    for _ in range(max_rounds):
        improved = False
        for j in range(0 if ends else 1, len(idx) if ends else len(idx) - 1):
            for move in (-1, 1):
                cand = idx[j] + move
                below = idx[j - 1] if j > 0 else -1
                above = idx[j + 1] if j + 1 < len(idx) else len(levels)
                if not below < cand < above:
                    continue
                trial = idx[:j] + [cand] + idx[j + 1:]
                v = evaluate(with_zero(levels, trial))
                calls += 1
                if v < best:
                    best, idx, improved = v, trial, True
        if not improved:
            break
    return with_zero(levels, idx), best, calls


def final_xent(denoiser, process: Process, mixture: GaussianMixture, grid: torch.Tensor, sampler: str,
               n: int, seed: int, options: dict | None = None) -> dict:
    """Exact excess cross-entropy (nats; mean, median, 1 %-trimmed, outliers) of ``n`` samples
    drawn along ``grid`` with fixed noise."""
    from .generate import generate
    from .metrics.xent import excess_cross_entropy

    x = generate(denoiser, process, (mixture.dim,), n, seed=seed, sampler=sampler, steps=len(grid) - 1,
                 grid="list", grid_options={"sigmas": grid[grid > 0].tolist()}, **(options or {}))
    ref = reference_sets(mixture, n, seed)[0]
    return excess_cross_entropy(-mixture.log_prob(x.double()), -mixture.log_prob(ref.double()))


def default_objective(gaussian_step: bool, mixture: bool) -> str:
    """The objective that fits a sampler and data: ``modular`` (the exact per-step KL) for a
    Gaussian, stochastic step on a mixture; ``klub`` otherwise (it needs neither a density nor a
    stochastic step). ``xent`` is never the default: it costs sampling runs."""
    return "modular" if gaussian_step and mixture else "klub"


def optimize(run, sampler: str, steps: int, objective: str | None = None, *, n: int = 500, seed: int = 0,
             m: int = 48, oracle: bool = False, device: str | torch.device = "cpu",
             log: Callable[[str], None] = lambda s: None) -> dict:
    """The error-optimal grid of ``steps`` steps for a run and sampler (see the module docstring);
    ``objective`` None takes the one that fits them (:func:`default_objective`).

    Returns a JSON-ready dict: the grid (``sigmas``: its positive levels, the form
    ``sample.sigmas`` takes), the objective's value for it and for every hand-made grid of the
    family, the cost (network evaluations of the objective; sampling runs for ``xent``) and, with
    ``oracle`` on a mixture, the exact final excess cross-entropy of every grid.
    """
    from .builders import load_data, sampler_settings
    from .samplers import is_gaussian, step_options

    if objective is not None and objective not in OBJECTIVES:
        raise ErrpropError(f"--objective: unknown {objective!r}; choose from {', '.join(OBJECTIVES)}")
    data = load_data(run.config, "train")
    mixture = data if isinstance(data, GaussianMixture) else None
    user = sampler_settings(run.config)
    opts = step_options(sampler, steps, run.process, **user)
    gaussian = is_gaussian(sampler, opts)
    if objective is None:
        objective = default_objective(gaussian, mixture is not None)
    if objective in ("modular", "xent") or oracle:
        if mixture is None:
            raise ErrpropError(f"grid optimize: {'--oracle' if oracle else f'objective {objective}'} needs a "
                               "Gaussian-mixture run (exact density); on images use --objective klub")
    if objective == "modular" and not gaussian:
        raise ErrpropError(f"--objective modular needs a Gaussian step (ddpm, or ddim with sample.eta > 0); "
                           f"sampler {sampler!r} is deterministic: use --objective klub or xent")
    free = mixture is not None  # the prior's error is exact on a mixture: the DP may pick the start
    made = hand_made(run.process, steps, free_start=free)
    starts_all = every_hand_made(run.process, steps) if objective == "xent" else made
    levels = candidates(run.process, m, list(starts_all.values()))
    start = prior_costs(run.process, mixture, levels, n=n, seed=seed) if free else None
    log(f"[grid] {len(levels)} candidate levels; objective {objective}")
    if objective == "modular":
        cost = modular_costs(run.denoiser, mixture, levels, sampler, opts, n=n, seed=seed, device=device)
        evals = n * (len(levels) - 1)
    else:
        cost = klub_costs(run.denoiser, data, levels, n=n, seed=seed, batch_size=500, device=device)
        evals = n * len(levels)
    grid, value = dp_grid(cost, levels, steps, start)
    out = {"objective": objective, "sampler": sampler, "steps": steps, "n": n, "seed": seed,
           "candidates": len(levels), "network_evaluations": evals, "sampling_runs": 0,
           "start": "free (prior KL added)" if free else "σ_max",
           "hand_made": {name: {"sigmas": g[g > 0].tolist(), "cost": path_cost(cost, levels, g, start)}
                         for name, g in made.items()},
           "dp": {"sigmas": grid[grid > 0].tolist(), "cost": value}}
    if objective == "xent":
        def score(g: torch.Tensor) -> float:
            res = final_xent(run.denoiser, run.process, mixture, g, sampler, n, seed + 1, user)
            return res["trimmed"]

        starts = {"dp": grid, **starts_all}
        start_scores = {k: score(g) for k, g in starts.items()}
        first = min(start_scores, key=start_scores.get)
        log(f"[grid] descent from {first} ({start_scores[first]:.4g} nats)")
        grid, value, calls = descend(score, levels, starts[first], ends=True)
        out.update(start=first, sampling_runs=len(starts) + calls - 1, start_values=start_scores)
    out.update(sigmas=grid[grid > 0].tolist(), value=value)
    if oracle:
        exact = {name: final_xent(run.denoiser, run.process, mixture, g, sampler, n, seed + 2, user)
                 for name, g in {"optimized": grid, **made}.items()}
        out["final_xent"] = exact
        out["sampling_runs"] += len(exact)
    return out
