import pytest
import torch
from diffusers import DDPMScheduler

from errprop.errors import ErrpropError
from errprop.process import VEProcess, VPProcess


@pytest.mark.parametrize("ours,theirs", [("linear", "linear"), ("cosine", "squaredcos_cap_v2"),
                                         ("sigmoid", "sigmoid")])
def test_vp_alphas_match_diffusers(ours, theirs):
    p = VPProcess(T=1000, schedule=ours)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs).alphas_cumprod.double()
    torch.testing.assert_close(p.alphas_cumprod, ref, rtol=1e-5, atol=1e-7)


def test_vp_sigma_scale_views_agree():
    p = VPProcess()
    abar = p.alphas_cumprod
    torch.testing.assert_close(p.sigmas, ((1 - abar) / abar).sqrt())
    torch.testing.assert_close(p.scale(p.sigmas), abar.sqrt())
    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(p.t(p.sigma(t)), t, rtol=0, atol=1e-9)
    assert p.prior_std(p.sigma_max) == pytest.approx(float(1 / abar[-1].sqrt()))


def test_vp_fractional_t_is_log_linear():
    p = VPProcess()
    mid = p.sigma(torch.tensor(10.5))
    assert mid == pytest.approx(float((p.sigmas[10] * p.sigmas[11]).sqrt()))


def test_training_sigmas_cover_all_steps():
    p = VPProcess(T=10)
    s = p.sample_sigma(torch.linspace(0, 0.999, 1000, dtype=torch.float64))
    assert set(s.tolist()) == set(p.sigmas.tolist())


@pytest.mark.parametrize("kind", ["sqrt", "linear"])
def test_ve_process(kind):
    p = VEProcess(kind=kind, sigma_min=0.01, sigma_max=50)
    s = torch.tensor([0.01, 1.0, 50.0], dtype=torch.float64)
    torch.testing.assert_close(p.sigma(p.t(s)), s)
    assert torch.all(p.scale(s) == 1) and p.prior_std(50.0) == 50.0
    u = torch.rand(1000, dtype=torch.float64)
    sig = p.sample_sigma(u)
    assert sig.min() >= 0.01 and sig.max() <= 50


def test_bad_process_values():
    with pytest.raises(ErrpropError, match="T must be"):
        VPProcess(T=1)
    with pytest.raises(ErrpropError, match="unknown β schedule"):
        VPProcess(schedule="quadratic")
    with pytest.raises(ErrpropError, match="sigma_min"):
        VEProcess(sigma_min=5, sigma_max=1)
