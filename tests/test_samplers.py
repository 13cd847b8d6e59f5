"""Samplers against diffusers' schedulers and against the exact Gaussian-mixture oracle."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from errprop.data.gmm import GaussianMixture
from errprop.denoisers import Denoiser
from errprop.errors import ErrpropError
from errprop.generate import generate
from errprop.grids import edm_rho, make_grid
from errprop.metrics.mmd import mmd2
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess
from errprop.samplers import get_step, nfe, prior, sample


class FixedNoise:
    """Hands out a given sequence of batch noise tensors (to share injected noise with diffusers)."""

    def __init__(self, draws):
        self.draws = list(draws)

    def randn(self, *shape, dtype=torch.float32):
        return self.draws.pop(0).to(dtype)


def _eps_net(dim=4, seed=0):
    torch.manual_seed(seed)
    return MLP(dim, width=64, depth=2).eval()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("n", [10, 50])
def test_ddim_matches_diffusers(spacing, n):
    net, process = _eps_net(), VPProcess()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                          set_alpha_to_one=True, timestep_spacing=spacing)
    sched.set_timesteps(n)
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net(x, t.float().expand(16)), t, x, eta=0.0).prev_sample
    sigmas = make_grid("uniform", process, n, spacing=spacing)
    ours = sample(Denoiser(net, "eps", process), z / process.scale(sigmas[0]).float(), sigmas,
                  FixedNoise([]), "ddim", eta=0.0)
    assert _rel(ours, x) < 1e-5


@pytest.mark.parametrize("variance,theirs", [("small", "fixed_small"), ("large", "fixed_large")])
def test_ddpm_matches_diffusers(variance, theirs):
    net, process, n = _eps_net(), VPProcess(), 50
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                          variance_type=theirs)
    sched.set_timesteps(n)
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net(x, t.float().expand(16)), t, x, generator=g).prev_sample
    g2 = torch.Generator().manual_seed(2)  # diffusers draws one batch of noise per step, t > 0 only
    draws = [torch.randn(16, 4, generator=g2) for _ in range(n - 1)]
    sigmas = make_grid("uniform", process, n, spacing="leading")
    ours = sample(Denoiser(net, "eps", process), z / process.scale(sigmas[0]).float(), sigmas,
                  FixedNoise(draws), "ddpm", variance=variance, process=process)
    assert _rel(ours, x) < 1e-5


def test_update_rule_identities():
    """DDIM η=0 is Euler on the ODE; DDPM (β̃) is DDIM η=1: same draws give the same samples."""
    mix, process = GaussianMixture.ring8(), VPProcess()
    sig = make_grid("uniform", process, 20)
    x = prior(process, float(sig[0]), Noise.from_seed(0, 64), (2,))
    a = sample(mix, x, sig, Noise.from_seed(0, 64), "ddim", eta=0.0)
    b = sample(mix, x, sig, Noise.from_seed(0, 64), "euler")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    c = sample(mix, x, sig, Noise.from_seed(5, 64), "ddim", eta=1.0)
    d = sample(mix, x, sig, Noise.from_seed(5, 64), "ddpm", variance="small")
    torch.testing.assert_close(c, d, rtol=1e-5, atol=1e-6)


def _mmd_floor(mix, n, reps=100, q=0.99):
    """q-quantile of MMD² between two independent exact draws of size n: the sampling-noise floor."""
    vals = [mmd2(mix.sample_n(n, seed=1000 + 2 * r), mix.sample_n(n, seed=1001 + 2 * r)).item()
            for r in range(reps)]
    return float(np.quantile(vals, q))


def test_heun_with_exact_denoiser_reproduces_ring8():
    mix, process, n = GaussianMixture.ring8(), VEProcess(sigma_min=0.002, sigma_max=80), 1000
    x = generate(mix, process, (2,), n, seed=0, sampler="heun", steps=50, grid="edm")
    stat = mmd2(x, mix.sample_n(n, seed=99)).item()
    assert stat <= _mmd_floor(mix, n), stat
    counts, off = mix.mode_counts(x)
    assert off <= 0.01 * n and counts.min() > 0.09 * n


def test_euler_order_1_and_heun_order_2():
    mix = GaussianMixture.ring8()
    noise = Noise.from_seed(0, 128)
    x0 = 80 * noise.randn(2, dtype=torch.float64)
    ref = sample(mix, x0, edm_rho(0.002, 80, 768), noise, "heun")
    ns = np.array([32, 64, 128])  # past the pre-asymptotic range of the ρ=7 grid
    for step, order in (("euler", 1), ("heun", 2)):
        err = [(sample(mix, x0, edm_rho(0.002, 80, int(k)), noise, step) - ref).norm(dim=1).mean().item()
               for k in ns]
        slope = np.polyfit(np.log(ns), np.log(err), 1)[0]
        assert abs(-slope - order) < 0.3, (step, slope, err)


def test_same_seed_same_samples_whatever_batch_size():
    mix, process = GaussianMixture.ring8(), VPProcess()
    kw = dict(seed=3, sampler="ddpm", steps=10)
    a = generate(mix, process, (2,), 50, batch_size=50, **kw)
    b = generate(mix, process, (2,), 50, batch_size=7, **kw)
    assert torch.equal(a, b)
    c = generate(mix, process, (2,), 50, batch_size=50, **{**kw, "seed": 4})
    assert not torch.equal(a, c)


def test_churn_draws_noise_and_callback_sees_every_step():
    mix, process = GaussianMixture.ring8(), VEProcess()
    seen = []
    sig = edm_rho(0.002, 80, 8)
    x = prior(process, 80.0, Noise.from_seed(0, 16), (2,))
    sample(mix, x, sig, Noise.from_seed(0, 16), "heun", callback=seen.append, gamma=0.2)
    assert [s["i"] for s in seen] == list(range(8)) and seen[-1]["sigma_next"] == 0
    assert nfe("heun", 8) == 15 and nfe("ddim", 8) == 8
    with pytest.raises(ErrpropError, match="unknown sampler"):
        get_step("dpm++")


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_ddim_clip_sample_matches_diffusers(spacing):
    """clip=1 is diffusers' clip_sample=True: x̂0 clamped, the ε direction left unclipped."""
    net, process, n = _eps_net(), VPProcess(), 10
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                          set_alpha_to_one=True, timestep_spacing=spacing)
    sched.set_timesteps(n)
    z = 3 * torch.randn(16, 4, generator=torch.Generator().manual_seed(1))  # far enough to clip
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net(x, t.float().expand(16)), t, x, eta=0.0).prev_sample
    sigmas = make_grid("uniform", process, n, spacing=spacing)
    d = Denoiser(net, "eps", process)
    ours = sample(d, z / process.scale(sigmas[0]).float(), sigmas, FixedNoise([]), "ddim", clip=1.0)
    unclipped = sample(d, z / process.scale(sigmas[0]).float(), sigmas, FixedNoise([]), "ddim")
    assert _rel(ours, x) < 1e-5
    assert _rel(unclipped, x) > 1e-3  # the test data does reach the clip
    assert ours.abs().max() <= 1.0


