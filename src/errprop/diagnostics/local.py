"""Local error per step of a deterministic solver, split into discretization and learned parts.

On a Gaussian mixture the probability-flow ODE ``dx̂/dσ = (x̂ − D*(x̂, σ))/σ`` is known exactly (D*
the mixture's exact denoiser). The model's own chain runs along the grid; at every step j, from
the chain's state x̂_j at σ_j, three states at σ_{j+1} are compared:

- ``M``: the solver's step with the model (what the chain does);
- ``S``: the same solver step with D* in place of the model, from the same state (for a
  multistep solver also with the same history: D* at the same past states of the model's chain);
- ``R``: the exact probability-flow step from x̂_j, integrated with D* (Heun on a geometric
  sub-grid of [σ_{j+1}, σ_j], Richardson-extrapolated, :func:`probability_flow_step`; into σ = 0:
  down to 1e-4 σ_j, then EDM's final Euler step, as the samplers end).

Then, per step (mean Euclidean norm over the n chains, with its standard error):

- ``local = ‖M − R‖``: the step's local error;
- ``discretization = ‖S − R‖``: the solver's truncation error alone (DS's E_D for one step), which
  for a solver of order p falls as h^{p+1} with the step h;
- ``learned = ‖M − S‖``: what the learned denoiser adds (DS's E_S for one step); 0 for D* itself,
  since M and S are then the same computation.

For UniPC the chain's state x̂_j is the predictor's; its step first corrects x̂_j (with the new
evaluation) and then predicts, so its local error here is that of (correct, predict) from the
predicted state.

The triangle inequality gives ``local ≤ discretization + learned`` per sample. Stochastic steps
have no local ODE error (their per-step error is the modular KL, :mod:`.modular`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..clipping import apply_clip
from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..generate import run_chains
from ..process import Process
from ..samplers import Denoise, get_step, is_stochastic, sample
from ..streams import default_dtype
from ._util import grid_fields
from .modular import step_name


def probability_flow_step(mixture: GaussianMixture, x: torch.Tensor, sigma: float, sigma_next: float,
                          substeps: int = 64) -> torch.Tensor:
    """The exact probability-flow ODE step σ → σ' from x̂, the state R of the module docstring
    (in x's dtype; use float64 for a reference).

    Heun on a geometric sub-grid of ``substeps`` and of ``2 substeps`` steps, combined by Richardson
    extrapolation ``H_2k + (H_2k − H_k)/3``, which cancels Heun's h² term: on the ring of 8 from
    σ = 2 to 0.5 the error is ~1e-7 at 64 substeps (plain Heun: ~1e-4, the modes are narrow).
    """
    def heun(k: int) -> torch.Tensor:
        end = sigma_next if sigma_next > 0 else 1e-4 * sigma
        levels = sigma * (end / sigma) ** (torch.arange(k + 1, dtype=torch.float64) / k)
        if sigma_next == 0:
            levels = torch.cat([levels, levels.new_zeros(1)])
        return sample(mixture, x, levels, _NoNoise(), "heun")

    coarse, fine = heun(substeps), heun(2 * substeps)
    return fine + (fine - coarse) / 3


class _NoNoise:
    """Deterministic steps draw no noise; drawing is a bug here."""

    def randn(self, *shape, dtype=torch.float32):
        raise ErrpropError("local error: the solver step drew noise; it needs a deterministic sampler")


class _Recording:
    """A denoiser that remembers its last output (D* at the chain's state, for the history)."""

    def __init__(self, denoiser: Denoise) -> None:
        self.denoiser, self.last = denoiser, None

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.last = self.denoiser(x, sigma)
        return self.last


class _PairedStep:
    """A step wrapper the one loop treats as a multistep solver: it runs the model's step (with
    the loop's state) and, from the same state, the exact denoiser's step (with a shadow state
    whose history holds D* at the model chain's past states), and the exact flow step."""

    multistep = True

    def __init__(self, step: Callable, registered_multistep: bool, mixture: GaussianMixture,
                 substeps: int) -> None:
        self.step, self.inner_multistep = step, registered_multistep
        self.exact = _Recording(mixture)
        self.mixture, self.substeps = mixture, substeps
        self.exact_history: list[torch.Tensor] = []
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, denoiser, x, sigma, sigma_next, noise, *, state, **options):
        if not self.inner_multistep:
            x_model, d = self.step(denoiser, x, sigma, sigma_next, noise, **options)
            x_exact, _ = self.step(self.exact, x, sigma, sigma_next, noise, **options)
        else:
            # the shadow: the model's solver state with D* in place of each past D (same σ, same
            # past states); copied before the model's step changes it
            shadow = {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
            past = shadow.get("history", [])
            exact = self.exact_history[len(self.exact_history) - len(past):]
            shadow["history"] = [(s, d) for (s, _), d in zip(past, exact)]
            x_model, d = self.step(denoiser, x, sigma, sigma_next, noise, state=state, **options)
            x_exact, _ = self.step(self.exact, x, sigma, sigma_next, noise, state=shadow, **options)
            clip = options.get("clip")
            self.exact_history.append(self.exact.last if clip is None else _clipped(self.exact.last, clip))
        ref = probability_flow_step(self.mixture, x.double(), sigma, sigma_next, self.substeps)
        self.rows.append(tuple((a.double() - b.double()).flatten(1).norm(dim=1)
                               for a, b in ((x_model, ref), (x_exact, ref), (x_model, x_exact))))
        return x_model, d


def _clipped(d: torch.Tensor, clip) -> torch.Tensor:
    return apply_clip(d, clip)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0


@torch.no_grad()
def local_error(
    denoiser: Denoise,
    mixture: GaussianMixture,
    process: Process,
    sigmas: Sequence[float] | torch.Tensor,
    *,
    step: str | Callable = "heun",
    options: dict | None = None,
    n: int = 500,
    seed: int = 0,
    substeps: int = 64,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """The local error per step of a deterministic solver and its split (module docstring).

    Args:
        denoiser: the model D(x̂, σ); mixture: the data's Gaussian mixture (its exact denoiser is
            the oracle); process: gives the prior at σ_0.
        sigmas: the grid (σ_0 > … > σ_m, usually ending at 0).
        step, options: the solver (name or registered step function) and its keyword options.
        n, seed: chains (the streams of :func:`errprop.generate.generate`: chain i is sample i).
        substeps: Heun steps of each exact flow step (with twice as many for the extrapolation;
            its error must stay below the solver's).
        dtype: of the chains; default the denoiser's (float64 for the mixture, whose rounding is
            then far below the discretization part); the exact flow runs in float64.

    Returns:
        ``{"measure": "local_error", "sigma", "t", "index", "local", "discretization", "learned"}``
        with ``<part>_stderr`` for each part (lists over the m steps), and ``"sampler", "n",
        "seed", "substeps"``.
    """
    if not isinstance(mixture, GaussianMixture):
        raise ErrpropError("local error: needs a Gaussian-mixture data set (the exact flow)")
    options = dict(options or {})
    if is_stochastic(step, options):
        raise ErrpropError(f"local error: sampler {step_name(step)!r} with these options is stochastic, "
                           "so it has no local ODE error; use the modular KL (diagnose --what modular)")
    from ..samplers import _entry

    fn = get_step(step) if isinstance(step, str) else step
    entry = _entry(step)
    paired = _PairedStep(fn, entry is not None and entry.multistep, mixture, substeps)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    run_chains(denoiser, process, sigmas, n, (mixture.dim,), seed=seed, step=paired, options=options,
               record=[len(sigmas) - 1], dtype=dtype or default_dtype(denoiser), device=device)
    out: dict = {"measure": "local_error", **grid_fields(process, sigmas),
                 "index": list(range(len(sigmas) - 1))}
    for k, name in enumerate(("local", "discretization", "learned")):
        per_step = [_mean_se(row[k]) for row in paired.rows]
        out[name] = [m for m, _ in per_step]
        out[f"{name}_stderr"] = [s for _, s in per_step]
    return {**out, "sampler": step_name(step), "n": n, "seed": seed, "substeps": substeps}
