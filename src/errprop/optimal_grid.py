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
- Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models" (NeurIPS), whose ELBO is the
  chain rule of KL along the chain: for the Markov chains q (the true reverse process) and p_θ (the
  sampler) over a grid σ_0 > … > σ_k, ``KL(q(x̂_0, …, x̂_k) ‖ p_θ(x̂_0, …, x̂_k)) = KL(q_σ0 ‖ p_σ0) +
  Σ_i E_{x̂~q_σi} KL(q(x̂'|x̂) ‖ p_θ(x̂'|x̂))`` (σ_i → σ_{i+1}), and dropping all but the last
  variable cannot raise a KL, so the sum is an **upper bound on KL(q_σk ‖ p_σk)**, the forward KL
  of the samples at the grid's last positive level (σ_min here, where the final step to 0 that
  every grid of the family shares starts). Ho et al. condition each term (the prior's too) on x0;
  their sum exceeds this one by the mutual information I(x0; x̂_σk) (the excess of the
  conditioning telescopes along the chain, less I(x0; x̂_σ0) at the start), the same for every grid
  from σ_0 to σ_k, so both have the same optimum. The conditioned terms are closed-form Gaussian KLs
  given x0 and x̂ and need no density of q: ``path_kl`` uses them on images, where every grid starts
  at σ_max. On a mixture the marginal terms are exact: objective
  ``path_kl``, per step ``E_{(x̂, x̂')~q} [log q(x̂'|x̂) − log p_θ(x̂'|x̂)]`` with the exact reverse
  step of the mixture
  (:func:`~errprop.diagnostics.modular.reverse_transition_log_prob`) and the Gaussian step's own
  density, at pairs drawn from the forward process — x0 ~ data, x̂ = x0 + σ ε, and x̂' from the
  Brownian bridge q(x̂'|x̂, x0), which given x̂ alone is a draw from q(x̂'|x̂) because x0 comes with
  x̂ from their joint — so the network runs once per level. The start pays ``KL(q_σ ‖ N(0,
  prior_std(σ)² I))``. ``modular`` sums the other direction, ``E_q KL(p_θ ‖ q)``, and is no bound on
  a final error (the chain rule of KL(p ‖ q) averages over p_θ's marginals, not q's). A
  deterministic sampler (DPM-Solver++, UniPC, DDIM η = 0, Euler, Heun) has no step
  density: ``path_kl`` then scores DDPM's Gaussian step on the same levels, its stochastic
  counterpart, and the grid is transferred to the sampler, as AYS transfers the schedules it
  derives for the SDE to ODE solvers (the result says so under ``step``).
- Chen, Zhou et al. (2024), "On the Trajectory Regularity of ODE-based Diffusion Sampling" (GITS,
  ICML): for a deterministic solver the error that matters is the ODE's discretisation error, and
  the model's own trajectories show it. A teacher solves the probability-flow ODE dx̂/dσ =
  (x̂ − D(x̂, σ))/σ from the prior at σ_max through every candidate level (Heun, several substeps per
  interval); the cost of an interval is the mean L2 distance between one first-order (DDIM) step
  from the teacher's state at σ_i and the teacher's state at σ_j. The sum of these local errors
  along a grid bounds the global error where the flow does not expand distances, and the DP picks
  the grid — objective ``local``. Its start is free (on images too): starting at σ_k instead of
  σ_max pays the distance between the prior's draw there and the teacher's state (the same z).
  Multistep solvers (DPM-Solver++, UniPC) get the grid of the first-order step, transferred, as
  GITS does; it needs no density, so it works on images.
- On a mixture the quantity all of this stands in for — the final excess cross-entropy of the
  samples — is exact: objective ``xent`` starts from the best of the DP grid and every hand-made
  grid (any endpoints) and moves one level at a time, the end levels included (coordinate descent
  on the candidate set), while the 1 %-trimmed final excess cross-entropy of n samples with fixed
  noise falls; its cost is counted in sampling runs.

The family searched: grids that end at σ_min (the process's t = 0) with N − 1 steps between
candidate levels, then the final step to σ = 0 (which every grid in the family shares). On a
mixture the first level is free too and the path pays the prior's error there,
``KL(N(0, prior_std(σ)² I) ‖ q_σ)`` (exact, in the modular KL's direction; ``path_kl`` pays
``KL(q_σ ‖ N(0, prior_std(σ)² I))``, the chain rule's first term): starting lower saves steps but
starts further from the truth. On images, where that KL is unknown, grids start at σ_max (t = T −
1), as AYS's do (but for ``local``). Candidates: M levels log-uniform in σ (on a discrete VP process
snapped to its timesteps) together with the levels of the hand-made grids of the family (uniform-t
``linspace``, EDM-ρ, exponential σ, and with a free start ``leading`` and quadratic-t), so the DP
optimum is never worse than those on its own objective (tests check it). ``trailing`` spacing, which
stops short of σ_min, is compared by final quality only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm import tqdm

from .data.gmm import GaussianMixture
from .diagnostics.modular import kl_estimate, reverse_transition_log_prob, step_moments
from .errors import ErrpropError
from .grids import edm_rho, exponential, uniform_t
from .keys import KEY_BRIDGE, KEY_DATA, KEY_DATA_NOISE, KEY_START, KEY_START_DATA, KEY_STEP
from .noise import Noise
from .process import Process, VPProcess
from .streams import default_dtype, draw_data, reference_sets

#: Heun substeps per candidate interval of the ``local`` objective's teacher.
LOCAL_SUBSTEPS = 4

#: The objectives of :func:`optimize` (and of ``errprop grid optimize --objective``).
OBJECTIVES = ("modular", "path_kl", "klub", "local", "xent")


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
def path_kl_estimates(denoiser, data: GaussianMixture | torch.Tensor, levels: torch.Tensor,
                      step: str | Callable = "ddpm", options: dict | None = None, n: int = 500, seed: int = 0,
                      device: str | torch.device = "cpu",
                      given_x0: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, M) per-step path KL ``E_{x̂~q_σi} KL(q(x̂'|x̂) ‖ p_θ(x̂'|x̂))`` (nats) of one Gaussian step
    from ``levels[i]`` to ``levels[j]``, j > i, and its standard errors (module docstring).

    The pairs come from the forward process on draws shared by every (i, j) (common random
    numbers): x0 ~ data, x̂ = x0 + σ_i ε, x̂' = x0 + (σ_j²/σ_i²)(x̂ − x0) + σ_j √(1 − σ_j²/σ_i²) z, the
    Brownian bridge q(x̂'|x̂, x0), i.e. an exact draw of q(x̂'|x̂) given x̂. p_θ's mean and std come
    from the step itself (:func:`~errprop.diagnostics.modular.step_moments`), so the network runs
    once per level i: n · (M − 1) evaluations, as :func:`modular_costs`. The estimate is
    :func:`~errprop.diagnostics.modular.kl_estimate` with q as the sampling distribution (its
    control variate p_θ/q − 1 has mean 0 under q).

    With ``given_x0`` (the default for a data tensor, where q has no density) each term is Ho et
    al.'s, conditioned on x0: the closed-form KL of the Gaussians q(x̂'|x̂, x0) = N(x0 + c(x̂ − x0),
    σ_j²(1 − c) I), c = σ_j²/σ_i², and p_θ(x̂'|x̂), averaged over (x0, x̂). A path's sum then exceeds
    the marginal one by I(x0; x̂ at its last level) − I(x0; x̂ at its first) (module docstring): the
    same for every grid from σ_max to σ_min, so the DP picks the same grid, now on images."""
    m = len(levels)
    given_x0 = not isinstance(data, GaussianMixture) if given_x0 is None else given_x0
    dtype = default_dtype(denoiser)
    f64 = torch.float64
    x0 = draw_data(data, n, seed, KEY_DATA, f64, device)
    shape, d = x0.shape[1:], x0[0].numel()
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(*shape, dtype=f64)
    z = Noise.from_seed(seed, n, key=(KEY_BRIDGE,), device=device).randn(*shape, dtype=f64)
    cost = torch.full((m, m), math.inf, dtype=f64)
    stderr = torch.full((m, m), math.nan, dtype=f64)
    memo = _Memo(denoiser)
    for i in range(m - 1):
        s = float(levels[i])
        x = x0 + s * eps
        x_model = x.to(dtype)
        for j in range(i + 1, m):
            s_next = float(levels[j])
            c = s_next**2 / s**2
            mean_q, var_q = x0 + c * (x - x0), s_next**2 * (1 - c)
            mean, std = step_moments(step, memo, x_model, s, s_next, **(options or {}))
            mean, std = mean.to(f64), std.to(f64)
            if given_x0:
                var = std**2
                kl = 0.5 * ((var_q + (mean_q - mean) ** 2) / var - 1 + var.log() - math.log(var_q))
                kl = kl.reshape(n, -1).sum(1)
                cost[i, j] = kl.mean()
                stderr[i, j] = kl.std() / math.sqrt(n) if n > 1 else math.nan
                continue
            x_next = mean_q + math.sqrt(var_q) * z
            log_p = (-0.5 * ((x_next - mean) / std) ** 2 - std.log()).sum(1) - 0.5 * d * math.log(2 * math.pi)
            log_q = reverse_transition_log_prob(data, x, s, s_next, x_next)
            cost[i, j], stderr[i, j] = kl_estimate(log_q, log_p)
    return cost, stderr


def path_kl_costs(denoiser, data: GaussianMixture | torch.Tensor, levels: torch.Tensor,
                  step: str | Callable = "ddpm", options: dict | None = None, n: int = 500, seed: int = 0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """(M, M) per-step path KL of :func:`path_kl_estimates`, without the standard errors."""
    return path_kl_estimates(denoiser, data, levels, step, options, n=n, seed=seed, device=device)[0]


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


@torch.no_grad()
def local_costs(denoiser, process: Process, levels: torch.Tensor, shape: tuple[int, ...], n: int = 500,
                seed: int = 0, sub: int = LOCAL_SUBSTEPS, batch_size: int | None = None,
                device: str | torch.device = "cpu",
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, M) GITS-style local error (module docstring): the mean over n prior draws z of
    ‖DDIM step(x̂_i, σ_i → σ_j) − x̂_j‖₂, with x̂_k the teacher's probability-flow ODE solution at
    ``levels[k]`` from prior_std(σ_max)·z (Heun, ``sub`` substeps geometric in σ per candidate
    interval); and (M,) the error of starting at ``levels[k]`` instead, from prior_std(σ_k)·z (the
    same z, as a sampler starting there would): ‖prior_std(σ_k)·z − x̂_k‖₂, 0 at σ_max. ``shape``:
    one sample's shape. Network evaluations: n·(M − 1)·2·sub (the DDIM steps reuse the teacher's
    first call at each level); ``progress``: a bar over them (minutes on images)."""
    m = len(levels)
    dtype = default_dtype(denoiser)
    bs = batch_size or n

    def den(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.cat([denoiser(x[a:a + bs].to(dtype), sigma) for a in range(0, n, bs)]).to(torch.float64)

    z = Noise.from_seed(seed, n, key=(KEY_START,), device=device).randn(*shape, dtype=torch.float64)
    x = process.prior_std(float(levels[0])) * z
    teacher, at_level = [x], []  # the teacher's states, and D(x̂_k, σ_k) at each level but the last
    for k in tqdm(range(m - 1), desc="local error: teacher", unit="level", disable=not progress):
        hi, lo = float(levels[k]), float(levels[k + 1])
        sig = torch.exp(torch.linspace(math.log(hi), math.log(lo), sub + 1, dtype=torch.float64)).tolist()
        sig[0], sig[-1] = hi, lo  # exactly the candidates (exp∘log may round)
        for q, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            d0 = den(x, s)
            if q == 0:
                at_level.append(d0)
            d = (x - d0) / s  # Heun (EDM's second-order step), σ_next > 0 always
            x_euler = x + (s_next - s) * d
            x = x + (s_next - s) * 0.5 * (d + (x_euler - den(x_euler, s_next)) / s_next)
        teacher.append(x)
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    for i in range(m - 1):
        s, d0 = float(levels[i]), at_level[i]
        for j in range(i + 1, m):
            step = d0 + float(levels[j]) / s * (teacher[i] - d0)  # DDIM: exact for x̂ linear in σ
            cost[i, j] = (step - teacher[j]).reshape(n, -1).norm(dim=1).mean()
    start = torch.stack([(process.prior_std(float(s)) * z - x).reshape(n, -1).norm(dim=1).mean()
                         for s, x in zip(levels, teacher)])
    return cost, start


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
                seed: int = 0, q_first: bool = False) -> torch.Tensor:
    """(M,) error in nats of starting the sampler at σ from its prior N(0, prior_std(σ)² I) instead of
    the true marginal q_σ (exact density, Monte Carlo): KL(prior ‖ q_σ) over draws from the prior,
    the direction of the modular KL; with ``q_first`` KL(q_σ ‖ prior) over exact draws x0 + σ w of
    q_σ, the first term of the chain rule that makes ``path_kl`` a bound."""
    d = mixture.dim
    z = Noise.from_seed(seed, n, key=(KEY_START,)).randn(d, dtype=torch.float64)
    x0 = draw_data(mixture, n, seed, KEY_START_DATA, torch.float64) if q_first else None
    out = []
    for s in levels.tolist():
        std = process.prior_std(s)
        x = x0 + s * z if q_first else std * z
        w = x / std if q_first else z
        log_p = (-0.5 * w**2).sum(1) - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)
        log_q = mixture.log_prob(x, s).double()
        out.append(kl_estimate(log_q, log_p)[0] if q_first else float((log_p - log_q).mean()))
    return torch.tensor(out, dtype=torch.float64)


def with_zero(levels: torch.Tensor, path: list[int]) -> torch.Tensor:
    """The grid σ_{i_0} > … > σ_{i_k} > 0 of a path through ``levels``."""
    return torch.cat([levels[path], levels.new_zeros(1)])


def _check_steps(n_steps: int) -> None:
    if n_steps < 2:
        raise ErrpropError("optimal grid: need ≥ 2 steps (one step from σ_max is the whole grid)")


def dp_grid(cost: torch.Tensor, levels: torch.Tensor, n_steps: int,
            start_cost: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The grid of ``n_steps`` steps minimising the summed per-step cost (plus ``start_cost`` at
    its first level, which is then free), and that minimum."""
    _check_steps(n_steps)
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
             log: Callable[[str], None] = lambda s: None, progress: bool = False) -> dict:
    """The error-optimal grid of ``steps`` steps for a run and sampler (see the module docstring);
    ``objective`` None takes the one that fits them (:func:`default_objective`).

    Returns a JSON-ready dict: the grid (``sigmas``: its positive levels, the form
    ``sample.sigmas`` takes), the objective's value for it and for every hand-made grid of the
    family, the cost (network evaluations of the objective; sampling runs for ``xent``), for
    ``path_kl`` the step whose density it scored (``step``: the sampler's own, or DDPM's, transferred,
    for a sampler without a Gaussian step) and, with ``oracle`` on a mixture, the exact final excess
    cross-entropy of every grid.
    """
    from .builders import load_data, sampler_settings
    from .samplers import is_gaussian, is_stochastic, step_options

    _check_steps(steps)  # before the costs, which take minutes on images
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
                               "Gaussian-mixture run (exact density); on images use --objective klub "
                               "or path_kl")
    if objective == "local" and is_stochastic(sampler, opts):
        raise ErrpropError(f"--objective local measures an ODE's discretisation error; sampler {sampler!r} "
                           "is stochastic: use modular, path_kl, klub or xent")
    if objective == "modular" and not gaussian:
        raise ErrpropError(f"--objective modular needs a Gaussian step (ddpm, or ddim with sample.eta > 0); "
                           f"sampler {sampler!r} is deterministic: use --objective klub, path_kl (DDPM's "
                           "step on the same levels) or xent")
    # the prior's error is exact on a mixture, and the local error's start term is coupled to its
    # teacher on any data: there the DP may pick the start (``local`` computes its own start term)
    free = mixture is not None or objective == "local"
    made = hand_made(run.process, steps, free_start=free)
    starts_all = every_hand_made(run.process, steps) if objective == "xent" else made
    levels = candidates(run.process, m, list(starts_all.values()))
    start = None
    if mixture is not None and objective != "local":
        start = prior_costs(run.process, mixture, levels, n=n, seed=seed, q_first=objective == "path_kl")
    log(f"[grid] {len(levels)} candidate levels; objective {objective}")
    extra = {}
    if objective == "modular":
        cost = modular_costs(run.denoiser, mixture, levels, sampler, opts, n=n, seed=seed, device=device)
        evals = n * (len(levels) - 1)
    elif objective == "path_kl":
        step, step_opts = sampler, opts
        extra["step"] = sampler
        if not gaussian:  # no density: DDPM's Gaussian step on the same levels stands in
            step, step_opts = "ddpm", step_options("ddpm", steps, run.process, **user)
            why = ("deterministic" if not is_stochastic(sampler, opts)
                   else "stochastic but not Gaussian given x̂ alone")
            extra["step"] = f"ddpm (transferred: sampler is {why})"
        if mixture is None:
            extra["form"] = "given x0 (Ho et al.; same optimum from σ_max)"
        cost = path_kl_costs(run.denoiser, data, levels, step, step_opts, n=n, seed=seed, device=device)
        evals = n * (len(levels) - 1)
    elif objective == "local":
        extra["step"] = "ddim" if sampler == "ddim" else f"ddim (transferred: first-order step for {sampler})"
        cost, start = local_costs(run.denoiser, run.process, levels, tuple(run.shape), n=n, seed=seed,
                                  batch_size=500, device=device, progress=progress)
        evals = n * (len(levels) - 1) * 2 * LOCAL_SUBSTEPS
    else:
        cost = klub_costs(run.denoiser, data, levels, n=n, seed=seed, batch_size=500, device=device)
        evals = n * len(levels)
    grid, value = dp_grid(cost, levels, steps, start)
    out = {"objective": objective, "sampler": sampler, "steps": steps, "n": n, "seed": seed,
           "candidates": len(levels), "network_evaluations": evals, "sampling_runs": 0,
           "start": ("σ_max" if not free else "free (KL(q_σ ‖ prior) added)" if objective == "path_kl"
                     else "free (distance of the prior to the teacher added)" if objective == "local"
                     else "free (prior KL added)"), **extra,
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