def test_ddpm_clip_sample_matches_diffusers():
    net, process, n = _eps_net(), VPProcess(), 20
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    sched.set_timesteps(n)
    z = 3 * torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net(x, t.float().expand(16)), t, x, generator=g).prev_sample
    g2 = torch.Generator().manual_seed(2)
    draws = [torch.randn(16, 4, generator=g2) for _ in range(n - 1)]
    sigmas = make_grid("uniform", process, n, spacing="leading")
    ours = sample(Denoiser(net, "eps", process), z / process.scale(sigmas[0]).float(), sigmas,
                  FixedNoise(draws), "ddpm", process=process, clip=1.0)
    assert _rel(ours, x) < 1e-5


def test_is_gaussian_says_which_steps_have_a_gaussian_density():
    from errprop.analytic_dpm import analytic_ddpm_step
    from errprop.samplers import is_gaussian, is_stochastic

    assert is_gaussian("ddpm", {}) and is_gaussian("ddim", {"eta": 0.5})
    assert not is_gaussian("ddim", {"eta": 0})
    assert is_gaussian("euler_ancestral", {"eta": 1.0}) and is_gaussian(analytic_ddpm_step, {})
    churn = {"gamma": 0.1}  # noise enters before the denoiser: stochastic, not Gaussian given x̂
    assert not is_gaussian("euler", churn) and is_stochastic("euler", churn)
    # a multistep SDE step's law depends on the history too
    assert not is_gaussian("dpmpp_2m_sde", {}) and is_stochastic("dpmpp_2m_sde", {})
    assert not is_gaussian("heun", None)
    with pytest.raises(ErrpropError, match="unknown sampler step"):
        is_gaussian("nope", {})
