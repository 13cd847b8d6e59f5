"""Excess cross-entropy: closed forms for shifted and Gaussian samples, and the robust companions
(median, 1 %-trimmed mean, outlier fraction) that a few far-off samples cannot dominate."""

import math

import pytest
import torch

from errprop.metrics.xent import TRIM, excess_cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_data_itself_has_no_excess():
    ref = torch.randn(1000, generator=torch.Generator().manual_seed(0)).abs()
    out = excess_cross_entropy(ref.clone(), ref)
    assert out == {"mean": 0.0, "median": 0.0, "trimmed": 0.0, "outliers": 0.0}
    assert all(isinstance(v, float) for v in out.values())


def test_a_constant_shift_is_the_excess_of_every_summary():
    ref = torch.arange(100, dtype=torch.float64)  # −log p of the data: 0, 1, …, 99
    out = excess_cross_entropy(ref + 10, ref)
    assert out["mean"] == pytest.approx(10) and out["median"] == pytest.approx(10)
    assert out["trimmed"] == pytest.approx(10)
    assert out["outliers"] == pytest.approx(0.10)  # 90 + 10 … 99 + 10 lie above the data's max 99


def test_one_far_sample_moves_the_mean_only():
    """The mean is dominated by one sample 10⁶ nats off; median and trimmed mean are not moved."""
    n = 1001
    ref = torch.linspace(0, 5, n, dtype=torch.float64)
    nll = ref.clone()
    nll[-1] = 1e6  # the least likely sample, far off
    out = excess_cross_entropy(nll, ref)
    assert out["mean"] == pytest.approx((1e6 - 5) / n)
    assert out["median"] == 0.0 and out["trimmed"] == 0.0
    assert out["outliers"] == pytest.approx(1 / n)
    assert int(n * (1 - TRIM)) < n  # the trimmed mean drops at least that one sample


def test_gaussian_samples_off_by_mu_have_excess_mu_squared_over_two():
    """Samples of N(μ, 1) scored under p = N(0, 1): E[−log p] = ½ log 2π + ½ (1 + μ²), so the
    excess over data of p is μ²/2; its median is ½ (median of χ²₁(μ²) − median of χ²₁)."""
    g = torch.Generator().manual_seed(1)
    n, mu = 200_000, 1.0

    def nll(x):
        return 0.5 * math.log(2 * math.pi) + 0.5 * x.double() ** 2

    x, ref = torch.randn(n, generator=g) + mu, torch.randn(n, generator=g)
    out = excess_cross_entropy(nll(x), nll(ref))
    assert out["mean"] == pytest.approx(mu**2 / 2, abs=0.02)  # standard error ≈ 0.004
    from scipy.stats import chi2, ncx2

    median = 0.5 * (ncx2.median(1, mu**2) - chi2.median(1))
    assert out["median"] == pytest.approx(median, abs=0.02)
    assert out["trimmed"] < out["mean"]  # the far tail of the shifted samples is trimmed more


def test_one_sample_and_any_shape():
    out = excess_cross_entropy(torch.tensor([3.0]), torch.tensor([1.0]))
    assert out == {"mean": 2.0, "median": 2.0, "trimmed": 2.0, "outliers": 1.0}
    a = torch.arange(12.0).reshape(3, 4)
    assert excess_cross_entropy(a, a.flatten()) == excess_cross_entropy(a.flatten(), a)
