"""Analytic-DPM: on one Gaussian the estimated optimal variance is the true reverse variance
(closed form), lies in [β̃, β], and makes the modular KL vanish."""

import pytest
import torch

from errprop.analytic_dpm import GammaTable, analytic_ddpm_step, analytic_variance, gamma_table
from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.modular import modular_error
from errprop.errors import ErrpropError
from errprop.grids import make_grid
from errprop.noise import Noise
from errprop.process import VPProcess
from errprop.samplers import sample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def one_gaussian(a: float, dim: int = 4) -> GaussianMixture:
    return GaussianMixture([1.0], torch.full((1, dim), 0.3), a * torch.eye(dim)[None])


@pytest.mark.parametrize("steps", [1000, 20])  # adjacent steps, and strided ones
def test_variance_is_the_true_posterior_variance_and_between_beta_tilde_and_beta(steps):
    a = 0.25
    mix, process = one_gaussian(a), VPProcess()
    sigmas = make_grid("uniform", process, steps)
    at = [0, steps // 4, steps // 2, steps - 2]
    table = gamma_table(mix, mix, sigmas[at], n=1000, dtype=torch.float64)
    for j in at:
        s, s2 = float(sigmas[j]), float(sigmas[j + 1])
        # Γ = E‖ε̂*‖²/d = σ²/(a + σ²) for N(μ, aI), and x̂' | x̂ has variance (1−c)² aσ²/(a+σ²) + v̄
        gam, se = table(s), float(table.stderr[int((table.sigmas - s).abs().argmin())])
        assert abs(gam - s**2 / (a + s**2)) < 4 * se
        c, vbar = s2**2 / s**2, s2**2 * (s**2 - s2**2) / s**2
        true = (1 - c) ** 2 * a * s**2 / (a + s**2) + vbar
        v = analytic_variance(s, s2, gam)
        assert v == pytest.approx(true, rel=0.02)
        beta_tilde = vbar
        beta = (s**2 - s2**2) * (1 + s2**2) / (1 + s**2)  # DDPM "large" in x̂ space
        assert beta_tilde <= v <= beta


def test_optimal_variance_zeroes_the_modular_kl_on_one_gaussian():
    # On an isotropic Gaussian the exact reverse step is Gaussian with the analytic variance, so
    # its KL to the analytic step is zero up to the Γ estimate, while DDPM's β̃ and β are off.
    mix, process = one_gaussian(0.25, dim=2), VPProcess(T=100)
    sigmas = make_grid("uniform", process, 100)
    table = gamma_table(mix, mix, process.sigmas, n=2000, dtype=torch.float64)
    at = [20, 60, 90]
    kl = {}
    for name, step, opts in (
        ("analytic", analytic_ddpm_step, {"gamma_table": table}),
        ("small", "ddpm", {"variance": "small"}),
        ("large", "ddpm", {"variance": "large", "process": process}),
    ):
        kl[name] = modular_error(mix, mix, sigmas, step=step, options=opts, n=500, at=at)["kl"]
    for i in range(len(at)):
        assert abs(kl["analytic"][i]) < 0.01 * min(kl["small"][i], kl["large"][i]), kl


def test_gamma_table_lookup_and_the_step_in_the_sampler_loop():
    f64 = {"dtype": torch.float64}
    table = GammaTable(torch.tensor([2.0, 0.5, 1.0], **f64), torch.tensor([0.8, 0.2, 0.5], **f64),
                       torch.zeros(3))
    assert table(1.0) == 0.5 and table(2.0) == 0.8
    assert 0.5 < table(1.5) < 0.8
    with pytest.raises(ErrpropError, match="outside"):
        table(3.0)
    mix, process = one_gaussian(0.25, dim=2), VPProcess(T=100)
    sigmas = make_grid("uniform", process, 10)
    t = gamma_table(mix, mix, sigmas, n=100)
    noise = Noise.from_seed(0, 8)
    x = sample(mix, process.prior_std(float(sigmas[0])) * noise.randn(2), sigmas, noise,
               analytic_ddpm_step, gamma_table=t)
    assert x.shape == (8, 2) and torch.isfinite(x).all()
    with pytest.raises(ErrpropError, match="gamma_table"):
        analytic_ddpm_step(mix, x, 1.0, 0.5, noise)
    assert analytic_variance(1.0, 0.5, 0.0, data_range=(-1, 1)) <= 0.1875 + 0.5625 * 1.0
