"""SA-K: reductions to L_simple, τ's closed form, Theorem 2, the forward chain, one batched call."""

import pytest
import torch

from errprop.denoisers import Denoiser
from errprop.errors import ErrpropError
from errprop.losses.sequence_aware import SequenceAwareLoss, tau, window_mean
from errprop.losses.simple import SimpleLoss
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess


class Counting(torch.nn.Module):
    def __init__(self, denoiser):
        super().__init__()
        self.d, self.batches = denoiser, []

    def forward(self, x, sigma):
        self.batches.append(x.shape[0])
        return self.d(x, sigma)


def _den(p):
    torch.manual_seed(0)
    return Denoiser(MLP(3, width=32, depth=1), "eps", p)


def test_lambda_zero_and_k1_reduce_to_l_simple():
    p = VPProcess()
    d, x0 = _den(p), torch.randn(16, 3)
    simple = SimpleLoss(p, sigma_sampling="antithetic")(d, x0, Noise.from_seed(3, 16))["loss"]
    k1 = SequenceAwareLoss(p, K=1, tau="none")(d, x0, Noise.from_seed(3, 16))
    assert torch.equal(k1["loss_simple"], simple.detach()) and torch.equal(k1["loss_sa"], simple.detach())
    lam0 = SequenceAwareLoss(p, K=3, lam=0.0)(d, x0, Noise.from_seed(3, 16))
    # the anchor is evaluated inside one K·B batch: equal up to the network's BLAS rounding
    torch.testing.assert_close(lam0["loss"], simple, rtol=1e-6, atol=0)


def test_tau_closed_form_spot_values():
    t = tau(VPProcess())  # index t ↔ paper step t + 1
    for step, ref in ((2, 8.1e-3), (10, 4.0e-4), (100, 6.1e-6), (1000, 1.3e-8)):
        assert t[step - 1].item() == pytest.approx(ref, rel=0.02)
    for step, ratio, half_digit in ((10, 1.20, 0.005), (100, 1.02, 0.005), (300, 1.006, 0.0005)):
        assert (t[step - 2] / t[step - 1]).item() == pytest.approx(ratio, abs=half_digit)  # as quoted
    assert t[0] == 0


def test_theorem_2_bounds_on_random_predictors():
    """(T−1)/(T+K) L^τ_simple ≥ L_sa ≥ L_θ/(T+K)², exact expectations over all T+K windows."""
    T, K, B = 30, 3, 64
    p = VPProcess(T=T, beta_end=0.2)
    w = tau(p).float()
    g = torch.Generator().manual_seed(0)
    scale = torch.rand(T, 1, 1, generator=g) * 3
    err = scale * torch.randn(T, B, 4, generator=g) + 0.3 * torch.randn(1, B, 4, generator=g)
    l_tau_simple = (w[1:, None] ** 2 * err[1:].pow(2).sum(-1)).mean()  # t uniform on paper 2..T
    l_theta = (w[:, None, None] * err).sum(0).pow(2).sum(-1).mean()
    windows = []
    for start in range(-K + 1, T + 1):  # T + K windows; each step lies in exactly K of them
        idx = torch.arange(start, start + K)
        valid = (idx >= 0) & (idx < T)
        e = err[idx.clamp(0, T - 1)]
        weight = (w[idx.clamp(0, T - 1)] * valid)[:, None].expand(K, B)
        windows.append(window_mean(e, weight).pow(2).sum(-1).mean())
    l_sa = torch.stack(windows).mean()
    assert (T - 1) / (T + K) * l_tau_simple >= l_sa >= l_theta / (T + K) ** 2
    assert l_sa < 0.99 * (T - 1) / (T + K) * l_tau_simple  # not trivially tight on random errors


def test_chain_window_is_a_forward_trajectory():
    p = VPProcess(T=100)
    loss = SequenceAwareLoss(p, K=3, window_noise="chain", direction="up", t_sampling="uniform")
    B, d = 20000, 2
    x0 = torch.full((B, d), 0.5)
    t = torch.full((B,), 40)
    s, valid = loss.window(t)
    xs, eps = loss.forward_samples(x0, s, torch.randn(B, d), Noise.from_seed(0, B))
    sig = p.sigmas[s[:, 0]].float()
    for j in range(3):  # marginal: x̂_s = x0 + σ_s n
        assert abs(xs[j].mean().item() - 0.5) < 0.02 * sig[j] + 0.005
        assert xs[j].std().item() == pytest.approx(sig[j].item(), rel=0.02)
        torch.testing.assert_close(eps[j], (xs[j] - x0) / sig[j])
    for j in range(2):  # increments independent of the past, variance σ²_{s+1} − σ²_s
        inc = xs[j + 1] - xs[j]
        assert inc.std().item() == pytest.approx((sig[j + 1] ** 2 - sig[j] ** 2).sqrt().item(), rel=0.03)
        assert abs(torch.corrcoef(torch.stack([inc[:, 0], xs[j][:, 0]]))[0, 1].item()) < 0.03


def test_k_evaluations_are_one_batched_call_and_window_masks():
    p = VPProcess(T=50)
    d = Counting(_den(p))
    out = SequenceAwareLoss(p, K=4)(d, torch.randn(8, 3), Noise.from_seed(0, 8))
    assert d.batches == [32] and torch.isfinite(out["loss"])
    s, valid = SequenceAwareLoss(p, K=3).window(torch.tensor([0, 1, 49]))
    assert valid[:, 0].tolist() == [True, False, False] and valid[:, 2].all()
    s_up, valid_up = SequenceAwareLoss(p, K=3, direction="up").window(torch.tensor([48]))
    assert valid_up[:, 0].tolist() == [True, True, False]


def test_tau_modes_weight_the_window():
    p = VPProcess(T=50)
    s = torch.tensor([[10], [9]])
    valid = torch.ones_like(s, dtype=torch.bool)
    w_paper = SequenceAwareLoss(p, K=2, tau="paper").weights(s, valid)
    w_rel = SequenceAwareLoss(p, K=2, tau="relative").weights(s, valid)
    torch.testing.assert_close(w_paper[:, 0].double(), tau(p)[[10, 9]], rtol=1e-6, atol=0)
    torch.testing.assert_close(w_rel[:, 0], w_paper[:, 0] / w_paper[0, 0])


@pytest.mark.parametrize("field,value", [("K", 0), ("lam", -1.0), ("tau", "x"), ("direction", "left")])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ErrpropError, match=f"loss.sa.{field}"):
        SequenceAwareLoss(VPProcess(), **{field: value})
    with pytest.raises(ErrpropError, match="discrete VP"):
        SequenceAwareLoss(VEProcess())
