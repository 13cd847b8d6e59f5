import math

import numpy as np
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


# --------------------------------------------------------- EPDM's schedules (docs/methods.md#beta-schedules)
def _np_sigmoid_abar_betas(T, start=-3.0, end=3.0, tau=1.0, endpoint_dtype=np.float64):
    """Independent numpy re-computation of EPDM's ``sigmoid_beta_schedule`` (src/epdm/models.py)."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    u = np.linspace(0.0, T, T + 1) / T
    v_start = endpoint_dtype(sig(np.float64(start / tau)))
    v_end = endpoint_dtype(sig(np.float64(end / tau)))
    abar = (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start)
    abar = abar / abar[0]
    return np.clip(1 - abar[1:] / abar[:-1], 0, 0.999)


@pytest.mark.parametrize("T,start,end,tau", [(1000, -3, 3, 1), (500, -3, 3, 1), (37, -3, 3, 1),
                                             (1000, -2, 4, 0.7), (200, -5, 1, 2.0)])
def test_sigmoid_abar_matches_numpy_recomputation(T, start, end, tau):
    p = VPProcess(T=T, schedule="sigmoid_abar", sigmoid_start=start, sigmoid_end=end, sigmoid_tau=tau)
    ref = _np_sigmoid_abar_betas(T, start, end, tau)
    # Same float64 formula, different arithmetic order: agreement to ~1e-12 relative.
    np.testing.assert_allclose(p.betas.numpy(), ref, rtol=1e-10, atol=1e-14)


def test_sigmoid_abar_vs_code_float32_endpoints():
    # The released code evaluates sigmoid(start/τ), sigmoid(end/τ) on float32 tensors; that shifts
    # its β by < 2e-5 relative at T = 1000 (the largest shift is in the last, near-saturated steps).
    p = VPProcess(T=1000, schedule="sigmoid_abar")
    ref = _np_sigmoid_abar_betas(1000, endpoint_dtype=np.float32)
    np.testing.assert_allclose(p.betas.numpy(), ref, rtol=2e-5, atol=0)


def test_sigmoid_abar_shape_endpoints_and_monotone_sigma():
    p = VPProcess(T=1000, schedule="sigmoid_abar")
    assert p.betas.shape == (1000,) and p.betas.dtype == torch.float64
    assert bool(torch.all(p.betas > 0)) and bool(torch.all(p.betas <= 0.999))
    assert p.betas[-1] == pytest.approx(0.999)  # β_T = 1 before the clip
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    # ᾱ_1 = (f(1) − f(1/T)) / (f(1) − f(0)), f(u) = sigmoid(6u − 3)
    abar1 = (sig(3) - sig(-3 + 6 / 1000)) / (sig(3) - sig(-3))
    assert float(p.alphas_cumprod[0]) == pytest.approx(abar1, rel=1e-12)
    assert 0.999 < float(p.alphas_cumprod[0]) < 1
    abar_prev = (sig(3) - sig(3 - 6 / 1000)) / (sig(3) - sig(-3))
    assert float(p.alphas_cumprod[-2]) == pytest.approx(abar_prev, rel=1e-9)
    assert float(p.alphas_cumprod[-1]) == pytest.approx(0.001 * abar_prev, rel=1e-9)
    assert bool(torch.all(p.sigmas[1:] > p.sigmas[:-1]))  # strictly increasing σ
    assert p.sigma_max == pytest.approx(math.sqrt((1 - 0.001 * abar_prev) / (0.001 * abar_prev)), rel=1e-6)
    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(p.t(p.sigma(t)), t, rtol=0, atol=1e-9)


def test_sigmoid_abar_ignores_beta_endpoints_and_is_not_diffusers_sigmoid():
    a = VPProcess(schedule="sigmoid_abar")
    b = VPProcess(schedule="sigmoid_abar", beta_start=1e-3, beta_end=0.5)
    torch.testing.assert_close(a.betas, b.betas, rtol=0, atol=0)
    assert (a.betas - VPProcess(schedule="sigmoid").betas).abs().max() > 0.1


@pytest.mark.parametrize("T", [1000, 500, 100])
def test_epdm_beta_scale(T):
    p = VPProcess(T=T, schedule="linear", beta_scale="epdm")
    ref = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)
    np.testing.assert_allclose(p.betas.numpy(), ref, rtol=1e-12, atol=0)
    if T == 1000:  # identity at T = 1000
        torch.testing.assert_close(p.betas, VPProcess(T=1000).betas, rtol=0, atol=0)
    if T == 500:
        assert float(p.betas[0]) == pytest.approx(2e-4) and float(p.betas[-1]) == pytest.approx(0.04)


def test_bad_schedule_parameters():
    with pytest.raises(ErrpropError, match="sigmoid_start < sigmoid_end"):
        VPProcess(schedule="sigmoid_abar", sigmoid_start=3, sigmoid_end=-3)
    with pytest.raises(ErrpropError, match="sigmoid_tau must be > 0"):
        VPProcess(schedule="sigmoid_abar", sigmoid_tau=0)
    with pytest.raises(ErrpropError, match="finite"):
        VPProcess(schedule="sigmoid_abar", sigmoid_end=math.inf)
    with pytest.raises(ErrpropError, match="flat|σ_t must increase"):
        VPProcess(schedule="sigmoid_abar", sigmoid_start=-60, sigmoid_end=60)
    with pytest.raises(ErrpropError, match="beta_scale: unknown"):
        VPProcess(beta_scale="iddpm")
    with pytest.raises(ErrpropError, match="does not use"):
        VPProcess(schedule="sigmoid_abar", beta_scale="epdm")
    with pytest.raises(ErrpropError, match="after beta_scale"):
        VPProcess(T=10, beta_scale="epdm")  # β_end = 0.02 × 100 = 2


def test_config_process_fields_reach_the_process():
    from errprop.builders import build_process
    from errprop.config import from_dict

    cfg = from_dict({"process": {"schedule": "sigmoid_abar", "sigmoid_start": -2, "sigmoid_end": 4,
                                 "sigmoid_tau": 0.7, "T": 200}})
    p = build_process(cfg)
    np.testing.assert_allclose(p.betas.numpy(), _np_sigmoid_abar_betas(200, -2, 4, 0.7), rtol=1e-10)
    p = build_process(from_dict({"process": {"T": 500, "beta_scale": "epdm"}}))
    assert float(p.betas[-1]) == pytest.approx(0.04)
    with pytest.raises(ErrpropError, match="config: process.sigmoid_start"):
        from_dict({"process": {"schedule": "sigmoid_abar", "sigmoid_start": 1, "sigmoid_end": 1}})
    with pytest.raises(ErrpropError, match="config: process.beta_scale 'epdm'"):
        from_dict({"process": {"schedule": "cosine", "beta_scale": "epdm"}})
    with pytest.raises(ErrpropError, match="config: process.beta_end"):
        from_dict({"process": {"T": 10, "beta_scale": "epdm"}})
    with pytest.raises(ErrpropError, match="sigmoid_tau must be > 0"):
        from_dict({"process": {"schedule": "sigmoid_abar", "sigmoid_tau": 0}})
