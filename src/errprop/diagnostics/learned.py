"""The learned part of each step's error, against an exact denoiser D* (docs/methods.md#learned-error).

With an exact denoiser D* — the ideal denoiser of the training set on images
(:class:`errprop.data.empirical.EmpiricalDenoiser`), the mixture itself on mixtures — a sampler's
error splits into what the sampler does wrong with the exact denoiser (discretization) and what
the model adds (learned). Two chains run on the same grid from the same prior start with the same
injected noise (per-sample streams):

- ``C``: the model's denoiser D_θ (what a user samples);
- ``A``: the exact denoiser D* (the sampler's own error: discretization, plus the start mismatch
  E_I, negligible when σ_max is large).

Per step j (σ_j → σ_{j+1}) the **learned error** ``E‖D_θ(x̂, σ_j) − D*(x̂, σ_j)‖²`` is taken at the
states x̂ the model's own chain C visits (the denoised estimate the sampler used — after its x̂0
clip for DDPM). Per grid point, with √MMD² on the scaled states x_t = s(σ) x̂ against
forward-noised data q_σ (one kernel bandwidth per point, so √MMD² is a metric):

- ``total = d(C, q)``, ``discretization = d(A, q)``, ``learned_distance = d(C, A)``, and the
  ``floor = d(q, q')`` between two data sets of the same n. At the last grid point these are DS's
  terms (Wang et al., NeurIPS 2024): E_S = d(C, A) and E_I + E_D = d(A, data), with
  ``d(C, data) ≤ (E_I + E_D) + E_S`` by the triangle inequality;
- ``deviation``: the paired RMS distance ‖x_C − x_A‖ between the chains, whose growth per step says
  where the model's error enters (:func:`entry_range`).

The final terms use the unbiased MMD² (:class:`~.kernel_sets.KernelSets`), whose floor is 0 up to
sampling noise (the floor reported is that noise); the share of the final error that is
discretization is ``MMD²(A, q)/MMD²(C, q)`` (above 1 when the exact denoiser's chain is further
from the data than the model's). Intervals are 90 % percentile bootstraps over chains (C and A
resampled together: they are paired) and data samples. The per-point curves are the biased
√MMD² with its floor, as the cumulative error.

D* memorises at small σ: :func:`memorisation` measures, per σ, how close D*'s answers to noised
*held-out* images are to the training set compared with fresh images, and so where the learned
error is the model's error rather than the model's generalisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data.empirical import EmpiricalDenoiser
from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..generate import run_chains
from ..keys import KEY_DATA, KEY_DATA_NOISE, KEY_FLOOR, KEY_FLOOR_NOISE
from ..noise import Noise
from ..process import Process
from ..samplers import Denoise
from ..streams import default_dtype, draw_data
from ._util import data_dim, grid_fields, to_space
from .cumulative import record_points
from .kernel_sets import KernelSets, mean_sq_distance
from .modular import step_name

#: D* "memorises" at σ when its answers to noised held-out images sit closer to the training set
#: than this fraction of a fresh held-out image's distance to it.
MEMORISATION_RATIO = 0.5


def _interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def _root(v: float) -> float:
    """√MMD², 0 where the unbiased estimate is below 0 (a distance within sampling noise)."""
    return math.sqrt(max(v, 0.0))


def _final_terms(ks: KernelSets, n_boot: int, seed: int) -> dict:
    """DS's terms at the end of the chains with bootstrap intervals (90 %)."""
    n, nq = ks.size("C"), ks.size("q")

    def terms(ic=None, iq=None, iff=None) -> dict[str, float]:
        total = ks.mmd2("C", "q", ic, iq, unbiased=True)
        disc = ks.mmd2("A", "q", ic, iq, unbiased=True)
        floor = ks.mmd2("q", "f", iq, iff, unbiased=True)
        share = disc / total if total > 0 else float("nan")
        return {"total": _root(total), "E_D": _root(disc),
                "E_S": _root(ks.mmd2("C", "A", ic, ic, unbiased=True, paired=True)),
                "floor": _root(floor), "discretization_share": share}

    point = terms()
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        r = terms(rng.integers(0, n, n), rng.integers(0, nq, nq), rng.integers(0, nq, nq))
        for k, v in r.items():
            boot[k].append(v)
    out = {}
    for k, v in point.items():
        lo, hi = _interval(np.asarray(boot[k], dtype=float))
        out[k] = {"value": v, "lo": lo, "hi": hi}
    return out


