"""Cumulative error: one recorded chain equals separate runs, its cost is one sampling run, a
known bias raises it at every step, and the amplification fit recovers a known μ."""

import math

import numpy as np
import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.cumulative import (
    amplification,
    cumulative_error,
    knn_entropy,
    sample_distances,
)
from errprop.errors import ErrpropError
from errprop.generate import generate, run_chains
from errprop.grids import make_grid
from errprop.keys import KEY_DATA, KEY_DATA_NOISE
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess
from errprop.streams import draw_data


@pytest.fixture(scope="module")
def mix():
    return GaussianMixture.ring8()


def test_one_recorded_chain_equals_separate_runs_to_each_point(mix):
    process = VPProcess()
    sigmas = make_grid("uniform", process, 8)
    n, seed = 64, 3
    opts = {"variance": "small"}
    one = run_chains(mix, process, sigmas, n, (2,), seed=seed, step="ddpm", options=opts,
                     dtype=torch.float64)
    prof = cumulative_error(mix, process, mix, sigmas, n=n, seed=seed, options=opts,
                            metrics=("mmd2", "swd", "xent"), floor=False)
    x0 = draw_data(mix, n, seed, KEY_DATA).double()
    eps = Noise.from_seed(seed, n, key=(KEY_DATA_NOISE,)).randn(2, dtype=torch.float64)
    for j in range(1, len(sigmas)):
        # a separate run: a fresh chain with the same seeds on the grid cut at point j
        sep = run_chains(mix, process, sigmas[: j + 1], n, (2,), seed=seed, step="ddpm", options=opts,
                         record=[j], dtype=torch.float64)[j]
        assert torch.equal(sep, one[j])
        s = float(sigmas[j])
        scale = float(process.scale(torch.tensor(s, dtype=torch.float64)))
        ref = x0 + s * eps
        d = sample_distances(sep * scale, ref * scale, ("mmd2", "swd"), swd_seed=seed + j)
        d |= sample_distances(sep, ref, ("xent",), mixture=mix, sigma=s)
        for m in ("mmd2", "swd", "xent"):
            assert prof[m][j] == pytest.approx(d[m], rel=1e-6, abs=1e-9), (m, j)
    # the last point is exactly what `errprop sample` draws with the same seed, whatever the batch
    final = generate(mix, process, (2,), n, seed=seed, sampler="ddpm", steps=8, batch_size=10)
    torch.testing.assert_close(one[8].float(), final)
    batched = run_chains(mix, process, sigmas, n, (2,), seed=seed, step="ddpm", options=opts,
                         batch_size=7, record=[4], dtype=torch.float64)
    assert torch.equal(batched[4], one[4])


def test_profile_costs_one_sampling_run(mix):
    # docs/benchmarks.md#b5-diagnostics-cost: one pass over the grid; recording adds no denoiser call.
    process = VPProcess()
    for sampler, steps in (("ddpm", 20), ("heun", 10)):
        res = cumulative_error(mix, process, mix, make_grid("uniform", process, steps),
                               step=sampler, n=50, points=20, metrics=("mmd2",), floor=False)
        assert res["denoiser_evaluations"] == res["sampling_run_evaluations"]
        assert len(res["index"]) == min(20, steps + 1) and res["index"][-1] == steps


def test_known_bias_raises_cumulative_error_at_every_step(mix):
    # D + δ along a short VE chain from σ_max = 2 (whose start mismatch the exact chain shares).
    # All chains share their noise and the reference data. At σ_max they coincide; one step later
    # the δ = 0.2 shift is ≈ 0.14 of the spread, about 5 standard errors at n = 2000, so the strict
    # order holds (it did for seeds 0–3; at n = 600 or 1200 some seeds failed); from the second
    # step on every excess is above the data-vs-data floor.
    process = VEProcess(sigma_min=0.01, sigma_max=2.0)
    sigmas = make_grid("edm", process, 6)
    runs = {}
    for delta in (0.0, 0.2, 0.5):
        den = lambda x, s, delta=delta: mix(x, s) + delta  # noqa: E731
        runs[delta] = cumulative_error(den, process, mix, sigmas, n=2000, seed=0,
                                       metrics=("mmd2", "swd", "xent"), floor=delta == 0,
                                       dtype=torch.float64)
    for m in ("mmd2", "swd", "xent"):
        e0, e1, e2 = (np.array(runs[d][m]) for d in (0.0, 0.2, 0.5))
        floor = np.abs(runs[0.0][f"{m}_floor"])
        assert e0[0] == e1[0] == e2[0]
        assert (e1[1:] > e0[1:]).all() and (e2[1:] > e1[1:]).all(), (m, e0, e1, e2)
        assert (e1[2:] - e0[2:] > floor[2:]).all() and (e2[2:] - e1[2:] > floor[2:]).all(), m


def test_exact_chain_stays_at_the_floor(mix):
    # One chain's MMD² and the floor (|MMD²| of two data samples) are each one draw of a heavy-tailed
    # null distribution, and a chain carries its deviation from step to step, so a single seed's
    # ratio ranges over 0.3–4; averaged over 4 seeds both are stable estimates of the same scale.
    process = VEProcess(sigma_min=0.002, sigma_max=80)
    runs = [cumulative_error(mix, process, mix, make_grid("edm", process, 40), step="heun", n=300,
                             seed=s, points=8, metrics=("mmd2", "xent")) for s in range(4)]
    mmd, floor, xent = (np.mean([r[k] for r in runs], axis=0) for k in ("mmd2", "mmd2_floor", "xent"))
    assert (mmd < 2 * floor).all(), (mmd, floor)
    assert np.abs(xent).max() < 0.1, xent


def test_image_data_gets_sample_metrics_only():
    imgs = torch.rand(80, 1, 4, 4) * 2 - 1
    process = VPProcess(T=100)
    res = cumulative_error(lambda x, s: torch.zeros_like(x), process, imgs,
                           make_grid("uniform", process, 5), n=40)
    assert set(res) >= {"mmd2", "swd", "mmd2_floor"} and "xent" not in res
    assert res["t"][0] == 99.0 and res["t"][-1] == -1.0
    with pytest.raises(ErrpropError, match="mixture"):
        cumulative_error(lambda x, s: x, process, imgs, make_grid("uniform", process, 5), n=40,
                         metrics=("xent",))
    with pytest.raises(ErrpropError, match="data samples"):
        cumulative_error(lambda x, s: x, process, imgs, make_grid("uniform", process, 5), n=60)


def test_knn_entropy_of_a_gaussian():
    x = Noise.from_seed(0, 2000).randn(2, dtype=torch.float64) * 0.5
    assert knn_entropy(x) == pytest.approx(math.log(2 * math.pi * math.e * 0.25), abs=0.05)


def test_amplification_recovers_a_known_factor():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.01, 0.02, 30)
    c = [0.1]
    for mj in m:
        c.append(1.3 * c[-1] + mj)
    fit = amplification(c, m)
    assert fit["mu"] == pytest.approx(1.3) and fit["mu_std"] < 1e-9
    np.testing.assert_allclose(fit["mu_per_step"], 1.3)
    noisy = np.array(c) * (1 + 0.05 * rng.standard_normal(len(c)))
    fit = amplification(noisy, list(m[:-1]) + [None])
    assert fit["steps_used"] == 29 and fit["mu_q05"] < fit["mu"] < fit["mu_q95"]
    assert abs(fit["mu"] - 1.3) < 4 * fit["mu_std"]
    with pytest.raises(ErrpropError, match="m \\+ 1"):
        amplification(c[:-1], m)
