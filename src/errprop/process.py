"""Forward processes: VP (discrete DDPM) and VE, seen through one time variable σ.

Every process here is written as ``x_t = s(σ)(x0 + σ n)`` (docs/methods.md#sigma-space). errprop works in the
*unscaled* space ``x̂ = x_t / s = x0 + σ n`` (EDM's view): samplers, denoisers and the Gaussian
mixture oracle only ever see ``(x̂, σ)``. The scale ``s`` and the model's own time input are views
onto σ, converted here and nowhere else.

VP discrete: ``ᾱ_t`` for ``t = 0..T-1`` (diffusers' index; paper step ``t + 1``),
``s = √ᾱ = 1/√(1+σ²)`` and ``σ = √((1-ᾱ)/ᾱ)``.
VE: ``s ≡ 1`` with σ(t) = √t (Song et al.) or σ(t) = t (EDM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import ErrpropError

#: The processes, by config name (``process.kind``): :class:`VPProcess`, :class:`VEProcess`.
KINDS = ("vp", "ve")
BETA_SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid", "sigmoid_abar", "trained")
BETA_SCALES = ("none", "epdm")
# Schedules whose β_t are built from (beta_start, beta_end); only these can be rescaled.
_ENDPOINT_SCHEDULES = ("linear", "scaled_linear", "sigmoid")


def sigmoid_abar_schedule(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """β_1..β_T (float64) of EPDM's default schedule: a sigmoid on ᾱ, not on β.

    With ``f(u) = sigmoid((start + (end − start) u)/τ)`` and ``u = t/T``, ``t = 0..T``:
    ``ᾱ(u) = (f(1) − f(u)) / (f(1) − f(0))``, so ᾱ(0) = 1 and ᾱ(1) = 0, and
    ``β_t = 1 − ᾱ(t/T)/ᾱ((t−1)/T)`` clipped to [0, 0.999] (the last β is 1 before the clip, so
    ᾱ_T = 0.001 · ᾱ_{T−1} > 0). Defaults start = −3, end = 3, τ = 1 are the released code's.

    Source: ``sigmoid_beta_schedule`` in ``src/epdm/models.py`` of vanderschaarlab/epdm (after
    Jabri et al. 2022, arXiv:2212.11972, Fig. 8); its ``clamp_min`` argument is unused there, and
    the only clamp is the clip of β to [0, 0.999]. Re-derived here, not copied.
    """
    for name, v in (("sigmoid_start", start), ("sigmoid_end", end), ("sigmoid_tau", tau)):
        if not math.isfinite(v):
            raise ErrpropError(f"process.{name} must be a finite number, got {v!r}")
    if not tau > 0:
        raise ErrpropError(f"process.sigmoid_tau must be > 0, got {tau}")
    if not start < end:
        raise ErrpropError(f"process: need sigmoid_start < sigmoid_end, got {start}, {end}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.sigmoid((start + (end - start) * u) / tau)
    f0 = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    f1 = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    if not float(f1 - f0) > 0:  # e.g. start/τ and end/τ both far in one saturated tail
        raise ErrpropError(
            f"process: sigmoid_abar is flat in float64 for start={start}, end={end}, tau={tau}; "
            "bring (start, end)/tau closer to 0"
        )
    abar = (f1 - f) / (f1 - f0)
    betas = (1 - abar[1:] / abar[:-1]).clamp(0, 0.999)
    if not bool(torch.all(betas > 0)):
        raise ErrpropError(
            f"process: sigmoid_abar gives β_t = 0 (ᾱ flat) for start={start}, end={end}, tau={tau}; "
            "σ_t must increase strictly"
        )
    return betas


def scaled_betas(beta_start: float, beta_end: float, T: int, beta_scale: str = "none") -> tuple[float, float]:
    """(beta_start, beta_end) after ``beta_scale``: ``none`` as given; ``epdm`` times 1000/T.

    ``epdm`` is EPDM's ``linear_beta_schedule`` (``scale = 1000 / timesteps``, ``src/epdm/models.py``
    of vanderschaarlab/epdm; also Improved DDPM's): T = 1000 leaves the endpoints as they are, other
    T keep the product β·T, so ᾱ_T stays about as small as DDPM's at T = 1000.
    """
    if beta_scale == "none":
        return beta_start, beta_end
    if beta_scale == "epdm":
        return beta_start * 1000 / T, beta_end * 1000 / T
    raise ErrpropError(f"process.beta_scale: unknown {beta_scale!r}; choose one of {BETA_SCALES}")


def beta_schedule(
    name: str,
    T: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    *,
    beta_scale: str = "none",
    sigmoid_start: float = -3.0,
    sigmoid_end: float = 3.0,
    sigmoid_tau: float = 1.0,
    betas: Sequence[float] | None = None,
) -> torch.Tensor:
    """β_1..β_T (float64, length T) of a named schedule.

    - ``linear``: DDPM (Ho et al. 2020), ``linspace(beta_start, beta_end, T)``.
    - ``scaled_linear``: diffusers' (Stable Diffusion's) ``linspace(√beta_start, √beta_end, T)²``.
    - ``trained``: the given ``betas`` (diffusers' ``trained_betas``), length T, each in (0, 1).
    - ``cosine``: Nichol & Dhariwal 2021, ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β ≤ 0.999.
    - ``sigmoid``: diffusers' ``"sigmoid"``: ``sigmoid(linspace(-6, 6, T))`` mapped onto
      [beta_start, beta_end] — a sigmoid on **β**.
    - ``sigmoid_abar``: EPDM's default, a sigmoid on **ᾱ** (:func:`sigmoid_abar_schedule`, with
      ``sigmoid_start``, ``sigmoid_end``, ``sigmoid_tau``); beta_start/beta_end are not used.

    ``beta_scale`` (:func:`scaled_betas`) rescales beta_start/beta_end first (``epdm``: × 1000/T);
    it applies to the schedules built from them (``linear``, ``sigmoid``) and is an error with
    the others, which would silently ignore it.
    """
    if name not in BETA_SCHEDULES:
        raise ErrpropError(f"process.schedule: unknown β schedule {name!r}; choose one of {BETA_SCHEDULES}")
    if beta_scale not in BETA_SCALES:
        raise ErrpropError(f"process.beta_scale: unknown {beta_scale!r}; choose one of {BETA_SCALES}")
    if beta_scale != "none" and name not in _ENDPOINT_SCHEDULES:
        raise ErrpropError(
            f"process.beta_scale {beta_scale!r} rescales beta_start/beta_end, which schedule {name!r} "
            f"does not use; it needs one of {_ENDPOINT_SCHEDULES}"
        )
    if name == "trained":
        b = torch.as_tensor(list(betas or []), dtype=torch.float64)
        if b.shape != (T,) or not ((b > 0) & (b < 1)).all():
            raise ErrpropError(f"process.schedule 'trained' needs process.betas: {T} values in (0, 1), "
                               f"got {len(b)}")
        return b
    if name in _ENDPOINT_SCHEDULES:
        lo, hi = scaled_betas(beta_start, beta_end, T, beta_scale)
        if not 0 < lo < hi < 1:
            raise ErrpropError(
                f"process: need 0 < beta_start < beta_end < 1 after beta_scale {beta_scale!r} "
                f"(T = {T}), got {lo}, {hi}"
            )
        if name == "linear":
            return torch.linspace(lo, hi, T, dtype=torch.float64)
        if name == "scaled_linear":
            return torch.linspace(lo**0.5, hi**0.5, T, dtype=torch.float64) ** 2
        u = torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64))
        return u * (hi - lo) + lo
    if name == "cosine":
        s = 0.008
        u = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    return sigmoid_abar_schedule(T, sigmoid_start, sigmoid_end, sigmoid_tau)


class Process:
    """Common interface of the forward processes (all σ arguments are tensors or floats)."""

    sigma_min: float
    sigma_max: float
    discrete: bool

    def scale(self, sigma: torch.Tensor) -> torch.Tensor:
        """s(σ): x_t = s · x̂."""
        raise NotImplementedError

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The time input the network is conditioned on at noise level σ."""
        raise NotImplementedError

    def prior_std(self, sigma: float) -> float:
        """Std of the sampler's start distribution in x̂ space at σ (the N(0, I) of x_T, unscaled)."""
        raise NotImplementedError

    def sample_sigma(self, u: torch.Tensor) -> torch.Tensor:
        """Training noise levels from uniforms ``u ∈ [0, 1)`` (t uniform over the process's range)."""
        raise NotImplementedError


