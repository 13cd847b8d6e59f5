"""The Gaussian-mixture oracle against independent references (scipy, autograd, Monte Carlo)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2, multivariate_normal

from errprop.data.gmm import GaussianMixture, off_mode_radius
from errprop.errors import ErrpropError
from errprop.noise import Noise, stream_seeds


@pytest.fixture(params=["ring8", "grid25", "random"])
def mix(request):
    return GaussianMixture.preset(request.param, dim=5, components=4, seed=1)


def test_log_prob_matches_scipy(mix):
    x = torch.randn(20, mix.dim, dtype=torch.float64)
    sigma = 0.3
    eye = torch.eye(mix.dim, dtype=torch.float64)
    ref = np.log(sum(float(w) * multivariate_normal(m.numpy(), (c + sigma**2 * eye).numpy()).pdf(x.numpy())
                     for w, m, c in zip(mix.weights, mix.means, mix.covs)))
    np.testing.assert_allclose(mix.log_prob(x, sigma).numpy(), ref, rtol=1e-10)


def test_score_is_gradient_of_log_prob_and_tweedie(mix):
    x = torch.randn(10, mix.dim, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(mix.log_prob(x, 0.5).sum(), x)
    torch.testing.assert_close(mix.score(x.detach(), 0.5), grad)


def test_denoiser_is_posterior_mean_by_monte_carlo():
    """E[x0 | x̂] by self-normalised importance sampling: x0 ~ p_data weighted by N(x̂; x0, σ²I)."""
    mix = GaussianMixture.ring8()
    sigma = 0.4
    x0 = mix.sample_n(200_000, seed=3).double()
    points = torch.tensor([[0.7, 0.3], [-0.2, 0.0], [1.5, -1.0]], dtype=torch.float64)
    logw = -((points[:, None] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)
    mc = torch.einsum("pn,nd->pd", torch.softmax(logw, 1), x0)
    torch.testing.assert_close(mix.denoise(points, sigma), mc, atol=0.01, rtol=0)


def test_exact_samples_have_mixture_moments():
    mix = GaussianMixture.random(3, components=3, seed=2)
    x = mix.sample_n(100_000, seed=0).double()
    mean = (mix.weights[:, None] * mix.means).sum(0)
    second = (mix.weights[:, None, None] * (mix.covs + mix.means[:, :, None] * mix.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None]
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.03, rtol=0)


def test_denoiser_limits():
    mix = GaussianMixture.ring8()
    x = mix.sample_n(50, seed=1)
    torch.testing.assert_close(mix.denoise(x, 1e-4), x, atol=1e-4, rtol=0)  # σ → 0: identity
    far = mix.denoise(x * 0, 1e3)  # σ → ∞: the data mean
    torch.testing.assert_close(far, torch.zeros_like(far), atol=1e-3, rtol=0)


def test_mode_counts_and_bad_presets():
    mix = GaussianMixture.ring8()
    counts, off = mix.mode_counts(mix.sample_n(8000))
    assert off < 20 and counts.min() > 900
    _, off = mix.mode_counts(torch.zeros(10, 2))
    assert off == 10
    with pytest.raises(ErrpropError, match="unknown mixture"):
        GaussianMixture.preset("swissroll")


@pytest.mark.parametrize("dim", [2, 16, 128])
def test_exact_draws_are_on_mode_in_any_dimension(dim):
    """The off-mode radius follows the dimension: exact draws are off-mode at the rate e⁻⁸ it is set
    for (≈ 3e-4; at D = 2 exactly radius 4), where a fixed radius 4 loses half of them in 16-D."""
    mix = GaussianMixture.preset("random", dim=dim, components=8, seed=0)
    x = mix.sample_n(4000, seed=3)
    _, off = mix.mode_counts(x)
    assert off <= 8  # expected 1.3
    if dim >= 16:
        assert mix.mode_counts(x, radius=4.0)[1] > 1000
    assert off_mode_radius(2) == 4.0
    assert off_mode_radius(2) == pytest.approx(math.sqrt(chi2.isf(math.exp(-8), 2)), rel=1e-12)
    with pytest.raises(ErrpropError, match="shapes disagree"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2))


def _sample_by_definition(mix: GaussianMixture, noise: Noise) -> torch.Tensor:
    """The draw as defined (word 0: the component; then d normals z): μ_k + L_k z, row by row."""
    u = noise.rand(1, dtype=torch.float64)[:, 0]
    k = torch.searchsorted(mix.weights.cumsum(0), u).clamp(max=len(mix.weights) - 1)
    z = noise.randn(mix.dim, dtype=torch.float64)
    chol = torch.linalg.cholesky(mix.covs)
    x = torch.empty_like(z)
    for j in k.unique().tolist():
        rows = (k == j).nonzero().squeeze(1)
        x[rows] = mix.means[j] + z[rows] @ chol[j].T
    return x.float()


_SHARED_COV = (lambda q: q @ torch.diag(torch.tensor([0.3, 0.02, 0.07], dtype=torch.float64)) @ q.T)(
    torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))[0])


@pytest.mark.parametrize("name", ["ring8", "random", "shared"])
def test_sample_is_the_definition_bit_for_bit(name):
    """The vectorised draw — one matrix product where all components share a factor (ring8, grid25),
    consecutive blocks of a sort by component otherwise — is the definition exactly, at any size."""
    if name == "shared":  # one full (non-diagonal) covariance for all components
        mix = GaussianMixture(torch.ones(4), torch.randn(4, 3, dtype=torch.float64),
                              ((_SHARED_COV + _SHARED_COV.T) / 2).expand(4, 3, 3))
    else:
        mix = GaussianMixture.preset(name, dim=16, components=8, seed=3)
    assert (mix._shared_chol_t is None) == (name == "random")
    for n in (0, 1, 7, 256, 1001):
        seeds = stream_seeds(5, np.arange(1000, 1000 + n), 17)
        assert torch.equal(mix.sample(Noise(seeds)), _sample_by_definition(mix, Noise(seeds)))
