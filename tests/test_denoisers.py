"""Each parameterization turns the ideal network output into the exact denoiser."""

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.denoisers import Denoiser, eps_from_denoised
from errprop.errors import ErrpropError
from errprop.process import VEProcess, VPProcess


class Ideal(torch.nn.Module):
    """Returns what a perfect network of a parameterization would output (for a mixture)."""

    def __init__(self, mix, kind, process, sigma_data=0.5):
        super().__init__()
        self.mix, self.kind, self.process, self.sd = mix, kind, process, sigma_data
        self.sigma = None

    def forward(self, inp, c_noise):
        s = self.sigma[:, None]
        d = Denoiser(torch.nn.Identity(), self.kind, self.process, self.sd)
        c_skip, c_out, c_in, _ = d.coefficients(self.sigma)
        x = inp / c_in[:, None]
        return (self.mix.denoise(x, self.sigma) - c_skip[:, None] * x) / c_out[:, None] + 0 * s


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "edm"])
@pytest.mark.parametrize("process", [VPProcess(), VEProcess()])
def test_ideal_network_gives_exact_denoiser(kind, process):
    mix = GaussianMixture.ring8()
    sigma = torch.tensor([0.05, 0.5, 3.0, 20.0], dtype=torch.float64)
    x = mix.sample_n(4).double() + sigma[:, None] * torch.randn(4, 2, dtype=torch.float64)
    net = Ideal(mix, kind, process)
    net.sigma = sigma
    out = Denoiser(net, kind, process)(x, sigma)
    torch.testing.assert_close(out, mix.denoise(x, sigma))


def test_eps_parameterization_is_ddpm():
    """With a VP process the ε-network sees x_t = √ᾱ x̂ and the timestep index."""
    p = VPProcess()
    seen = {}

    def net(inp, c_noise):
        seen["inp"], seen["t"] = inp, c_noise
        return torch.zeros_like(inp)

    class Net(torch.nn.Module):
        forward = staticmethod(net)

    x = torch.randn(3, 2, dtype=torch.float64)
    sig = p.sigmas[[10, 500, 999]]
    out = Denoiser(Net(), "eps", p)(x, sig)
    torch.testing.assert_close(seen["inp"], x * p.alphas_cumprod[[10, 500, 999], None].sqrt())
    torch.testing.assert_close(seen["t"], torch.tensor([10.0, 500.0, 999.0], dtype=torch.float64))
    torch.testing.assert_close(eps_from_denoised(x, out, sig), torch.zeros_like(x))


def test_unknown_parameterization():
    with pytest.raises(ErrpropError, match="parameterization"):
        Denoiser(torch.nn.Identity(), "score", VPProcess())


def test_epsilon_scaling_divides_the_noise_estimate():
    from errprop.denoisers import EpsilonScaled
    from errprop.process import VPProcess

    torch.manual_seed(0)
    process = VPProcess()

    class Net(torch.nn.Module):
        def forward(self, x, c):
            return x * 0.5 + 1  # ε̂ as a simple known function of the input

    d = Denoiser(Net(), "eps", process)
    x, sigma = torch.randn(4, 3), 2.0
    eps = eps_from_denoised(x, d(x, sigma), torch.tensor(sigma))
    es = EpsilonScaled(d, b=1.25)
    assert torch.allclose(eps_from_denoised(x, es(x, sigma), torch.tensor(sigma)), eps / 1.25, atol=1e-6)
    assert torch.allclose(EpsilonScaled(d, b=1.0)(x, sigma), d(x, sigma))
    t = float(process.t(torch.tensor(sigma)))
    lin = EpsilonScaled(d, b=1.0, k=0.001, process=process)
    assert torch.allclose(eps_from_denoised(x, lin(x, sigma), torch.tensor(sigma)),
                          eps / (1 + 0.001 * t), atol=1e-6)
