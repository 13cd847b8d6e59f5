"""Sliced Wasserstein: zero for identical sets, exact in 1-D, the closed form for a shift."""

import math

import pytest
import torch

from errprop.errors import ErrpropError
from errprop.metrics import sliced_wasserstein


def test_zero_for_identical_and_permuted_sets():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, 4, 4, generator=g)
    assert sliced_wasserstein(x, x.clone(), generator=g).item() == 0.0
    perm = torch.randperm(100, generator=g)
    assert sliced_wasserstein(x, x[perm], generator=g).item() < 1e-6


@pytest.mark.parametrize("p", [1, 2])
def test_one_dimensional_shift_is_exact(p):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 1, generator=g, dtype=torch.float64)
    value = sliced_wasserstein(x, x + 0.7, n_projections=8, generator=g, p=p)
    assert value.item() == pytest.approx(0.7, rel=1e-12)


def test_one_dimensional_matches_sorted_coupling():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 1, generator=g, dtype=torch.float64)
    y = torch.rand(300, 1, generator=g, dtype=torch.float64) * 3
    w2 = ((x.sort(0).values - y.sort(0).values) ** 2).mean().sqrt()
    assert sliced_wasserstein(x, y, generator=g).item() == pytest.approx(w2.item(), rel=1e-12)


def test_shift_in_d_dimensions_is_norm_over_sqrt_d():
    g = torch.Generator().manual_seed(3)
    d = 16
    x = torch.randn(200, d, generator=g, dtype=torch.float64)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    value = sliced_wasserstein(x, x + v, n_projections=4000, generator=g).item()
    assert value == pytest.approx(v.norm().item() / math.sqrt(d), rel=0.05)


def test_seeded_and_differentiable():
    x = torch.randn(50, 5, requires_grad=True)
    y = torch.randn(50, 5) + 1
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(4))
    b = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item()
    a.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ErrpropError, match="same .* number of samples"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ErrpropError, match="p must be"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 2), p=0.5)
