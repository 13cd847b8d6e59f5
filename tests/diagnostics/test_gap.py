"""SA's estimation gap: zero for a denoiser that knows x0, exact after one shared-noise step."""

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.gap import default_start, estimation_gap, gap_grid
from errprop.errors import ErrpropError
from errprop.grids import make_grid
from errprop.process import VEProcess, VPProcess


@pytest.fixture(scope="module")
def setup():
    mix = GaussianMixture.ring8()
    return mix, VPProcess(), mix.sample_n(64, seed=5).double()


def test_default_start_is_paper_step_300():
    p = VPProcess()
    assert default_start(p) == float(p.sigmas[299])
    assert default_start(VEProcess()) == default_start(p)
    assert default_start(VPProcess(T=100)) == float(VPProcess(T=100).sigmas[29])
    g = gap_grid(p, default_start(p))
    assert len(g) == 301 and g[0] == p.sigmas[299] and g[-2] == p.sigmas[0] and g[-1] == 0


def test_gap_is_zero_when_the_denoiser_knows_x0(setup):
    mix, process, x0 = setup
    for step, opts in (("ddpm", {}), ("ddim", {"eta": 0.5}), ("heun", {})):
        res = estimation_gap(lambda x, s: x0, process, x0, step=step, options=opts,
                             sigmas=make_grid("uniform", process, 50) if step != "ddpm" else None)
        assert res["gap"] == [0.0] * len(res["gap"]), step


def test_gap_after_one_step_is_the_denoising_error(setup):
    # Shared noise: after one DDPM step x^θ − x^oracle = (1 − c)(D(x̂_t0) − x0) exactly, in x̂.
    mix, process, x0 = setup
    res = estimation_gap(mix, process, x0, space="unscaled", seed=2)
    from errprop.keys import KEY_DATA_NOISE
    from errprop.noise import Noise

    s, s1 = res["sigma"][0], res["sigma"][1]
    eps = Noise.from_seed(2, len(x0), key=(KEY_DATA_NOISE,)).randn(2, dtype=torch.float64)
    err = (1 - s1**2 / s**2) * (mix(x0 + s * eps, s) - x0)
    assert res["gap"][1] == pytest.approx(float(err.norm(dim=1).mean()), rel=1e-9)
    assert res["gap"][0] == 0 and res["t"][0] == 299 and res["t"][-1] == -1
    # the exact denoiser is not the oracle: the gap grows along the chain
    assert res["gap"][-1] > 5 * res["gap"][1] > 0


def test_gap_grows_with_a_bias_and_rejects_bad_input(setup):
    mix, process, x0 = setup
    grid = make_grid("uniform", process, 100)
    base = estimation_gap(mix, process, x0, sigmas=grid)["gap"][-1]
    biased = estimation_gap(lambda x, s: mix(x, s) + 0.1, process, x0, sigmas=grid)["gap"][-1]
    assert biased > base
    with pytest.raises(ErrpropError, match="x0"):
        estimation_gap(mix, process, torch.zeros(3))
