import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from errprop.errors import ErrpropError
from errprop.grids import custom, edm_rho, exponential, make_grid, quadratic_t
from errprop.process import VEProcess, VPProcess


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("n", [10, 50, 7])
def test_uniform_matches_diffusers_timesteps(spacing, n):
    p = VPProcess()
    s = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    s.set_timesteps(n)
    sig = make_grid("uniform", p, n, spacing=spacing)
    assert len(sig) == n + 1 and sig[-1] == 0
    torch.testing.assert_close(p.t(sig[:-1]).round().long(), s.timesteps.long())


def test_edm_grid_matches_diffusers_karras():
    s = EulerDiscreteScheduler(num_train_timesteps=1000, use_karras_sigmas=True)
    s.set_timesteps(20)
    ref = s.sigmas.double()
    ours = edm_rho(float(ref[-2]), float(ref[0]), 20)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=0)


def test_edm_and_exponential_endpoints_and_shape():
    e = edm_rho(0.002, 80, 18)
    assert e[0] == pytest.approx(80) and e[-2] == pytest.approx(0.002) and e[-1] == 0
    x = exponential(0.01, 10, 4)
    torch.testing.assert_close(x[:-1], torch.tensor([10, 1, 0.1, 0.01], dtype=torch.float64))
    assert torch.all(e[1:] < e[:-1])


def test_quadratic_and_ve_grids():
    p = VPProcess()
    q = quadratic_t(p, 10)
    # DDIM's quadratic skip: t_i = floor((i · √(0.8 T)/(n − 1))²)
    ref = (np.linspace(0, np.sqrt(0.8 * 1000), 10) ** 2).astype(int)[::-1]
    assert p.t(q[:-1]).round().long().tolist() == ref.tolist()
    ve = VEProcess(kind="sqrt", sigma_min=0.01, sigma_max=50)
    u = make_grid("uniform", ve, 5)
    torch.testing.assert_close(u[:-1] ** 2, torch.linspace(2500, 1e-4, 5, dtype=torch.float64))


def test_custom_grid_validation():
    torch.testing.assert_close(custom([3.0, 1.0]), torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64))
    for bad in ([1.0, 3.0], [], [1.0, -1.0]):
        with pytest.raises(ErrpropError, match="strictly decreasing"):
            custom(bad)
    with pytest.raises(ErrpropError, match="unknown"):
        make_grid("cubic", VPProcess(), 5)


@pytest.mark.parametrize("name", ["uniform", "quadratic", "edm", "exponential"])
@pytest.mark.parametrize("n", [1, 2, 10, 50, 100, 500, 800])
def test_every_grid_is_strictly_decreasing_and_ends_at_zero(name, n):
    g = make_grid(name, VPProcess(), n)
    assert len(g) == n + 1 and g[-1] == 0
    assert torch.all(g[1:] < g[:-1]), f"{name} with {n} steps repeats a level"


def test_quadratic_moves_ddim_repeats_up_and_keeps_the_rest():
    p = VPProcess()
    raw = (np.linspace(0, np.sqrt(0.8 * 1000), 100) ** 2).astype(int)
    assert len(set(raw)) < 100  # DDIM's own rounding repeats timesteps at n = 100
    t = p.t(quadratic_t(p, 100)[:-1]).round().long().flip(0).numpy()
    assert len(set(t)) == 100 and t[-1] == raw[-1]
    assert (t >= raw).all() and (t[raw > 40] == raw[raw > 40]).all()  # only the crowded start moves


@pytest.mark.parametrize("name,spacing,limit", [("uniform", "trailing", 1000), ("uniform", "leading", 1000),
                                               ("uniform", "linspace", 1000), ("quadratic", "trailing", 801)])
def test_more_steps_than_the_process_allows_is_an_error_naming_the_maximum(name, spacing, limit):
    make_grid(name, VPProcess(), limit, spacing=spacing)
    with pytest.raises(ErrpropError, match=f"at most {limit}"):
        make_grid(name, VPProcess(), limit + 1, spacing=spacing)


def test_an_empty_sigma_range_is_an_error():
    with pytest.raises(ErrpropError, match="σ_min < σ_max"):
        make_grid("edm", VPProcess(), 10, sigma_min=5.0, sigma_max=1.0)
