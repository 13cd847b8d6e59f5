"""MMD² against a plain numpy reference; zero for identical sets; grows with a shift; gradients."""

import numpy as np
import pytest
import torch

from errprop.errors import ErrpropError
from errprop.metrics import mmd2, mmd2_unbiased


def numpy_mmd2(x, y, multipliers=(0.25, 0.5, 1, 2, 4), unbiased=False):
    """EP's estimator written out with loops over the kernel terms, in float64."""
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    z = np.concatenate([x, y])
    n_all = len(z)
    d2 = np.array([[((a - b) ** 2).sum() for b in z] for a in z])
    beta = d2[~np.eye(n_all, dtype=bool)].mean()
    k = sum(np.exp(-d2 / (beta * m)) for m in multipliers)
    n = len(x)
    kxx, kxy, kyy = k[:n, :n], k[:n, n:], k[n:, n:]
    if not unbiased:
        return kxx.mean() - 2 * kxy.mean() + kyy.mean()
    m = len(y)
    off = lambda a: (a.sum() - np.trace(a)) / (len(a) * (len(a) - 1))  # noqa: E731
    assert kxx.shape == (n, n) and kyy.shape == (m, m)
    return off(kxx) - 2 * kxy.mean() + off(kyy)


@pytest.mark.parametrize("unbiased", [False, True])
def test_matches_numpy_reference(unbiased):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2, 3, 3))
    y = rng.normal(size=(20, 2, 3, 3)) * 1.3 + 0.4
    fn = mmd2_unbiased if unbiased else mmd2
    got = fn(torch.from_numpy(x), torch.from_numpy(y))
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(numpy_mmd2(x, y, unbiased=unbiased), rel=1e-10)
    got32 = fn(torch.from_numpy(x).float(), torch.from_numpy(y).float()).item()
    assert got32 == pytest.approx(numpy_mmd2(x, y, unbiased=unbiased), rel=1e-4)


def test_zero_for_identical_sets_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    assert abs(mmd2(x, x.clone()).item()) < 1e-6
    y = torch.randn(64, 8, generator=g)
    shifts = [0.0, 0.5, 1.0, 2.0]
    values = [mmd2(x, y + s, bandwidth=16.0).item() for s in shifts]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    # the biased estimate is positive for independent draws of one law; the unbiased one ≈ 0
    assert values[0] > 0
    unbiased = [mmd2_unbiased(x, y + s, bandwidth=16.0).item() for s in shifts]
    assert abs(unbiased[0]) < 0.1 * unbiased[2]


def test_bandwidth_has_no_gradient_but_samples_do():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g, requires_grad=True)
    y = torch.randn(16, 4, generator=g) + 1
    mmd2(x, y).backward()
    # reference gradient with the data-driven bandwidth frozen at its value
    z = torch.cat([x.detach(), y])
    d2 = torch.cdist(z, z) ** 2
    beta = (d2.sum() / (32 * 31)).item()
    x2 = x.detach().clone().requires_grad_(True)
    mmd2(x2, y, bandwidth=beta).backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-7)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ErrpropError, match="different sizes"):
        mmd2(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ErrpropError, match="bandwidth must be positive"):
        mmd2(torch.zeros(3, 4), torch.ones(3, 4), bandwidth=0.0)
    with pytest.raises(ErrpropError, match="≥ 2 samples"):
        mmd2_unbiased(torch.zeros(1, 4), torch.ones(3, 4))