@dataclass
class VPProcess(Process):
    """Discrete variance-preserving process (DDPM) with T steps.

    Attributes are float64 tensors of length T indexed by ``t = 0..T-1``: ``betas``,
    ``alphas_cumprod`` (ᾱ_t) and ``sigmas`` (σ_t, increasing).
    """

    T: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_scale: str = "none"  # "epdm": beta_start, beta_end × 1000/T (EPDM's linear schedule)
    sigmoid_start: float = -3.0  # sigmoid_abar only (EPDM's defaults)
    sigmoid_end: float = 3.0
    sigmoid_tau: float = 1.0
    trained_betas: tuple[float, ...] | None = None  # schedule "trained" only
    discrete = True

    def __post_init__(self) -> None:
        if self.T < 2:
            raise ErrpropError(f"process.T must be ≥ 2, got {self.T}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ErrpropError(
                f"process: need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )
        self.betas = beta_schedule(
            self.schedule, self.T, self.beta_start, self.beta_end, beta_scale=self.beta_scale,
            sigmoid_start=self.sigmoid_start, sigmoid_end=self.sigmoid_end, sigmoid_tau=self.sigmoid_tau,
            betas=self.trained_betas,
        )
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self._log_sigmas = self.sigmas.log()
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ (float64) at a possibly fractional timestep index, log-linear between integers."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.T - 1)
        log_sigmas = self._log_sigmas.to(t.device)
        lo = t.floor().long().clamp(max=self.T - 2)
        w = t - lo
        return (log_sigmas[lo] * (1 - w) + log_sigmas[lo + 1] * w).exp()

    def t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep index (float64) of σ: inverse of :meth:`sigma`, exact on the grid."""
        log_sigmas = self._log_sigmas.to(torch.as_tensor(sigma).device)
        log_s = torch.as_tensor(sigma, dtype=torch.float64, device=log_sigmas.device).log()
        log_s = log_s.clamp(float(log_sigmas[0]), float(log_sigmas[-1]))
        hi = torch.searchsorted(log_sigmas, log_s.contiguous()).clamp(1, self.T - 1)
        lo = hi - 1
        return lo + (log_s - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])

    def scale(self, sigma):
        return (1 + torch.as_tensor(sigma) ** 2).rsqrt()

    def c_noise(self, sigma):
        # DDPM networks are conditioned on the timestep index, as in diffusers.
        return self.t(sigma).to(sigma.dtype)

    def prior_std(self, sigma):
        return math.sqrt(1 + sigma**2)

    def sample_sigma(self, u):
        t = (u * self.T).long().clamp(max=self.T - 1)
        return self.sigmas.to(u.device)[t].to(u.dtype)


VE_KINDS = ("sqrt", "linear")


@dataclass
class VEProcess(Process):
    """Variance-exploding process ``x = x0 + σ(t) n`` with σ(t) = √t (``sqrt``) or t (``linear``)."""

    kind: str = "linear"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    discrete = False

    def __post_init__(self) -> None:
        if self.kind not in VE_KINDS:
            raise ErrpropError(f"process.ve_sigma: unknown {self.kind!r}; choose one of {VE_KINDS}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ErrpropError(
                f"process: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )

    def sigma(self, t):
        t = torch.as_tensor(t)
        return t.sqrt() if self.kind == "sqrt" else t

    def t(self, sigma):
        sigma = torch.as_tensor(sigma)
        return sigma**2 if self.kind == "sqrt" else sigma

    def scale(self, sigma):
        return torch.ones_like(torch.as_tensor(sigma))

    def c_noise(self, sigma):
        # EDM's conditioning for VE networks: a well-scaled input over σ ∈ [0.002, 80].
        return torch.as_tensor(sigma).log() / 4

    def prior_std(self, sigma):
        return sigma

    def sample_sigma(self, u):
        t_min, t_max = float(self.t(self.sigma_min)), float(self.t(self.sigma_max))
        return self.sigma(t_min + u * (t_max - t_min))
