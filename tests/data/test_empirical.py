"""The ideal denoiser of a finite point set against brute force, the mixture oracle and sampling."""

import pytest
import torch

from errprop.data.empirical import EmpiricalDenoiser
from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.generate import run_chains
from errprop.grids import make_grid
from errprop.process import VEProcess, VPProcess

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force(points: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """softmax(−‖x − x_i‖²/2σ²) @ X in float64, all at once."""
    p, q = points.reshape(len(points), -1).double(), x.reshape(len(x), -1).double()
    d2 = ((q[:, None, :] - p[None]) ** 2).sum(-1)
    w = torch.softmax(-d2 / (2 * sigma.double()[:, None] ** 2), 1)
    return (w @ p).reshape(x.shape)


def test_equals_brute_force_in_float64_across_chunks_and_sigmas():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(50, 1, 2, 3, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.randn(23, 1, 2, 3, generator=g, dtype=torch.float64)
    # small chunks and query batches: the running max moves between chunks, most columns are
    # pruned at small σ, every query batch is partial
    den = EmpiricalDenoiser(points, chunk=7, query_batch=5)
    sigma = torch.tensor([0.01, 0.05, 0.3, 1.0, 3.0, 30.0] * 4)[:23].double()
    torch.testing.assert_close(den(x, sigma), brute_force(points, x, sigma), rtol=0, atol=1e-12)
    for s in (0.02, 0.7):  # a scalar σ
        full = torch.full((23,), s, dtype=torch.float64)
        torch.testing.assert_close(den(x, s), brute_force(points, x, full), rtol=0, atol=1e-12)


def test_float32_queries_keep_dtype_and_shape_and_sigma_zero_is_the_nearest_point():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    den = EmpiricalDenoiser(points)
    x = torch.tensor([[0.9, 0.2], [0.1, 1.5]])
    out = den(x, torch.tensor([0.0, 0.0]))
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, points[[1, 2]])
    dist, idx = den.nearest(x)
    assert idx.tolist() == [1, 2]
    torch.testing.assert_close(dist, torch.tensor([0.2236068, 0.5099020], dtype=torch.float64))
    # far from the data D* is the mean of the points; close, one point holds all the weight
    _, far = den.denoise_with_weights(x, 1e4)
    torch.testing.assert_close(far["ess"], torch.full((2,), 3.0, dtype=torch.float64))
    _, near = den.denoise_with_weights(x, 0.01)
    torch.testing.assert_close(near["w_max"], torch.ones(2, dtype=torch.float64))


def test_equals_the_mixture_oracle_with_vanishing_covariance():
    g = torch.Generator().manual_seed(1)
    points = torch.randn(12, 4, generator=g, dtype=torch.float64)
    tau2 = 1e-14  # equal-weight components N(x_i, τ² I), τ → 0
    mix = GaussianMixture(torch.ones(12), points, tau2 * torch.eye(4, dtype=torch.float64).expand(12, 4, 4))
    den = EmpiricalDenoiser(points, chunk=5)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64) * 1.5
    for s in (0.05, 0.4, 2.0, 20.0):
        torch.testing.assert_close(den(x, s), mix(x, s), rtol=0, atol=1e-9)


def test_sampling_with_many_steps_returns_training_points():
    g = torch.Generator().manual_seed(2)
    points = torch.rand(16, 1, 3, 3, generator=g) * 2 - 1
    den = EmpiricalDenoiser(points)
    for process, step, grid in ((VEProcess(), "heun", "edm"), (VPProcess(), "ddpm", "uniform"),
                                (VPProcess(), "ddim", "uniform")):
        sigmas = make_grid(grid, process, 200)
        out = run_chains(den, process, sigmas, 64, (1, 3, 3), step=step,
                         options={"process": process} if step == "ddpm" else None,
                         record=[200], dtype=torch.float64)[200]
        dist, idx = den.nearest(out)
        assert dist.max() < 1e-3, (step, dist.max())
        assert len(set(idx.tolist())) >= 8  # many training points, not one mode


def test_draws_are_training_points_and_bad_input_is_an_error():
    from errprop.noise import Noise

    points = torch.arange(10.0).reshape(5, 2)
    den = EmpiricalDenoiser(points)
    draws = den.sample(Noise.from_seed(0, 200))
    assert {tuple(r) for r in draws.tolist()} <= {tuple(r) for r in points.tolist()}
    assert len({tuple(r) for r in draws.tolist()}) == 5
    with pytest.raises(ErrpropError, match="shape"):
        den(torch.zeros(3, 3), 1.0)
    with pytest.raises(ErrpropError):
        EmpiricalDenoiser(torch.zeros(5))
