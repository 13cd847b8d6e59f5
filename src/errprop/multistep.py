"""Multistep solvers of the probability-flow ODE: DPM-Solver++ (2M, 3M, 2M SDE) and UniPC (bh2).

Everything is written in errprop's unscaled space ``x̂ = x0 + σ n`` with the log-SNR ``λ = −log σ``
(for VP, σ = σ_t/α_t, so λ is the papers' log(α_t/σ_t)); a step from σ to σ' has
``h = λ' − λ = log(σ/σ')``, and the papers' VP formulas become these after dividing by α_{t'}.
D_i is the (clipped) denoiser output at the i-th grid point, the papers' data prediction x_θ.

**DPM-Solver++** (Lu et al. 2022, arXiv:2211.01095, Alg. 2 and App. B), with φ = e^{−h} − 1:

- first order (= DDIM): ``x̂' = (σ'/σ) x̂ − φ D_0``;
- 2M (midpoint): r_0 = h_{−1}/h, ``D_1 = (D_0 − D_{−1})/r_0``, ``x̂' = (σ'/σ) x̂ − φ (D_0 + D_1/2)``;
- 3M: r_1 = h_{−2}/h, ``D1_0 = (D_0 − D_{−1})/r_0``, ``D1_1 = (D_{−1} − D_{−2})/r_1``,
  ``D_1 = D1_0 + r_0/(r_0 + r_1) (D1_0 − D1_1)``, ``D_2 = (D1_0 − D1_1)/(r_0 + r_1)``,
  ``x̂' = (σ'/σ) x̂ − φ D_0 + (φ/h + 1) D_1 − ((φ + h)/h² − 1/2) D_2``;
- 2M SDE (midpoint; the SDE of DPM-Solver++ §5): with ψ = 1 − e^{−2h},
  ``x̂' = (σ'/σ) e^{−h} x̂ + ψ (D_0 + D_1/2) + σ' √ψ z`` (first order: without the D_1 term, which
  is exactly the DDPM ancestral step).

**UniPC** (Zhao et al. 2023, arXiv:2302.04867, Alg. 2 with B(h) = e^{−h} − 1, "bh2", data
prediction). With φ_1 = e^{−h} − 1, r_k = (λ_{−k} − λ_0)/h and ``D1_k = (D_{−k} − D_0)/r_k``:

- UniP-p (predictor): ``x̂' = (σ'/σ) x̂ − φ_1 D_0 − B(h) Σ_{k<p} ρ_k D1_k``, ρ solving
  ``R_{p−1} ρ = b_{p−1}`` (ρ = 1/2 at p = 2), with R_{ij} = r_j^{i−1} and
  ``b_i = i! φ_{i+1}(h) / B(h)`` (eq. 7–8: φ_{k+1} = φ_k/h − 1/k! in −h);
- UniC-p (corrector): once D(x̂', σ') is known, x̂' is recomputed from the same start with one
  more difference, ``D1_p = D(x̂', σ') − D_0`` (r_p = 1), ρ^c solving the full ``R_p ρ^c = b_p``
  (ρ^c = 1/2 at p = 1). The corrector reuses the evaluation the next step needs anyway, so UniPC
  costs one network evaluation per step; the model is evaluated at the *predicted* x̂', and the
  corrected x̂' continues the chain.

Both follow diffusers' ``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` (equality
is tested, tests/test_multistep.py), including their warm-up (the first steps use the orders the
history allows) and ``lower_order_final``: DPM-Solver++ takes first order at the last step (always
when σ' = 0, where h = ∞) and at most second at the one before when the grid has < 15 steps;
UniPC lowers its order to the steps left.

A multistep solver keeps its history in the ``state`` dict the one loop
(:func:`errprop.samplers.sample`) owns and passes to every step: the loop sets ``state["i"]`` (step
index) and ``state["steps"]`` (steps on the grid); the step keeps ``state["history"]``, a list of
``(σ_j, D_j)``, and UniPC its corrector's inputs.
"""

from __future__ import annotations

import math

import torch

from .clipping import apply_clip
from .errors import ErrpropError
from .noise import Noise


def _history(state: dict, sigma: float, denoised: torch.Tensor, keep: int) -> list:
    """Append (σ, D) to the state's history, keeping the last ``keep`` entries; returns it."""
    hist = state.setdefault("history", [])
    hist.append((sigma, denoised))
    del hist[:-keep]
    return hist


def _dpm_order(state: dict, order: int, sigma_next: float, lower_order_final: bool, known: int) -> int:
    """The order diffusers' DPMSolverMultistepScheduler takes at this step: warm-up (``known``
    earlier evaluations), first order at the last step (always into σ' = 0, where h = ∞) and at
    most second at the one before when ``lower_order_final`` (already resolved for < 15 steps)."""
    i, steps = state["i"], state["steps"]
    if sigma_next == 0 or (i == steps - 1 and lower_order_final):
        return 1
    if i == steps - 2 and lower_order_final:
        order = min(order, 2)
    return min(order, known + 1)


