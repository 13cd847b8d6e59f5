"""DPM-Solver++, UniPC and Euler ancestral against diffusers' schedulers and the exact oracle."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, UniPCMultistepScheduler

from errprop.data.gmm import GaussianMixture
from errprop.denoisers import Denoiser
from errprop.grids import edm_rho, make_grid
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VPProcess
from errprop.samplers import nfe, prior, sample, step_options

B, DIM = 16, 4
PRED = {"epsilon": "eps", "v_prediction": "v"}


class FixedNoise:
    """Hands out a given sequence of batch noise tensors (to share injected noise with diffusers)."""

    def __init__(self, draws):
        self.draws = list(draws)

    def randn(self, *shape, dtype=torch.float32):
        return self.draws.pop(0).to(dtype)


class RoundedVP(VPProcess):
    """diffusers' multistep schedulers on a Karras grid evaluate the network at the *rounded*
    timestep of each σ (while the update uses σ itself); errprop conditions on the exact fractional
    t. This process rounds, so that the sampler arithmetic can be compared alone."""

    def c_noise(self, sigma):
        return super().c_noise(sigma).round()


def _net(seed=0):
    torch.manual_seed(seed)
    return MLP(DIM, width=64, depth=2).eval()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _theirs(sched, net, x, generator=None):
    with torch.no_grad():
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            kw = {} if generator is None else {"generator": generator}  # UniPC takes none
            x = sched.step(net(inp, t.float().expand(len(x))), t, x, **kw).prev_sample
    return x


def _grid(process, n, spacing, karras, final):
    sigmas = make_grid("edm" if karras else "uniform", process, n, spacing=spacing)
    if final == "sigma_min":  # diffusers' final_sigmas_type="sigma_min" stops at σ(t = 0)
        sigmas[-1] = process.sigmas[0]
    return sigmas


# (prediction, spacing, karras, final_sigmas_type); Karras with sigma_min would make a zero-length
# last step (the Karras grid already ends at σ_min), so it is not a setting anyone samples with.
SETTINGS = [
    ("epsilon", "trailing", False, "zero"),
    ("epsilon", "leading", False, "zero"),
    ("v_prediction", "trailing", False, "sigma_min"),
    ("v_prediction", "leading", False, "zero"),
    ("epsilon", "trailing", True, "zero"),
    ("v_prediction", "trailing", True, "zero"),
    ("epsilon", "leading", False, "sigma_min"),
]
OURS_SPACING = {"trailing": "trailing", "leading": "leading_multistep"}


def _compare(sched, sampler, pred, spacing, karras, final, n, sde=False):
    process = RoundedVP() if karras else VPProcess()
    net = _net()
    sched.set_timesteps(n)
    sigmas = _grid(process, n, OURS_SPACING[spacing], karras, final)
    # (diffusers' σ(t = 0) comes from float32 ᾱ_0 = 1 − 1e-4: only 1e-4 relative)
    torch.testing.assert_close(sigmas.float(), sched.sigmas.float(), rtol=1e-4, atol=0)
    z = torch.randn(B, DIM, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    theirs = _theirs(sched, net, z.clone(), g if sde else None)
    g2 = torch.Generator().manual_seed(2)  # diffusers draws a batch of noise at every SDE step
    draws = [torch.randn(B, DIM, generator=g2) for _ in range(n)] if sde else []
    opts = step_options(sampler, n, process)
    ours = sample(Denoiser(net, PRED[pred], process), z / process.scale(sigmas[0]).float(), sigmas,
                  FixedNoise(draws), sampler, **opts)
    ours = ours * process.scale(sigmas[-1]).float()  # back to x_t (σ_min: not quite x0)
    return _rel(ours, theirs)


@pytest.mark.parametrize("pred,spacing,karras,final", SETTINGS)
@pytest.mark.parametrize("sampler,order,n", [("dpmpp_2m", 2, 10), ("dpmpp_2m", 2, 20), ("dpmpp_3m", 3, 10),
                                             ("dpmpp_3m", 3, 20)])
def test_dpmpp_equals_diffusers(sampler, order, n, pred, spacing, karras, final):
    sched = DPMSolverMultistepScheduler(solver_order=order, prediction_type=pred, timestep_spacing=spacing,
                                        use_karras_sigmas=karras, final_sigmas_type=final)
    assert _compare(sched, sampler, pred, spacing, karras, final, n) < 1e-4


@pytest.mark.parametrize("pred,spacing,karras,final", SETTINGS)
@pytest.mark.parametrize("n", [10, 20])
def test_dpmpp_2m_sde_equals_diffusers(n, pred, spacing, karras, final):
    sched = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", prediction_type=pred,
                                        timestep_spacing=spacing, use_karras_sigmas=karras,
                                        final_sigmas_type=final)
    assert _compare(sched, "dpmpp_2m_sde", pred, spacing, karras, final, n, sde=True) < 1e-4


@pytest.mark.parametrize("pred,spacing,karras,final", SETTINGS)
@pytest.mark.parametrize("sampler,order,n", [("unipc_2", 2, 10), ("unipc_2", 2, 20), ("unipc_3", 3, 10),
                                             ("unipc_3", 3, 20)])
def test_unipc_equals_diffusers(sampler, order, n, pred, spacing, karras, final):
    sched = UniPCMultistepScheduler(solver_order=order, prediction_type=pred, timestep_spacing=spacing,
                                    use_karras_sigmas=karras, final_sigmas_type=final)
    assert _compare(sched, sampler, pred, spacing, karras, final, n) < 1e-4


def test_the_options_change_the_result():
    """lower_order_final and disable_corrector are honoured (the equality above would not notice
    an option that both sides ignore). The grid stops at σ_min: diffusers' UniPC without
    lower_order_final fails on a grid ending at 0 (a singular system, h = ∞); errprop takes first
    order into σ = 0 whatever the option."""
    process, net = VPProcess(), _net()
    d = Denoiser(net, "eps", process)
    sigmas = _grid(process, 8, "trailing", False, "sigma_min")
    x = torch.randn(B, DIM, generator=torch.Generator().manual_seed(1)) / process.scale(sigmas[0]).float()
    base = sample(d, x, sigmas, FixedNoise([]), "unipc_3", **step_options("unipc_3", 8, process))
    for settings in ({"disable_corrector": [3]}, {"lower_order_final": False}):
        theirs = UniPCMultistepScheduler(solver_order=3, timestep_spacing="trailing",
                                         final_sigmas_type="sigma_min", **settings)
        theirs.set_timesteps(8)
        ref = _theirs(theirs, net, x * process.scale(sigmas[0]).float()) / process.scale(sigmas[-1]).float()
        opts = step_options("unipc_3", 8, process, **settings)
        ours = sample(d, x, sigmas, FixedNoise([]), "unipc_3", **opts)
        assert _rel(ours, ref) < 1e-4 and _rel(ours, base) > 1e-4, settings
    zero = make_grid("uniform", process, 8)
    ours = sample(d, x, zero, FixedNoise([]), "unipc_3", **step_options("unipc_3", 8, process,
                                                                         lower_order_final=False))
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_euler_ancestral_equals_diffusers(pred, spacing):
    n, process, net = 10, VPProcess(), _net()
    sched = EulerAncestralDiscreteScheduler(prediction_type=pred, timestep_spacing=spacing)
    sched.set_timesteps(n)
    sigmas = make_grid("uniform", process, n, spacing=spacing)
    torch.testing.assert_close(sigmas.float(), sched.sigmas.float(), rtol=1e-4, atol=0)
    x = sched.init_noise_sigma * torch.randn(B, DIM, generator=torch.Generator().manual_seed(1))
    theirs = _theirs(sched, net, x.clone(), torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # one batch per step; the last (σ' = 0) is unused
    draws = [torch.randn(B, DIM, generator=g) for _ in range(n)]
    ours = sample(Denoiser(net, PRED[pred], process), x, sigmas, FixedNoise(draws), "euler_ancestral",
                  **step_options("euler_ancestral", n, process))
    assert _rel(ours, theirs) < 1e-4


def test_euler_ancestral_is_ddim_eta_and_eta_0_is_euler():
    mix, process = GaussianMixture.ring8(), VPProcess()
    sig = make_grid("uniform", process, 12)
    x = prior(process, float(sig[0]), Noise.from_seed(0, 64), (2,))
    a = sample(mix, x, sig, Noise.from_seed(4, 64), "euler_ancestral", eta=0.5)
    b = sample(mix, x, sig, Noise.from_seed(4, 64), "ddim", eta=0.5)
    assert torch.equal(a, b)
    c = sample(mix, x, sig, Noise.from_seed(4, 64), "euler_ancestral", eta=0.0)
    torch.testing.assert_close(c, sample(mix, x, sig, Noise.from_seed(0, 64), "euler"), rtol=1e-5, atol=1e-6)


def test_nfe_counts_network_evaluations():
    counts, mix = [], GaussianMixture.ring8()

    def counting(x, sigma):
        counts.append(1)
        return mix(x, sigma)

    process = VPProcess()
    sig = make_grid("uniform", process, 7)
    x = prior(process, float(sig[0]), Noise.from_seed(0, 8), (2,))
    for name in ("heun", "dpmpp_3m", "unipc_3", "euler_ancestral", "dpmpp_2m_sde"):
        counts.clear()
        sample(counting, x, sig, Noise.from_seed(0, 8), name, **step_options(name, 7, process))
        assert len(counts) == nfe(name, 7), name
    assert nfe("unipc_2", 7) == 7 and nfe("heun", 7) == 13


def test_a_multistep_run_does_not_depend_on_batching_or_earlier_runs():
    """The history lives in the loop's state: one chain's result depends on its own stream only."""
    mix, process = GaussianMixture.ring8(), VPProcess()
    sig = make_grid("uniform", process, 10)
    x = prior(process, float(sig[0]), Noise.from_seed(0, 32), (2,))
    whole = sample(mix, x, sig, Noise.from_seed(3, 32), "dpmpp_2m_sde")
    again = sample(mix, x, sig, Noise.from_seed(3, 32), "dpmpp_2m_sde")
    part = sample(mix, x[5:9], sig, Noise.from_seed(3, 32)[5:9], "dpmpp_2m_sde")
    assert torch.equal(whole, again) and torch.equal(whole[5:9], part)


def _slope(step, ns, x0, noise, ref, mix):
    err = [(sample(mix, x0, edm_rho(0.002, 80, int(k)), noise, step) - ref).norm(dim=1).mean().item()
           for k in ns]
    return -np.polyfit(np.log(ns), np.log(err), 1)[0], err


def test_orders_of_convergence_on_the_exact_oracle():
    """Global error at σ = 0 against a converged reference, exact ring-of-8 denoiser, EDM ρ = 7 grids
    of 64, 128, 256 steps from σ = 80. The reference is UniPC-3 with 1024 steps (error ~1e-9 by
    its own rate), checked against an independent solver (Heun, 1024 steps: error ~2e-6).

    Measured (and asserted, tolerances stated):
    - DPM-Solver++ 2M: slope 2 ± 0.3.
    - DPM-Solver++ 3M: 2.2–3.3 and below 2M's error at every n. Its first step is first order (the
      history is empty), a local error O(h²) that the later steps do not divide, so its global
      order is 3 only until that term dominates (2.6 then 2.3 between consecutive n here).
    - UniPC-p: p + 1 (± 0.4 for p = 2, ± 0.6 for p = 3): the corrector UniC-p raises the order of
      accuracy by one (Zhao et al. 2023, Thm 3.3) at no extra evaluation.
    """
    mix = GaussianMixture.ring8()
    noise = Noise.from_seed(0, 32)
    x0 = 80 * noise.randn(2, dtype=torch.float64)
    ref = sample(mix, x0, edm_rho(0.002, 80, 1024), noise, "unipc_3")
    heun = sample(mix, x0, edm_rho(0.002, 80, 1024), noise, "heun")
    assert (heun - ref).norm(dim=1).mean() < 1e-5
    ns = np.array([64, 128, 256])
    s2, e2 = _slope("dpmpp_2m", ns, x0, noise, ref, mix)
    s3, e3 = _slope("dpmpp_3m", ns, x0, noise, ref, mix)
    u2, _ = _slope("unipc_2", ns, x0, noise, ref, mix)
    u3, _ = _slope("unipc_3", ns, x0, noise, ref, mix)
    assert abs(s2 - 2) < 0.3, (s2, e2)
    assert 2.2 < s3 < 3.3 and all(a < b for a, b in zip(e3, e2)), (s3, e3, e2)
    assert abs(u2 - 3) < 0.4, u2
    assert abs(u3 - 4) < 0.6, u3
