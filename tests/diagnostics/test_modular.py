"""Modular error: the exact reverse transition, the KL estimator against closed forms, its decay
with T, and the image-data denoising excess."""

import math

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.modular import (
    denoising_excess,
    modular_error,
    reverse_transition_log_prob,
    step_moments,
)
from errprop.errors import ErrpropError
from errprop.grids import make_grid
from errprop.process import VPProcess


def one_gaussian(dim: int = 2, var: float = 0.3, mean: float = 0.5) -> GaussianMixture:
    return GaussianMixture([1.0], torch.full((1, dim), mean), var * torch.eye(dim)[None])


def test_reverse_transition_is_bayes_rule():
    # q(x̂'|x̂) = q_σ'(x̂') N(x̂; x̂', (σ² − σ'²) I) / q_σ(x̂): an independent closed form.
    mix = GaussianMixture.random(3, components=4, seed=2)
    g = torch.Generator().manual_seed(0)
    x, x_next = torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randn(
        50, 3, generator=g, dtype=torch.float64)
    s, s_next = 0.9, 0.35
    v = s**2 - s_next**2
    fwd = -0.5 * ((x - x_next) ** 2).sum(1) / v - 1.5 * math.log(2 * math.pi * v)
    ref = mix.log_prob(x_next, s_next) + fwd - mix.log_prob(x, s)
    torch.testing.assert_close(reverse_transition_log_prob(mix, x, s, s_next, x_next), ref)


def test_modular_kl_matches_closed_form_on_one_gaussian():
    # One Gaussian N(μ, aI): q(x̂'|x̂) = N(exact mean, S I), S = (1−c)² aσ²/(a+σ²) + v̄, and DDPM
    # (β̃) with the exact denoiser has the same mean and variance v̄: KL = d/2 (v̄/S − 1 − log v̄/S).
    mix, a, d = one_gaussian(), 0.3, 2
    process = VPProcess(T=50)
    sigmas = make_grid("uniform", process, 50)
    at = [10, 30, 45]
    res = modular_error(mix, mix, sigmas, n=2000, at=at, process=process)
    for j, kl, se in zip(at, res["kl"], res["kl_stderr"]):
        s, s2 = float(sigmas[j]), float(sigmas[j + 1])
        c, vbar = s2**2 / s**2, s2**2 * (s**2 - s2**2) / s**2
        S = (1 - c) ** 2 * a * s**2 / (a + s**2) + vbar
        exact = d / 2 * (vbar / S - 1 - math.log(vbar / S))
        assert abs(kl - exact) < 4 * se + 0.02 * exact, (j, kl, exact, se)
    assert res["t"] == [float(49 - j) for j in at]


def test_modular_error_shrinks_as_T_grows():
    # Exact denoiser: the only error is the Gaussian approximation of the reverse step, which
    # vanishes as the steps get finer. Compare at the same fractions t/T of the chain.
    mix = GaussianMixture.ring8()
    per_T = []
    for T in (50, 200, 1000):
        process = VPProcess(T=T)
        at = [T - 1 - int(f * T) for f in (0.05, 0.2, 0.5)]
        res = modular_error(mix, mix, make_grid("uniform", process, T), n=1000, at=at,
                            process=process)
        per_T.append(torch.tensor(res["kl"]))
    for coarse, fine in zip(per_T, per_T[1:]):
        assert (fine * 4 < coarse).all(), per_T


def test_deterministic_or_churned_steps_have_no_modular_kl():
    mix, sigmas = GaussianMixture.ring8(), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(ErrpropError, match="deterministic"):
        modular_error(mix, mix, sigmas, step="heun", n=10)
    with pytest.raises(ErrpropError, match="not Gaussian"):
        modular_error(mix, mix, sigmas, step="euler", options={"gamma": 0.3}, n=10)
    last = modular_error(mix, mix, sigmas, n=10)["kl"]
    assert math.isfinite(last[0]) and math.isnan(last[1])  # the step to σ = 0 has no density


def test_step_moments_read_the_sampler_formulas():
    mix, process = GaussianMixture.ring8(), VPProcess()
    x = torch.randn(5, 2, dtype=torch.float64)
    s, s2 = 2.0, 1.5
    mean, std = step_moments("ddim", mix, x, s, s2, eta=0.5)
    up = 0.5 * s2 * math.sqrt(s**2 - s2**2) / s
    torch.testing.assert_close(std, torch.full_like(x, up))
    d = mix(x, s)
    torch.testing.assert_close(mean, d + math.sqrt(s2**2 - up**2) / s * (x - d))
    _, std = step_moments("ddpm", mix, x, s, s2, variance="large", process=process)
    var = (s**2 - s2**2) * (1 + s2**2) / (1 + s**2)
    torch.testing.assert_close(std, torch.full_like(x, math.sqrt(var)))


def test_denoising_excess_split_is_exact_for_a_known_bias():
    # D + δ: ε̂ − ε̂* = −δ/σ, so the reducible part is ‖δ‖²/σ² exactly; the exact denoiser has none.
    mix, delta = GaussianMixture.ring8(), torch.tensor([0.1, -0.2], dtype=torch.float64)
    sigmas = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)
    res = denoising_excess(lambda x, s: mix(x, s) + delta, mix, sigmas, n=500, exact=mix,
                           dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(res["reducible"], dtype=torch.float64),
                               float(delta.pow(2).sum()) / sigmas[:3] ** 2)
    exact = denoising_excess(mix, mix, sigmas, n=500, exact=mix)
    assert exact["reducible"] == [0.0, 0.0, 0.0] and exact["includes_irreducible"]
    parts = zip(res["excess"], res["reducible"], res["irreducible"], res["excess_stderr"])
    for e, r, i, se in parts:
        assert abs(e - (r + i)) < 4 * se + 1e-6
    # on a data tensor (images): the same measure, without the split
    imgs = torch.rand(64, 1, 4, 4) * 2 - 1
    out = denoising_excess(lambda x, s: torch.zeros_like(x), imgs, sigmas, n=32)
    assert len(out["excess"]) == 3 and "reducible" not in out and out["excess_per_dim"][0] > 0