def entry_range(sigmas: Sequence[float], deviation: Sequence[float], share: float = 0.5) -> dict:
    """Where the error enters: the fewest intervals between recorded grid points whose growth of
    the chains' deviation makes up ``share`` of the total growth (positive increments only).

    Returns ``{"sigma_hi", "sigma_lo", "intervals": [[σ_from, σ_to], ...], "share"}``; the σ range
    spans the chosen intervals (σ_lo may be 0: the last step).
    """
    dev = np.asarray(deviation, dtype=float)
    inc = np.clip(np.diff(dev), 0, None)
    inc[~np.isfinite(inc)] = 0
    if inc.sum() <= 0:
        return {"sigma_hi": None, "sigma_lo": None, "intervals": [], "share": share}
    order = np.argsort(-inc)
    chosen, got = [], 0.0
    for i in order:
        chosen.append(int(i))
        got += inc[i]
        if got >= share * inc.sum():
            break
    chosen.sort()
    s = [float(v) for v in sigmas]
    return {"sigma_hi": max(s[i] for i in chosen), "sigma_lo": min(s[i + 1] for i in chosen),
            "intervals": [[s[i], s[i + 1]] for i in chosen], "share": float(got / inc.sum())}


@torch.no_grad()
def learned_split(
    denoiser: Denoise,
    exact: Denoise,
    process: Process,
    data: GaussianMixture | torch.Tensor,
    sigmas: torch.Tensor,
    *,
    step: str | Callable = "ddim",
    options: dict | None = None,
    n: int = 256,
    seed: int = 0,
    points: int | Sequence[int] | None = None,
    space: str = "scaled",
    n_boot: int = 500,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """The learned error per step and the discretization/learned split (module docstring).

    Args:
        denoiser: the model D_θ; ``exact``: the exact denoiser D* of ``data``'s distribution.
        data: the distribution D* is exact for: the training tensor (N, ...) of an
            :class:`~errprop.data.empirical.EmpiricalDenoiser` (needs N ≥ 2n), or the mixture.
        sigmas, step, options: the sampling grid and the sampler step with its keyword options.
        n: chains (and data samples per reference set).
        points: grid points at which the chains are compared (default all; 21 for > 50 steps).
        n_boot: bootstrap resamples of the final terms' intervals.

    Returns:
        ``{"measure": "learned_split", "step_index", "step_sigma", "step_t", "learned",
        "learned_stderr", "learned_per_dim", "learned_eps", "index", "sigma", "t", "total",
        "discretization", "learned_distance", "floor", "deviation", "final": {total, E_D, E_S,
        floor, discretization_share: {value, lo, hi}}, "enters", "n", "seed", "step", "steps",
        "space"}``. Per-step lists (``step_*``, ``learned*``) have one value per step j; per-point
        lists one per recorded grid point ``index``.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    m = len(sigmas) - 1
    shape = data_dim(data)
    d = math.prod(shape)
    record = record_points(len(sigmas), 21 if points is None and m > 50 else points)
    if record[-1] != m:
        record.append(m)
    per_step: list[list[torch.Tensor]] = [[] for _ in range(m)]
    # a churned step (EDM's γ > 0) denoises at a raised σ̂, not at the state it reports: then the
    # model is called again at (x̂, σ); otherwise the sampler's own estimate serves
    churned = bool((options or {}).get("gamma", 0) > 0)

    def collect(info) -> None:
        # the model's denoised estimate at its own state against D* at the same state
        x, s = info["x"], info["sigma"]
        d_theta = denoiser(x, s) if churned else info["denoised"]
        diff = d_theta.double() - exact(x.double(), s).double()
        per_step[info["i"]].append(diff.reshape(len(x), -1).pow(2).sum(1).cpu())

    model_dtype = dtype or default_dtype(denoiser)
    chain_c = run_chains(denoiser, process, sigmas, n, shape, seed=seed, step=step, options=options,
                         record=record, batch_size=batch_size, dtype=model_dtype, device=device,
                         callback=collect)
    chain_a = run_chains(exact, process, sigmas, n, shape, seed=seed, step=step, options=options,
                         record=record, batch_size=batch_size, dtype=torch.float64, device=device)
    learned = [torch.cat(v) for v in per_step]
    x0 = draw_data(data, n, seed, KEY_DATA).double()
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,)).randn(*shape, dtype=torch.float64)
    x0f = draw_data(data, n, seed, KEY_FLOOR).double()
    epsf = Noise.from_seed(seed, n, key=(KEY_FLOOR_NOISE,)).randn(*shape, dtype=torch.float64)
    curves: dict[str, list[float]] = {k: [] for k in (
        "total", "discretization", "learned_distance", "floor", "deviation")}
    final = None
    for j in record:
        s = float(sigmas[j])
        sets = {name: to_space(process, x.double(), s, space) for name, x in (
            ("C", chain_c[j]), ("A", chain_a[j]), ("q", x0 + s * eps), ("f", x0f + s * epsf))}
        ks = KernelSets(sets, mean_sq_distance(sets["q"]))
        for key, (a, b) in {"total": ("C", "q"), "discretization": ("A", "q"),
                            "learned_distance": ("C", "A"), "floor": ("q", "f")}.items():
            curves[key].append(math.sqrt(max(ks.mmd2(a, b), 0)))
        dev = (sets["C"] - sets["A"]).flatten(1).pow(2).sum(1)
        curves["deviation"].append(float(dev.mean().sqrt()))
        if j == m:
            final = _final_terms(ks, n_boot, seed)
            final["path"] = _path_interval(dev.sqrt().numpy(), n_boot, seed)
    steps = grid_fields(process, sigmas[:-1])
    grid = grid_fields(process, sigmas[record])
    sig = [float(v) for v in sigmas[:-1]]
    return {
        "measure": "learned_split", "step_index": list(range(m)), "step_sigma": steps["sigma"],
        "step_t": steps["t"],
        "learned": [float(v.mean()) for v in learned],
        "learned_stderr": [float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
                           for v in learned],
        "learned_per_dim": [float(v.mean()) / d for v in learned],
        "learned_eps": [float(v.mean()) / s**2 for v, s in zip(learned, sig)],
        "index": record, "sigma": grid["sigma"], "t": grid["t"], **curves, "final": final,
        "enters": entry_range(grid["sigma"], curves["deviation"]),
        "n": n, "seed": seed, "step": step_name(step), "steps": m, "space": space,
        "n_boot": n_boot,
    }


def _path_interval(dist: np.ndarray, n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    boot = np.array([dist[rng.integers(0, len(dist), len(dist))].mean() for _ in range(n_boot)])
    lo, hi = _interval(boot)
    return {"value": float(dist.mean()), "lo": lo, "hi": hi}


def memorisation_levels(sigmas: torch.Tensor, k: int = 12) -> list[float]:
    """At most ``k`` of a grid's σ > 0, spread evenly in log σ (all of them when there are fewer)."""
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    s = s[s > 0].sort(descending=True).values
    if len(s) <= k:
        return s.tolist()
    pick = np.unique(np.round(np.linspace(0, len(s) - 1, k)).astype(int))
    return s[pick].tolist()


def memorisation_grid(process: Process, sigmas: torch.Tensor, k: int = 16) -> list[float]:
    """The levels at which :func:`memorisation` is measured for a sampling grid: its σ > 0 and 12
    log-spaced ones over the process's whole range (a grid of few steps stops far above σ_min,
    where D* memorises), thinned to at most ``k``."""
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    span = torch.logspace(math.log10(process.sigma_min), math.log10(process.sigma_max), 12,
                          dtype=torch.float64)
    return memorisation_levels(torch.unique(torch.cat([s[s > 0], span])), k)


@torch.no_grad()
def memorisation(
    exact: EmpiricalDenoiser,
    heldout: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    *,
    model: Denoise | None = None,
    n: int = 256,
    seed: int = 0,
    threshold: float = MEMORISATION_RATIO,
    device: str | torch.device = "cpu",
) -> dict:
    """Where D* stops standing for the data distribution: per σ, its answers to noised held-out
    images ``x̂ = x_test + σ ε``, compared with the training set.

    Per σ: ``ratio = mean_i NN_train(D*(x̂_i)) / mean_i NN_train(x_test,i)`` — the distance of D*'s
    answer to its nearest training image over a fresh image's (≈ 1 or more where D* generalises or
    blurs, → 0 where it returns training images); ``w_max`` (mean largest weight: 1 when one
    training image takes all of it) and ``ess`` (effective number of training images averaged);
    the held-out denoising error ``E‖D*(x̂) − x_test‖²`` and, with ``model``, the model's
    ``E‖D_θ(x̂) − x_test‖²`` and its own ratio. ``memorises`` marks ratio < ``threshold``;
    ``reference_valid_from`` is the smallest σ from which up D* does not memorise (None: nowhere).

    Args:
        exact: an :class:`~errprop.data.empirical.EmpiricalDenoiser` of the training set.
        heldout: (N, ...) images the training set does not hold (the test split).
        sigmas: the levels to measure (a grid is thinned by :func:`memorisation_levels`).
    """
    if not hasattr(exact, "nearest") or not hasattr(exact, "denoise_with_weights"):
        raise ErrpropError("memorisation: needs the ideal denoiser of a point set "
                           "(errprop.data.empirical.EmpiricalDenoiser)")
    levels = memorisation_levels(torch.as_tensor(sigmas, dtype=torch.float64))
    xt = draw_data(heldout, n, seed, KEY_DATA, torch.float64, device)
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,), device=device).randn(
        *xt.shape[1:], dtype=torch.float64)
    base = float(exact.nearest(xt)[0].mean())
    out: dict[str, list] = {k: [] for k in ("ratio", "w_max", "ess", "mse_exact", "mse_model",
                                            "ratio_model", "memorises")}
    for s in levels:
        x = xt + s * eps
        dstar, w = exact.denoise_with_weights(x, s)
        ratio = float(exact.nearest(dstar)[0].mean()) / base
        out["ratio"].append(ratio)
        out["w_max"].append(float(w["w_max"].mean()))
        out["ess"].append(float(w["ess"].mean()))
        out["mse_exact"].append(float((dstar - xt).flatten(1).pow(2).sum(1).mean()))
        out["memorises"].append(bool(ratio < threshold))
        if model is not None:
            dm = model(x.float(), s).double()
            out["mse_model"].append(float((dm - xt).flatten(1).pow(2).sum(1).mean()))
            out["ratio_model"].append(float(exact.nearest(dm)[0].mean()) / base)
        else:
            out["mse_model"].append(None)
            out["ratio_model"].append(None)
    valid = None
    for s, mem in zip(levels, out["memorises"]):  # levels descend: stop at the first memorising
        if mem:
            break
        valid = s
    return {"measure": "memorisation", "sigma": levels, **out, "heldout_nn_train": base,
            "threshold": threshold, "reference_valid_from": valid, "n": n, "seed": seed}
