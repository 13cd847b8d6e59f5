"""Cumulative error per step (EP's E^cumu, docs/methods.md#cumulative-error) and the amplification factor μ_t.

One model chain from the prior runs the whole grid once and records its samples at every grid
point through the sampler callback (docs/benchmarks.md#b5-diagnostics-cost: one sampling run). At each
recorded σ_j the chain's samples are compared with forward-noised data ``x0 + σ_j n`` at the same
σ_j:

- ``mmd2``: biased MMD² with EP's multi-bandwidth kernel (:func:`errprop.metrics.mmd.mmd2`);
- ``swd``: sliced Wasserstein-2 (:func:`errprop.metrics.swd.sliced_wasserstein`), fixed directions;
- mixtures only, in nats: ``xent`` = ``E_{p_θ}[−log q_σ] − E_{q_σ}[−log q_σ]`` (excess
  cross-entropy, exact densities) and ``kl`` = ``E_{p_θ}[−log q_σ] − Ĥ(p_θ)``, an estimate of
  KL(p_θ,σ ‖ q_σ) with the Kozachenko–Leonenko k-NN entropy (biased at small n and in high
  dimension: its floor — the same estimate on a data set — shows by how much).

Every value comes with its **floor**: the same metric between two independent data sets at the same
σ and the same n, the value a perfect chain would get up to sampling noise.

Spaces: the chain runs in x̂ = x0 + σ n, where the VP prior is N(0, (1 + σ_max²) I). Samples are
compared in ``space="scaled"`` (default: x_t = s(σ) x̂, the model's input space, where the VP prior
is N(0, I) and data at σ is ``s (x0 + σ n)``, as in EP) or ``"unscaled"`` (x̂). MMD² with its
data-driven bandwidth, ``xent`` and ``kl`` are the same in both; ``swd`` scales with s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..generate import run_chains
from ..keys import KEY_DATA, KEY_DATA_NOISE, KEY_FLOOR, KEY_FLOOR_NOISE
from ..metrics.mmd import mmd2
from ..metrics.swd import sliced_wasserstein
from ..metrics.xent import excess_cross_entropy
from ..noise import Noise
from ..process import Process
from ..samplers import Denoise, nfe
from ..streams import default_dtype, draw_data
from ._util import data_dim, grid_fields, to_space
from .modular import step_name

MIXTURE_METRICS = ("mmd2", "swd", "xent", "kl")
SAMPLE_METRICS = ("mmd2", "swd")


class _CountingDenoiser:
    """Wraps a denoiser and counts per-sample evaluations (the cost of a chain)."""

    def __init__(self, denoiser: Denoise) -> None:
        self.denoiser, self.evaluations = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.evaluations += x.shape[0]
        return self.denoiser(x, sigma)


def record_points(n_points: int, points: int | Sequence[int] | None) -> list[int]:
    """Grid-point indices to record: all (None), ``k`` evenly spaced ones including the first and
    the last (an int), or an explicit list."""
    if points is None:
        return list(range(n_points))
    if isinstance(points, int):
        if points < 1:
            raise ErrpropError(f"cumulative error: points must be ≥ 1, got {points}")
        return sorted({int(round(v)) for v in np.linspace(0, n_points - 1, min(points, n_points))})
    idx = sorted({int(p) for p in points})
    if idx and not (0 <= idx[0] and idx[-1] < n_points):
        raise ErrpropError(f"cumulative error: points {idx} outside the grid's 0..{n_points - 1}")
    return idx


def knn_entropy(x: torch.Tensor, k: int = 3, chunk: int = 1024) -> float:
    """Kozachenko–Leonenko entropy estimate (nats) of samples x (n, d):
    ``ψ(n) − ψ(k) + log V_d + (d/n) Σ_i log r_i``, r_i the distance to the k-th nearest neighbour,
    V_d the volume of the unit d-ball."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    n, d = x.shape
    if n <= k:
        raise ErrpropError(f"knn_entropy: need more than k = {k} samples, got {n}")
    logr = []
    for a in range(0, n, chunk):
        dist = torch.cdist(x[a:a + chunk], x)
        dist[torch.arange(dist.shape[0]), torch.arange(a, a + dist.shape[0])] = float("inf")
        logr.append(dist.kthvalue(k, dim=1).values.clamp_min(1e-300).log())
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    digamma = torch.special.digamma
    psi = float(digamma(torch.tensor(float(n))) - digamma(torch.tensor(float(k))))
    return psi + log_vd + d * float(torch.cat(logr).mean())


