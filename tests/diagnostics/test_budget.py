"""DS's error budget on the ring of 8: E_S = 0 for the exact score, E_D at the sampler's order,
E_I falling with σ_max, and the schedule comparison."""

import numpy as np
import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.budget import compare_schedules, converged_reference, error_budget
from errprop.errors import ErrpropError
from errprop.keys import KEY_START, KEY_START_DATA
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess
from errprop.streams import draw_data


@pytest.fixture(scope="module")
def mix():
    return GaussianMixture.ring8()


def test_E_S_is_zero_for_the_exact_denoiser(mix):
    for process, sampler in ((VPProcess(), "ddpm"), (VEProcess(), "heun")):
        grid = "uniform" if sampler == "ddpm" else "edm"
        res = error_budget(mix, mix, process, sampler=sampler, grid=grid, steps=10, n=128,
                           reference_steps=64)
        assert res["E_S"] == {"mmd": 0.0, "swd": 0.0, "path": 0.0}
        assert ("path" in res["E_D"]) == (sampler == "heun")
    e_s = [error_budget(lambda x, s, d=d: mix(x, s) + d, mix, VEProcess(), steps=10, n=128,
                        reference_steps=64, dtype=torch.float64)["E_S"] for d in (0.03, 0.1)]
    for key in ("mmd", "swd", "path"):
        assert 0 < e_s[0][key] < e_s[1][key], (key, e_s)


def test_E_D_shrinks_at_the_order_of_the_sampler(mix):
    # The exact-score chain from exact q_σmax draws against the converged ODE solution from the
    # same starts (no sampling floor): Euler is first order, Heun second (cf. tests/test_samplers).
    process, n = VEProcess(sigma_min=0.002, sigma_max=80), 64
    w = Noise.from_seed(0, n, key=(KEY_START,)).randn(2, dtype=torch.float64)
    start = draw_data(mix, n, 0, KEY_START_DATA, torch.float64) + 80 * w
    ref = converged_reference(mix, process, start, 0.002, 80, 768)
    ns = np.array([32, 64, 128])
    for sampler, order in (("euler", 1), ("heun", 2)):
        res = [error_budget(mix, mix, process, sampler=sampler, steps=int(k), n=n, reference=ref)
               for k in ns]
        for key in ("path", "mmd_ref"):
            err = [r["E_D"][key] for r in res]
            slope = np.polyfit(np.log(ns), np.log(err), 1)[0]
            assert abs(-slope - order) < 0.3, (sampler, key, slope, err)


def test_E_I_shrinks_as_sigma_max_grows(mix):
    e_i = [error_budget(mix, mix, VEProcess(sigma_min=0.002, sigma_max=s), sampler="heun",
                        steps=32, n=128, reference_steps=64)["E_I"] for s in (5, 20, 80)]
    for key in ("mmd", "swd", "path"):
        v = [e[key] for e in e_i]
        assert v[0] > v[1] > v[2] > 0, (key, v)


def test_compare_schedules_reports_both_ds_grids(mix):
    res = compare_schedules(mix, mix, VEProcess(sigma_min=0.002, sigma_max=80), sampler="heun",
                            steps=(4, 8), n=64, reference_steps=64)
    assert set(res["grids"]) == {"edm", "exponential"} and res["steps"] == [4, 8]
    for table in res["grids"].values():
        assert table["E_S"]["mmd"] == [0.0, 0.0] and len(table["E_D"]["path"]) == 2
        assert table["E_D"]["path"][1] < table["E_D"]["path"][0]
    assert all(len(v) == 2 and set(v) <= {"edm", "exponential"} for v in res["preferred"].values())


def test_budget_needs_a_mixture(mix):
    with pytest.raises(ErrpropError, match="Gaussian-mixture"):
        error_budget(mix, torch.zeros(10, 2), VEProcess())


def test_budget_on_images_with_the_ideal_denoiser_as_the_exact_reference():
    from errprop.data.empirical import EmpiricalDenoiser

    g = torch.Generator().manual_seed(0)
    den = EmpiricalDenoiser(torch.rand(300, 1, 3, 3, generator=g) * 2 - 1)
    process = VPProcess(T=100)
    exact = error_budget(den, den, process, sampler="ddim", grid="uniform", steps=6, n=64)
    assert exact["E_S"] == {"mmd": 0.0, "swd": 0.0, "path": 0.0}
    assert "xent" not in exact["E_D"] and "path" not in exact["E_D"]  # no density, no reference
    biased = error_budget(lambda x, s: den(x, s) + 0.2, den, process, sampler="ddim",
                          grid="uniform", steps=6, n=64, dtype=torch.float64)
    assert biased["E_S"]["mmd"] > 0 and biased["E_S"]["path"] > 0.5  # ≥ ‖0.2·1‖ = 0.6 at the end
    assert biased["E_D"] == exact["E_D"] and biased["E_I"] == exact["E_I"]
