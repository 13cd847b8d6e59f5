"""The local error per step and its discretization / learned split, on the exact oracle."""

import numpy as np
import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.local import local_error, probability_flow_step
from errprop.errors import ErrpropError
from errprop.grids import custom
from errprop.process import VEProcess
from errprop.samplers import step_options

MIX, PROCESS = GaussianMixture.ring8(), VEProcess()


def _geometric(n: int) -> torch.Tensor:
    """σ_i = 80 (0.002/80)^{i/n}, i = 0..n, then 0: the grid of 2n steps halves every step of n."""
    return custom((80 * (0.002 / 80) ** (np.arange(n + 1) / n)).tolist())


def _run(denoiser, step, n, chains=16):
    return local_error(denoiser, MIX, PROCESS, _geometric(n), step=step,
                       options=step_options(step, n + 1, PROCESS), n=chains, substeps=8)


@pytest.mark.parametrize("step,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_exact_denoiser_learned_part_is_zero_and_discretization_falls_at_the_order(step, order):
    """Halving every step divides a p-th order solver's local error by 2^{p+1}: measured as the
    median over the interior steps (past the first, whose multistep warm-up is first order, and
    before the last two, near σ_min and into 0) of log2(error of step i on n / error of step 2i on
    2n), within ± 0.5."""
    coarse, fine = _run(MIX, step, 16), _run(MIX, step, 32)
    assert max(coarse["learned"]) == 0 and max(fine["learned"]) == 0
    assert coarse["local"] == coarse["discretization"]
    a = np.array(coarse["discretization"][2:-2])
    b = np.array(fine["discretization"][4:-4:2])
    rate = float(np.median(np.log2(a / b)))
    assert abs(rate - (order + 1)) < 0.5, (step, rate)


def test_a_learned_error_shows_in_the_learned_part():
    def model(x, sigma):
        return MIX(x, sigma) + 0.01 * torch.tanh(x)

    r = _run(model, "unipc_2", 8)
    assert min(r["learned"]) > 1e-4
    for tot, d, e in zip(r["local"], r["discretization"], r["learned"]):
        assert tot <= d + e + 1e-12  # the triangle inequality, per sample and so on average


def test_the_exact_flow_step_is_converged():
    x = MIX.sample_n(16, seed=0).double() + 2.0 * torch.randn(16, 2, dtype=torch.float64)
    a = probability_flow_step(MIX, x, 2.0, 0.5, 64)
    b = probability_flow_step(MIX, x, 2.0, 0.5, 256)
    assert (a - b).norm(dim=1).max() < 1e-6


def test_stochastic_samplers_are_refused():
    with pytest.raises(ErrpropError, match="modular"):
        local_error(MIX, MIX, PROCESS, _geometric(4), step="dpmpp_2m_sde", n=4)


def test_the_error_budget_runs_the_multistep_solvers():
    from errprop.diagnostics.budget import compare_schedules

    res = compare_schedules(MIX, MIX, PROCESS, sampler="unipc_3",
                            options=step_options("unipc_3", 6, PROCESS), steps=(6,), grids=("edm",), n=40,
                            reference_steps=128)
    table = res["grids"]["edm"]
    assert table["E_S"]["mmd"] == [0.0] and table["E_D"]["path"][0] > 0