def sample_distances(x: torch.Tensor, y: torch.Tensor, metrics: Sequence[str], *,
                     mixture: GaussianMixture | None = None, sigma: float = 0.0,
                     swd_seed: int = 0, bandwidth: float | None = None,
                     ref_nll: torch.Tensor | None = None) -> dict[str, float]:
    """The requested distances between samples x (model) and y (reference), both (n, ...).

    ``mmd2`` and ``swd`` compare the tensors as given; ``xent`` and ``kl`` read x and y as x̂ at
    ``sigma`` of ``mixture`` (``ref_nll``: −log q_σ(y), precomputed).
    """
    out: dict[str, float] = {}
    for m in metrics:
        if m == "mmd2":
            out[m] = float(mmd2(x.flatten(1).float(), y.flatten(1).float(), bandwidth=bandwidth))
        elif m == "swd":
            g = torch.Generator().manual_seed(swd_seed)
            out[m] = float(sliced_wasserstein(x.flatten(1).float(), y.flatten(1).float(),
                                              generator=g))
        elif m in ("xent", "kl"):
            if mixture is None:
                raise ErrpropError(
                    f"metric {m!r} needs a Gaussian-mixture data set (exact density)")
            nll = -mixture.log_prob(x.flatten(1).double(), sigma)
            if m == "xent":
                ref = ref_nll if ref_nll is not None else -mixture.log_prob(
                    y.flatten(1).double(), sigma)
                out[m] = excess_cross_entropy(nll, ref)["mean"]
            else:
                out[m] = float(nll.mean()) - knn_entropy(x)
        else:
            raise ErrpropError(f"unknown metric {m!r}; choose from {MIXTURE_METRICS}")
    return out


