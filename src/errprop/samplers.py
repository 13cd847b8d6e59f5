"""Samplers: one pure step function per algorithm and one shared loop.

Everything runs in the unscaled space ``x̂ = x0 + σ n`` (see :mod:`errprop.process`), where the
DDPM/DDIM updates of a VP model and the probability-flow ODE of EDM are written in σ alone:

- DDIM with η (Song et al. 2021), eq. 12, rewritten in σ: with
  ``σ_up = η σ' √(σ² − σ'²)/σ`` and ``σ_down = √(σ'² − σ_up²)``,
  ``x̂' = D + σ_down (x̂ − D)/σ + σ_up z``. η = 0 is Euler on the ODE ``dx̂/dσ = (x̂ − D)/σ``.
- DDPM ancestral (Ho et al. 2020): the mean of q(x̂' | x̂, x0 = D) — the Brownian bridge
  ``D + (σ'²/σ²)(x̂ − D)`` — with variance β̃ (``small``, = DDIM η = 1) or β (``large``).
- Euler and Heun (EDM, Karras et al. 2022, Alg. 2) with optional churn γ.
- Euler ancestral (k-diffusion's ``sample_euler_ancestral``, diffusers' ``EulerAncestralDiscrete``):
  ``x̂' = x̂ + (σ_down − σ)(x̂ − D)/σ + σ_up z`` with DDIM's σ_up, σ_down — the same update as DDIM η.
- Multistep DPM-Solver++ (2M, 3M, 2M SDE) and UniPC (bh2, orders 2 and 3): :mod:`errprop.multistep`.

A step is ``step(denoiser, x, sigma, sigma_next, noise, **options) -> (x_next, denoised)``; the
noise for stochastic steps comes from the caller's per-sample streams (:class:`errprop.noise.Noise`).
A multistep step (registry entry ``multistep``) also takes ``state``, a dict the loop owns for one
run over a grid: the loop sets ``state["i"]`` and ``state["steps"]``, the step keeps its history in it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from .clipping import Clip, apply_clip
from .errors import ErrpropError
from .multistep import dpmpp_step, unipc_step
from .noise import Noise
from .process import Process

Denoise = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Callable[[dict], None]
#: DDPM's step variances: β̃_t (``small``) or β_t (``large``).
VARIANCES = ("small", "large")


def ddim_step(denoiser: Denoise, x, sigma: float, sigma_next: float, noise: Noise, eta: float = 0.0,
              clip: Clip = None):
    """DDIM (Song et al. 2021, eq. 12) with stochasticity η ∈ [0, 1].

    ``clip`` clamps the x̂0 estimate as diffusers' ``clip_sample`` does; as in diffusers'
    ``DDIMScheduler`` (``use_clipped_model_output=False``) the noise direction keeps the
    network's own ε̂ = (x̂ − D)/σ, so only the x̂0 term of the update is clipped.
    """
    denoised = denoiser(x, sigma)
    clipped = apply_clip(denoised, clip)
    if sigma_next == 0:
        return clipped, clipped
    sigma_up = eta * sigma_next * math.sqrt(sigma**2 - sigma_next**2) / sigma
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    x_next = clipped + sigma_down / sigma * (x - denoised)
    if sigma_up > 0:
        x_next = x_next + sigma_up * noise.randn(*x.shape[1:], dtype=x.dtype)
    return x_next, denoised


def ddpm_step(
    denoiser: Denoise,
    x,
    sigma: float,
    sigma_next: float,
    noise: Noise,
    variance: str = "small",
    process: Process | None = None,
    clip: Clip = None,
):
    """DDPM ancestral step (Ho et al. 2020, eq. 6–7) with variance β̃_t (``small``) or β_t (``large``).

    ``large`` needs the process: in x̂ space its variance is ``(σ² − σ'²) s(σ)²/s(σ')²``.
    ``clip`` clamps the x̂0 estimate before the posterior mean, as diffusers' ``clip_sample``.
    """
    denoised = apply_clip(denoiser(x, sigma), clip)
    if sigma_next == 0:
        return denoised, denoised
    mean = denoised + (sigma_next**2 / sigma**2) * (x - denoised)
    if variance == "small":
        var = sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    elif variance == "large":
        if process is None:
            raise ErrpropError("sampler ddpm with variance 'large' needs the process")
        ratio = float(process.scale(torch.tensor(sigma, dtype=torch.float64)) / process.scale(
            torch.tensor(sigma_next, dtype=torch.float64)))
        var = (sigma**2 - sigma_next**2) * ratio**2
    else:
        raise ErrpropError(f"sample.variance: unknown {variance!r}; choose 'small' or 'large'")
    return mean + math.sqrt(var) * noise.randn(*x.shape[1:], dtype=x.dtype), denoised


def _churn(x, sigma: float, noise: Noise, gamma: float, s_noise: float):
    """EDM Alg. 2 lines 4–6: raise the noise level from σ to σ̂ = σ(1 + γ) with fresh noise."""
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    z = noise.randn(*x.shape[1:], dtype=x.dtype)
    return x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * z, sigma_hat


def euler_step(denoiser: Denoise, x, sigma, sigma_next, noise: Noise, gamma: float = 0.0,
               s_noise: float = 1.0):
    """Euler on the probability-flow ODE dx̂/dσ = (x̂ − D)/σ (EDM Alg. 2 without the correction)."""
    x, sigma = _churn(x, sigma, noise, gamma, s_noise)
    denoised = denoiser(x, sigma)
    return x + (sigma_next - sigma) * (x - denoised) / sigma, denoised


def heun_step(denoiser: Denoise, x, sigma, sigma_next, noise: Noise, gamma: float = 0.0,
              s_noise: float = 1.0):
    """Heun's second-order method (EDM Alg. 2); the last step to σ' = 0 is Euler, as in EDM."""
    x, sigma = _churn(x, sigma, noise, gamma, s_noise)
    denoised = denoiser(x, sigma)
    d = (x - denoised) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next > 0:
        d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma) * (d + d_next) / 2
    return x_next, denoised


def euler_ancestral_step(denoiser: Denoise, x, sigma: float, sigma_next: float, noise: Noise,
                         eta: float = 1.0):
    """Euler ancestral with stochasticity η (k-diffusion): ``σ_up = min(σ', η σ' √(σ² − σ'²)/σ)``,
    ``σ_down = √(σ'² − σ_up²)``, ``x̂' = x̂ + (σ_down − σ) d + σ_up z`` with ``d = (x̂ − D)/σ``.

    Since ``x̂ + (σ_down − σ) d = D + σ_down (x̂ − D)/σ`` this *is* DDIM with η (σ_up ≤ σ' for
    η ≤ 1), so it runs DDIM's update, unclipped; η = 1 is diffusers' ``EulerAncestralDiscrete``.
    """
    if not 0 <= eta <= 1:
        raise ErrpropError(f"sampler euler_ancestral: eta must be in [0, 1], got {eta}")
    return ddim_step(denoiser, x, sigma, sigma_next, noise, eta=eta)


def churn_gamma(s_churn: float, n_steps: int) -> float:
    """EDM's per-step churn γ = min(S_churn / N, √2 − 1)."""
    return min(s_churn / n_steps, math.sqrt(2) - 1)


@dataclass(frozen=True)
class Sampler:
    """One sampler as the rest of errprop needs to know it; adding a sampler is one entry of
    :data:`SAMPLERS`.

    ``options(steps, process, eta=, variance=, s_churn=, clip=, lower_order_final=, ...)`` turns
    user-level settings (a config's ``sample`` section, :func:`errprop.builders.sampler_settings`)
    into the step function's keyword options; ``stochastic(options)``
    says whether a step with those options injects noise; ``gaussian``: a stochastic step is
    Gaussian in its noise given x̂ alone (so the modular KL exists; not a multistep SDE step, whose
    law depends on the history too); ``needs_data``: the step needs a table
    estimated from data (Analytic-DPM's Γ), so only the diagnostics can run it.
    """

    step: Callable
    options: Callable[..., dict]
    stochastic: Callable[[dict], bool]
    evals_per_step: int = 1  # Heun: 2 (its last step, to σ = 0, is Euler: 1); UniPC: 1 (see multistep)
    gaussian: bool = False
    needs_data: bool = False
    multistep: bool = False  # the step takes the loop's ``state`` (its history)

    def nfe(self, n_steps: int) -> int:
        """Network evaluations of ``n_steps`` steps."""
        return self.evals_per_step * n_steps - (self.evals_per_step - 1)


def _ddim_options(steps, process, *, eta=None, clip=None, **_):
    return {"eta": 0.0 if eta is None else eta, "clip": clip}


def _ancestral_options(steps, process, *, eta=None, **_):
    return {"eta": 1.0 if eta is None else eta}


def _dpmpp_options(steps, process, *, lower_order_final=True, clip=None, **_):
    """DPM-Solver++: diffusers lowers the final orders only on grids of fewer than 15 steps."""
    return {"lower_order_final": bool(lower_order_final) and steps < 15, "clip": clip}


def _unipc_options(steps, process, *, lower_order_final=True, disable_corrector=(), clip=None, **_):
    """UniPC: diffusers lowers the final orders to the steps left, on any grid."""
    return {"lower_order_final": bool(lower_order_final), "disable_corrector": tuple(disable_corrector),
            "clip": clip}


def _ddpm_options(steps, process, *, variance="small", clip=None, **_):
    return {"variance": variance, "process": process, "clip": clip}


def _edm_options(steps, process, *, s_churn=0.0, **_):
    return {"gamma": churn_gamma(s_churn, steps)} if s_churn > 0 else {}


def _analytic_options(steps, process, *, gamma_table=None, **_):
    if gamma_table is None:
        raise ErrpropError("sampler 'analytic' needs a Γ table estimated from data "
                           "(errprop.analytic_dpm.gamma_table); use errprop diagnose --sampler analytic")
    return {"gamma_table": gamma_table}


def _churned(options: dict) -> bool:
    return options.get("gamma", 0.0) > 0


def _register() -> dict[str, Sampler]:
    from .analytic_dpm import analytic_ddpm_step  # (it does not import this module)

    def eta_positive(o: dict) -> bool:
        return o.get("eta", 0.0) > 0

    def multistep(step, options, stochastic=False, **fixed):
        # the name fixes the order (a partial, so that each name has its own step function)
        return Sampler(partial(step, **fixed), options, lambda o: stochastic, multistep=True)

    return {
        "ddim": Sampler(ddim_step, _ddim_options, eta_positive, gaussian=True),
        "ddpm": Sampler(ddpm_step, _ddpm_options, lambda o: True, gaussian=True),
        "euler": Sampler(euler_step, _edm_options, _churned),
        "heun": Sampler(heun_step, _edm_options, _churned, evals_per_step=2),
        "euler_ancestral": Sampler(euler_ancestral_step, _ancestral_options, eta_positive, gaussian=True),
        "dpmpp_2m": multistep(dpmpp_step, _dpmpp_options, order=2),
        "dpmpp_3m": multistep(dpmpp_step, _dpmpp_options, order=3),
        "dpmpp_2m_sde": multistep(dpmpp_step, _dpmpp_options, stochastic=True, order=2, sde=True),
        "unipc_2": multistep(unipc_step, _unipc_options, order=2),
        "unipc_3": multistep(unipc_step, _unipc_options, order=3),
        "analytic": Sampler(analytic_ddpm_step, _analytic_options, lambda o: True, gaussian=True,
                            needs_data=True),
    }


#: The samplers, by name.
SAMPLERS: dict[str, Sampler] = _register()
#: The names a sampling command accepts (``analytic`` needs data: only ``diagnose`` takes it).
NAMES = tuple(k for k, v in SAMPLERS.items() if not v.needs_data)


def get_sampler(name: str) -> Sampler:
    """The registry entry of a sampler name."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ErrpropError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None


def _entry(step: str | Callable) -> Sampler | None:
    """The registry entry of a sampler name or a registered step function (None if neither)."""
    return next((v for k, v in SAMPLERS.items() if step in (k, v.step)), None)


def get_step(name: str) -> Callable:
    """The step function of a sampler name."""
    return get_sampler(name).step


def step_options(sampler: str, steps: int, process: Process, **settings) -> dict:
    """The keyword options of a sampler's step from user-level settings (``eta``, ``variance``,
    ``s_churn``, ``clip``: diffusers' ``clip_sample_range`` or a :class:`DynamicThreshold`, used by
    the samplers that clip — DDIM and DDPM, as diffusers' schedulers do)."""
    return get_sampler(sampler).options(steps, process, **settings)


def _known(step: str | Callable) -> Sampler:
    entry = _entry(step)
    if entry is None:
        raise ErrpropError(f"unknown sampler step {step!r}")
    return entry


def is_stochastic(step: str | Callable, options: dict | None) -> bool:
    """Whether a step (a name, or a registered step function) injects noise with these options."""
    return _known(step).stochastic(options or {})


def is_gaussian(step: str | Callable, options: dict | None) -> bool:
    """Whether a step (a name, or a registered step function) with these options is stochastic and
    Gaussian given x̂ alone, so that its modular KL exists (DDPM, DDIM with η > 0, Euler ancestral,
    Analytic-DPM; not a deterministic solver nor a multistep SDE step)."""
    entry = _known(step)
    return entry.gaussian and entry.stochastic(options or {})


def nfe(sampler: str | Callable, n_steps: int) -> int:
    """Network evaluations of ``n_steps`` steps of a sampler (a name or a registered step function)
    on a grid ending at σ = 0: Heun 2n − 1; UniPC n (its corrector reuses the next evaluation)."""
    entry = _entry(sampler)
    if entry is None:
        raise ErrpropError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    return entry.nfe(n_steps)


def prior(process: Process, sigma_max: float, noise: Noise, shape: tuple[int, ...],
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sampler's start x̂ ~ N(0, prior_std(σ_max)² I): N(0, I) in x_T for VP, σ_max n for VE."""
    return process.prior_std(sigma_max) * noise.randn(*shape, dtype=dtype)


def sample(
    denoiser: Denoise,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    noise: Noise,
    step: str | Callable = "ddim",
    callback: Callback | None = None,
    grad: bool = False,
    **options,
) -> torch.Tensor:
    """Run ``step`` along ``sigmas`` from ``x`` (at σ_0) to σ_n (0 for a sampling grid) and return
    x̂ there — the one sampling loop of errprop (generation, the diagnostics' chains, EP's rollout).

    ``callback`` sees every step as a dict with ``i, sigma, sigma_next, x, denoised, x_next``.
    ``grad``: keep the autograd graph as the caller's context allows (EP's rollout trains through
    it); off, the loop runs under ``no_grad``.

    A multistep solver's history lives in one ``state`` dict made here for this run over
    ``sigmas`` (so a call on a sub-grid starts the solver afresh, with its warm-up orders).
    """
    step_fn = get_step(step) if isinstance(step, str) else step
    entry = _entry(step)
    # a registered multistep solver, or a step wrapper that says it is one (the local-error
    # diagnostic's, which runs the model's solver and the exact denoiser's side by side)
    multistep = entry.multistep if entry is not None else getattr(step_fn, "multistep", False)
    n = len(sigmas) - 1
    state: dict | None = {"steps": n} if multistep else None
    with contextlib.nullcontext() if grad else torch.no_grad():
        for i in range(n):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            if state is None:
                x_next, denoised = step_fn(denoiser, x, sigma, sigma_next, noise, **options)
            else:
                state["i"] = i
                x_next, denoised = step_fn(denoiser, x, sigma, sigma_next, noise, state=state, **options)
            if callback is not None:
                callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x,
                          "denoised": denoised, "x_next": x_next})
            x = x_next
    return x