def dpmpp_step(denoiser, x: torch.Tensor, sigma: float, sigma_next: float, noise: Noise, *,
               state: dict, order: int = 2, sde: bool = False, lower_order_final: bool = True,
               clip=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of multistep DPM-Solver++ (order 1–3), or of its SDE variant (``sde``, order ≤ 2).

    ``clip`` (a range or a :class:`~errprop.clipping.DynamicThreshold`) is applied to D before it
    enters the update and the history, as diffusers' ``thresholding``. Returns (x̂', D).
    """
    if order not in (1, 2, 3) or (sde and order > 2):
        raise ErrpropError(f"DPM-Solver++: order {order} not supported"
                           f"{' for the SDE variant' if sde else ''}")
    denoised = denoiser(x, sigma)
    known = len(state.get("history", []))
    hist = _history(state, sigma, apply_clip(denoised, clip), 3)
    k = _dpm_order(state, order, sigma_next, lower_order_final, known)
    d0 = hist[-1][1]
    if sigma_next == 0:  # h = ∞: every order reduces to x̂' = D_0 (and the noise term vanishes)
        return d0, denoised
    h = math.log(sigma / sigma_next)
    d = d0  # the data term: D_0 at first order, D_0 + D_1/2 at second (midpoint)
    if k >= 2:
        s1, m1 = hist[-2]
        r0 = math.log(s1 / sigma) / h
        d1_0 = (d0 - m1) / r0
        d = d0 + 0.5 * d1_0
    if k == 3:
        s2, m2 = hist[-3]
        r1 = math.log(s2 / s1) / h
        d1_1 = (m1 - m2) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi = math.expm1(-h)
        return (sigma_next / sigma * x - phi * d0 + (phi / h + 1) * d1
                - ((phi + h) / h**2 - 0.5) * d2), denoised
    if not sde:
        return sigma_next / sigma * x - math.expm1(-h) * d, denoised
    psi = -math.expm1(-2 * h)
    z = noise.randn(*x.shape[1:], dtype=x.dtype)
    return sigma_next / sigma * math.exp(-h) * x + psi * d + sigma_next * math.sqrt(psi) * z, denoised


def _unipc_b(hh: float, order: int) -> tuple[float, list[float]]:
    """B(h) = e^{hh} − 1 (bh2) and b_i = i! φ_{i+1}(hh)/B(h), i = 1..order, for hh = −h (data
    prediction): UniPC eq. 8 with φ_1 = e^{hh} − 1 and φ_{k+1} = φ_k/hh − 1/k!."""
    b_h = math.expm1(hh)
    phi_k, fact, b = b_h / hh - 1, 1, []
    for i in range(1, order + 1):
        b.append(phi_k * fact / b_h)
        fact *= i + 1
        phi_k = phi_k / hh - 1 / fact
    return b_h, b


def _solve(rks: list[float], b: list[float]) -> list[float]:
    """ρ with Σ_j r_j^{i−1} ρ_j = b_i (UniPC's Vandermonde system), in float64."""
    r = torch.tensor(rks, dtype=torch.float64)
    mat = torch.stack([r**i for i in range(len(rks))])
    return torch.linalg.solve(mat, torch.tensor(b, dtype=torch.float64)).tolist()


def _unipc_update(x: torch.Tensor, sigma: float, sigma_next: float, hist: list, order: int,
                  d_next: torch.Tensor | None = None) -> torch.Tensor:
    """UniP-``order`` from (x̂ at σ = hist[-1]'s σ) to σ', or with ``d_next`` = D(x̂', σ') the
    corrector UniC-``order`` (one more difference, r = 1)."""
    d0 = hist[-1][1]
    if sigma_next == 0:  # h = ∞ (only at order 1: lower_order_final or forced below)
        return d0
    h = math.log(sigma / sigma_next)
    b_h, b = _unipc_b(-h, order)
    rks, diffs = [], []
    for k in range(1, order):
        s_k, m_k = hist[-1 - k]
        rks.append(math.log(sigma / s_k) / h)
        diffs.append((m_k - d0) / rks[-1])
    x_next = sigma_next / sigma * x - b_h * d0
    if d_next is None:  # predictor
        if order == 1:
            return x_next
        rho = [0.5] if order == 2 else _solve(rks, b[:-1])
        return x_next - b_h * sum(p * d for p, d in zip(rho, diffs))
    rho = [0.5] if order == 1 else _solve([*rks, 1.0], b)
    corr = rho[-1] * (d_next - d0) + sum(p * d for p, d in zip(rho[:-1], diffs))
    return x_next - b_h * corr


def unipc_step(denoiser, x: torch.Tensor, sigma: float, sigma_next: float, noise: Noise, *,
               state: dict, order: int = 2, lower_order_final: bool = True,
               disable_corrector: tuple[int, ...] = (), clip=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of UniPC-``order`` (bh2, data prediction): correct the previous step's prediction
    with this evaluation (UniC), then predict the next state (UniP). Returns (x̂', D) where x̂' is
    the prediction the next step evaluates; the chain's last state is a prediction (no evaluation
    follows to correct it), as in diffusers. ``disable_corrector`` lists step indices whose
    prediction is not corrected (diffusers' option)."""
    if order not in (1, 2, 3):
        raise ErrpropError(f"UniPC: order {order} not supported; choose 1, 2 or 3")
    i, steps = state["i"], state["steps"]
    denoised = denoiser(x, sigma)
    d = apply_clip(denoised, clip)
    hist = state.get("history", [])
    if i > 0 and "last_x" in state and (i - 1) not in disable_corrector:
        x = _unipc_update(state["last_x"], hist[-1][0], sigma, hist, state["last_order"], d)
    known = len(hist)
    hist = _history(state, sigma, d, order)
    k = min(order, steps - i) if lower_order_final else order
    k = min(k, known + 1)  # warm-up: the differences the history allows
    if sigma_next == 0:
        k = 1  # h = ∞: only the first-order update is finite (diffusers would give NaN here)
    state["last_x"], state["last_order"] = x, k
    return _unipc_update(x, sigma, sigma_next, hist, k), denoised