@torch.no_grad()
def cumulative_error(
    denoiser: Denoise,
    process: Process,
    data: GaussianMixture | torch.Tensor,
    sigmas: torch.Tensor,
    *,
    step: str | Callable = "ddpm",
    options: dict | None = None,
    n: int = 1000,
    seed: int = 0,
    points: int | Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    space: str = "scaled",
    floor: bool = True,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """The cumulative-error profile of a sampler: one chain from the prior, compared with
    forward-noised data at each recorded grid point (module docstring).

    Args:
        denoiser, process: the model and its forward process.
        data: a Gaussian mixture (exact draws and densities) or a tensor (N, ...) of x0 samples
            (needs ``2 n`` of them with ``floor``).
        sigmas: the sampling grid σ_0 > … > σ_m = 0.
        step, options: the sampler step (name or function) and its keyword options.
        n: chains, and data samples per reference set.
        points: grid points to record (None: all m + 1; an int k: k evenly spaced ones).
        metrics: default ``mmd2, swd, xent, kl`` on mixtures, ``mmd2, swd`` on samples.
        space: ``scaled`` (x_t, default) or ``unscaled`` (x̂) for mmd2 and swd.

    Returns:
        ``{"measure", "index", "sigma", "t", <metric>: [...], <metric>_floor: [...], "n", "seed",
        "step", "space", "denoiser_evaluations", "sampling_run_evaluations"}``; index j is the
        grid point after j steps. ``denoiser_evaluations`` counts the chain's per-sample
        denoiser calls; ``sampling_run_evaluations`` is n × the sampler's NFE for the grid.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    mixture = data if isinstance(data, GaussianMixture) else None
    metrics = tuple(metrics or (MIXTURE_METRICS if mixture is not None else SAMPLE_METRICS))
    if mixture is None and any(m in ("xent", "kl") for m in metrics):
        raise ErrpropError("cumulative error: xent and kl need a Gaussian-mixture data set")
    dtype = dtype or default_dtype(denoiser)
    shape = data_dim(data)
    record = record_points(len(sigmas), points)
    counted = _CountingDenoiser(denoiser)
    chain = run_chains(counted, process, sigmas, n, shape, seed=seed, step=step, options=options,
                       record=record, batch_size=batch_size, dtype=dtype, device=device)
    x0 = draw_data(data, n, seed, KEY_DATA).double()
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,)).randn(*shape, dtype=torch.float64)
    if floor:
        x0f = draw_data(data, n, seed, KEY_FLOOR).double()
        epsf = Noise.from_seed(seed, n, key=(KEY_FLOOR_NOISE,)).randn(*shape, dtype=torch.float64)
    values: dict[str, list] = {m: [] for m in metrics}
    values.update({f"{m}_floor": [] for m in metrics} if floor else {})
    for j in record:
        s = float(sigmas[j])
        ref = x0 + s * eps
        ref_nll = (-mixture.log_prob(ref.flatten(1), s)
                   if mixture is not None and "xent" in metrics else None)

        def dist(x, s=s, j=j, ref=ref, ref_nll=ref_nll):
            res = {}
            for m in metrics:
                a, b = (x, ref) if m in ("xent", "kl") else (
                    to_space(process, x.double(), s, space), to_space(process, ref, s, space))
                res.update(sample_distances(a, b, (m,), mixture=mixture, sigma=s,
                                            swd_seed=seed + j, ref_nll=ref_nll))
            return res

        for m, v in dist(chain[j]).items():
            values[m].append(v)
        if floor:
            for m, v in dist(x0f + s * epsf).items():
                values[f"{m}_floor"].append(v)
    grid = grid_fields(process, sigmas[record])
    return {
        "measure": "cumulative", "index": record, "sigma": grid["sigma"], "t": grid["t"], **values,
        "n": n, "seed": seed, "step": step_name(step), "space": space,
        "steps": len(sigmas) - 1,
        "denoiser_evaluations": counted.evaluations,
        "sampling_run_evaluations": n * nfe(step, len(sigmas) - 1),
    }


def amplification(cumulative: Sequence[float], modular: Sequence[float], *, n_boot: int = 1000,
                  seed: int = 0) -> dict:
    """Fit EP's propagation equation ``E^cumu_{t−1} − E^mod_t ≈ μ_t E^cumu_t`` on a grid.

    Args:
        cumulative: E^cumu at the grid points j = 0..m (σ_0 = σ_max first), length m + 1.
        modular: E^mod of the steps j → j + 1, length m (None/NaN where undefined, e.g. the last
            step to σ = 0). Use the same units for both (nats: modular KL and cumulative ``kl``).

    Returns:
        ``{"mu_per_step": [(C_{j+1} − M_j)/C_j or None], "mu": least-squares μ over all valid
        steps (Σ C_j (C_{j+1} − M_j) / Σ C_j²), "mu_std", "mu_q05", "mu_q95": its spread over
        ``n_boot`` bootstrap resamples of the steps, "steps_used"}``. μ > 1 means errors are
        amplified from step to step; EP's theory assumes μ_t ≥ 1.
    """
    c = np.array([np.nan if v is None else v for v in cumulative], dtype=float)
    m = np.array([np.nan if v is None else v for v in modular], dtype=float)
    if len(c) != len(m) + 1:
        raise ErrpropError(
            "amplification: need m + 1 cumulative values for m modular ones, "
            f"got {len(c)} and {len(m)}")
    cj, cn = c[:-1], c[1:]
    ok = np.isfinite(cj) & np.isfinite(cn) & np.isfinite(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(ok & (cj != 0), (cn - m) / cj, np.nan)
    a, b = cj[ok], (cn - m)[ok]
    nan = float("nan")
    out = {"mu_per_step": per, "steps_used": int(ok.sum()), "mu": nan, "mu_std": nan,
           "mu_q05": nan, "mu_q95": nan, "n_boot": n_boot}
    if ok.sum() == 0 or not (a**2).sum() > 0:
        return out
    out["mu"] = float((a * b).sum() / (a**2).sum())
    if n_boot > 0 and ok.sum() > 1:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(a), size=(n_boot, len(a)))
        den = (a[idx] ** 2).sum(1)
        boot = np.where(den > 0, (a[idx] * b[idx]).sum(1) / np.where(den > 0, den, 1), np.nan)
        boot = boot[np.isfinite(boot)]
        out.update(mu_std=float(boot.std()), mu_q05=float(np.quantile(boot, 0.05)),
                   mu_q95=float(np.quantile(boot, 0.95)))
    return out
