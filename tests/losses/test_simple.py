"""SimpleLoss equals the classical losses computed by hand."""

import pytest
import torch

from errprop.denoisers import Denoiser
from errprop.errors import ErrpropError
from errprop.losses.simple import SimpleLoss
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess


def _den(kind, process):
    torch.manual_seed(0)
    return Denoiser(MLP(3, width=32, depth=1), kind, process)


def test_eps_weighting_is_ddpm_l_simple():
    p = VPProcess()
    d = _den("eps", p)
    x0 = torch.randn(16, 3)
    loss = SimpleLoss(p)(d, x0, Noise.from_seed(0, 16))["loss"]
    noise = Noise.from_seed(0, 16)
    sigma = SimpleLoss(p).sample_sigma(noise)
    eps = noise.randn(3)
    t = p.t(sigma).round().long()
    abar = p.alphas_cumprod[t].float()[:, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    ref = (d.net(x_t, t.float()) - eps).pow(2).sum(1).mean()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["x0", "v", "edm"])
def test_other_weightings_are_their_classical_losses(kind):
    p = VPProcess() if kind != "edm" else VEProcess()
    d = _den(kind, p)
    x0 = torch.randn(8, 3)
    sampling = "lognormal" if kind == "edm" else "uniform"
    loss = SimpleLoss(p, weighting=kind, sigma_sampling=sampling)
    got = loss(d, x0, Noise.from_seed(1, 8))["loss"]
    noise = Noise.from_seed(1, 8)
    sigma = loss.sample_sigma(noise)
    n = noise.randn(3)
    s = sigma[:, None]
    x = x0 + s * n
    D = d(x, sigma)
    if kind == "x0":
        ref = (D - x0).pow(2).sum(1).mean()
    elif kind == "v":  # v = √ᾱ ε − √(1−ᾱ) x0 in x_t space; v̂ from D
        a = (1 / (1 + s**2)).sqrt()
        v = a * n - a * s * x0
        v_hat = (a**2 * x - D) / (a * s)
        ref = (v_hat - v).pow(2).sum(1).mean()
    else:
        w = (s**2 + 0.25) / (s * 0.5) ** 2
        ref = (w * (D - x0) ** 2).sum(1).mean()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_input_perturbation_keeps_eps_target():
    p = VPProcess()
    d = _den("eps", p)
    x0 = torch.randn(8, 3)
    loss = SimpleLoss(p, input_perturbation=0.1)
    got = loss(d, x0, Noise.from_seed(2, 8))["loss"]
    noise = Noise.from_seed(2, 8)
    sigma = loss.sample_sigma(noise)
    n, xi = noise.randn(3), noise.randn(3)
    x = x0 + sigma[:, None] * (n + 0.1 * xi)
    eps_hat = (x - d(x, sigma)) / sigma[:, None]
    torch.testing.assert_close(got, (eps_hat - n).pow(2).sum(1).mean(), rtol=1e-5, atol=1e-6)


def test_antithetic_pairs_and_bad_values():
    p = VPProcess(T=100)
    sig = SimpleLoss(p, sigma_sampling="antithetic").sample_sigma(Noise.from_seed(0, 10))
    t = p.t(sig).round()
    torch.testing.assert_close(t[:5] + t[5:], torch.full((5,), 99.0, dtype=t.dtype))
    with pytest.raises(ErrpropError, match="sigma_sampling"):
        SimpleLoss(p, sigma_sampling="beta")
    with pytest.raises(ErrpropError, match="weighting"):
        SimpleLoss(p, weighting="score")
