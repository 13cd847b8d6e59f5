"""The residual MLP for low-dimensional data: shapes, conditioning, parameter count, gradients,
determinism."""

from __future__ import annotations

import pytest
import torch

from errprop.nets.mlp import MLP


def _mlp(**kw) -> MLP:
    torch.manual_seed(0)
    return MLP(**{"dim": 2, "width": 32, "depth": 2, "emb_dim": 16, **kw})


@pytest.mark.parametrize("dim, batch", [(1, 5), (2, 7), (10, 3)])
def test_output_shaped_like_input(dim, batch):
    net = _mlp(dim=dim)
    x = torch.randn(batch, dim)
    y = net(x, torch.rand(batch) * 999)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


def test_output_depends_on_c_noise_and_input():
    net = _mlp().eval()
    x = torch.randn(4, 2)
    assert not torch.allclose(net(x, torch.full((4,), 0.0)), net(x, torch.full((4,), 500.0)))
    assert not torch.allclose(net(x, torch.zeros(4)), net(torch.randn(4, 2), torch.zeros(4)))


def test_parameter_count_formula():
    dim, w, depth, e = 3, 32, 4, 16

    def linear(i: int, o: int) -> int:
        return i * o + o

    block = 2 * w + linear(w, w) + 2 * linear(w, w)  # LayerNorm, embedding projection, fc1, fc2
    expected = linear(e, w) + linear(w, w) + linear(dim, w) + depth * block + 2 * w + linear(w, dim)
    net = MLP(dim, width=w, depth=depth, emb_dim=e)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_gradients_reach_every_parameter():
    net = _mlp()
    net(torch.randn(8, 2), torch.rand(8) * 999).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_deterministic_given_seed():
    x, c = torch.randn(6, 2), torch.rand(6)
    a, b = _mlp(dropout=0.3).eval(), _mlp(dropout=0.3).eval()
    assert torch.equal(a(x, c), b(x, c))
    a.train()
    torch.manual_seed(3)
    y = a(x, c)
    torch.manual_seed(3)
    assert torch.equal(y, a(x, c))
    assert not torch.equal(y, a(x, c))  # dropout is active in training


def test_rows_do_not_depend_on_the_batch():
    net = _mlp().eval()
    x, c = torch.randn(6, 2), torch.rand(6) * 999
    torch.testing.assert_close(net(x, c)[:2], net(x[:2], c[:2]))
