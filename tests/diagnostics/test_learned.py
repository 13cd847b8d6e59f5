"""The learned part of each step's error against an exact denoiser, and where D* memorises."""

import math

import numpy as np
import pytest
import torch

from errprop.data.empirical import EmpiricalDenoiser
from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.kernel_sets import KernelSets, mean_sq_distance
from errprop.diagnostics.learned import (
    entry_range,
    learned_split,
    memorisation,
    memorisation_grid,
    memorisation_levels,
)
from errprop.errors import ErrpropError
from errprop.grids import make_grid
from errprop.metrics.mmd import mmd2
from errprop.process import VPProcess


@pytest.fixture(scope="module")
def images():
    """A small "image" training set and a disjoint held-out set from one 16-D mixture."""
    mix = GaussianMixture.random(16, components=6, seed=3, scale=0.5)
    return mix.sample_n(200, seed=1).reshape(200, 1, 4, 4), mix.sample_n(200, seed=2).reshape(
        200, 1, 4, 4)


def test_the_exact_denoiser_has_no_learned_part(images):
    train, _ = images
    den = EmpiricalDenoiser(train)
    process = VPProcess(T=100)
    sigmas = make_grid("uniform", process, 8)
    res = learned_split(den, den, process, train, sigmas, step="ddim", n=64, n_boot=50,
                        dtype=torch.float64)
    assert res["learned"] == [0.0] * 8 and res["final"]["E_S"]["value"] == 0.0
    assert res["total"] == res["discretization"] and res["deviation"] == [0.0] * 9
    assert len(res["step_sigma"]) == 8 and len(res["sigma"]) == 9 and res["sigma"][-1] == 0.0
    assert res["enters"]["sigma_hi"] is None


def test_a_known_bias_is_the_learned_error_at_every_step_and_grows_the_split(images):
    train, _ = images
    den = EmpiricalDenoiser(train)
    process = VPProcess(T=100)
    sigmas = make_grid("uniform", process, 8)
    res = {}
    for delta in (0.05, 0.3):
        def model(x, s, delta=delta):
            return den(x, s) + delta

        res[delta] = learned_split(model, den, process, train, sigmas, step="ddpm",
                                   options={"process": process}, n=64, n_boot=100,
                                   dtype=torch.float64)
        for v, e, s in zip(res[delta]["learned"], res[delta]["learned_eps"],
                           res[delta]["step_sigma"]):
            assert v == pytest.approx(16 * delta**2, rel=1e-9)
            assert e == pytest.approx(v / s**2, rel=1e-9)
    small, big = res[0.05]["final"], res[0.3]["final"]
    assert 0 < small["path"]["value"] < big["path"]["value"]
    assert small["E_S"]["value"] < big["E_S"]["value"]  # (the small bias: within noise, 0)
    assert big["E_S"]["lo"] <= big["E_S"]["value"] <= big["E_S"]["hi"]
    assert big["total"]["value"] > big["floor"]["value"]
    assert big["discretization_share"]["value"] < small["discretization_share"]["value"]
    assert res[0.3]["deviation"][-1] > res[0.05]["deviation"][-1] > 0
    enters = res[0.3]["enters"]
    assert enters["sigma_lo"] < enters["sigma_hi"] and enters["share"] >= 0.5


def test_works_with_a_mixture_as_the_exact_denoiser():
    mix = GaussianMixture.ring8()
    process = VPProcess(T=100)
    res = learned_split(lambda x, s: mix(x, s) * 0.9, mix, process, mix,
                        make_grid("uniform", process, 5), step="ddim", n=64, n_boot=20,
                        dtype=torch.float64)
    assert all(v > 0 for v in res["learned"]) and res["final"]["path"]["value"] > 0


def test_memorisation_marks_small_sigma_and_the_model_generalises(images):
    train, test = images
    den = EmpiricalDenoiser(train)
    sigmas = torch.tensor([20.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.0], dtype=torch.float64)
    # a "model" that returns its input at small σ (no copying) and D* at large σ
    res = memorisation(den, test, sigmas, model=lambda x, s: x if s < 0.5 else den(x, s), n=64)
    assert res["sigma"] == sigmas[:-1].tolist()
    assert res["memorises"][-1] and not res["memorises"][0]
    assert res["ratio"][-1] < 0.1 and res["w_max"][-1] > 0.99
    assert res["ess"][0] > res["ess"][-1]
    assert 0.01 < res["reference_valid_from"] <= 20.0
    valid = [s >= res["reference_valid_from"] for s in res["sigma"]]
    assert all(not m for m, v in zip(res["memorises"], valid) if v)
    assert res["ratio_model"][-1] > 0.9  # x̂ ≈ x_test is as far from the training set as x_test
    assert res["mse_model"][-1] < res["mse_exact"][-1]
    with pytest.raises(ErrpropError, match="ideal denoiser"):
        memorisation(GaussianMixture.ring8(), test, sigmas)


def test_entry_range_and_levels():
    r = entry_range([10.0, 5.0, 1.0, 0.0], [0.0, 0.1, 0.9, 1.0])
    assert (r["sigma_hi"], r["sigma_lo"], r["intervals"]) == (5.0, 1.0, [[5.0, 1.0]])
    assert r["share"] == pytest.approx(0.8)
    assert entry_range([1.0, 0.0], [0.0, 0.0])["sigma_hi"] is None
    lv = memorisation_levels(torch.logspace(1, -2, 40), k=12)
    assert len(lv) == 12 and lv[0] == pytest.approx(10.0) and lv[-1] == pytest.approx(0.01)
    process = VPProcess()
    lv = memorisation_grid(process, make_grid("uniform", process, 4))
    assert 12 <= len(lv) <= 16 and lv == sorted(lv, reverse=True)
    assert lv[-1] == pytest.approx(process.sigma_min) and lv[0] == pytest.approx(process.sigma_max)


def test_kernel_sets_match_mmd2():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g), torch.randn(40, 5, generator=g) + 0.5
    beta = mean_sq_distance(y)
    ks = KernelSets({"x": x, "y": y}, beta)
    ref = float(mmd2(x.double(), y.double(), bandwidth=beta))
    assert ks.mmd2("x", "y") == pytest.approx(ref, rel=1e-10)
    assert math.isclose(ks.mmd2("x", "x"), 0.0, abs_tol=1e-12)
    # the unbiased estimate leaves out a sample's pair with itself, by original index, so that a
    # bootstrap resample's repeats do not push it up
    xx = ks.k[:30, :30]
    u = (xx.sum() - xx.trace()) / (30 * 29)
    yy = ks.k[30:, 30:]
    u += (yy.sum() - yy.trace()) / (40 * 39) - 2 * ks.k[:30, 30:].mean()
    assert ks.mmd2("x", "y", unbiased=True) == pytest.approx(u, rel=1e-10)
    rep = np.array([0, 0, 0, 1, 2])  # repeats of sample 0 count as one sample against itself
    assert ks.mmd2("x", "x", rep, rep, unbiased=True, paired=True) == pytest.approx(0, abs=1e-12)


def test_a_churned_step_is_measured_at_the_state_it_reports(images):
    from errprop.process import VEProcess

    train, _ = images
    den = EmpiricalDenoiser(train)
    process = VEProcess()
    res = learned_split(lambda x, s: den(x, s) + 0.1, den, process, train,
                        make_grid("edm", process, 4), step="euler", options={"gamma": 0.5}, n=32,
                        n_boot=10, dtype=torch.float64)
    for v in res["learned"]:  # D_θ − D* = 0.1 everywhere, at the same (x̂, σ)
        assert v == pytest.approx(16 * 0.01, rel=1e-9)
