"""Error-optimal grids: the DP is exact, and on a mixture it beats every hand-made grid on its own
objective; the path KL is exact where it has a closed form and bounds the final forward KL; the CLI
writes a grid that sample/evaluate use."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from errprop import config
from errprop.builders import Run, build_process
from errprop.cli import main
from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.modular import kl_estimate, reverse_transition_log_prob, step_moments
from errprop.errors import ErrpropError
from errprop.keys import KEY_START
from errprop.noise import Noise
from errprop.optimal_grid import (
    OBJECTIVES,
    candidates,
    default_objective,
    descend,
    dp_grid,
    hand_made,
    klub_costs,
    local_costs,
    modular_costs,
    optimize,
    path_cost,
    path_kl_costs,
    path_kl_estimates,
    prior_costs,
    shortest_path,
)
from errprop.process import VPProcess

ROOT = Path(__file__).parents[1]


def test_shortest_path_is_the_brute_force_optimum():
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(9, 9, generator=g, dtype=torch.float64)
    for k in (1, 3, 5, 8):
        path, value = shortest_path(cost, k)
        best = min(itertools.combinations(range(1, 8), k - 1),
                   key=lambda mid: sum(cost[a, b] for a, b in zip((0, *mid), (*mid, 8))))
        ref = sum(cost[a, b] for a, b in zip((0, *best), (*best, 8)))
        assert path[0] == 0 and path[-1] == 8 and len(path) == k + 1
        assert value == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("objective", ["modular", "path_kl", "klub", "local"])
@pytest.mark.parametrize("n_steps", [5, 10])
def test_dp_grid_beats_every_hand_made_grid_on_its_objective(objective, n_steps):
    mix, process = GaussianMixture.ring8(), VPProcess()
    made = hand_made(process, n_steps)
    levels = candidates(process, 32, list(made.values()))
    ddpm = {"variance": "small", "process": process}
    if objective == "modular":
        cost = modular_costs(mix, mix, levels, "ddpm", ddpm, n=200)
    elif objective == "path_kl":
        cost = path_kl_costs(mix, mix, levels, "ddpm", ddpm, n=200)
    elif objective == "local":
        cost = local_costs(mix, process, levels, (2,), n=200)[0]
    else:
        cost = klub_costs(mix, mix, levels, n=200)
    grid, value = dp_grid(cost, levels, n_steps)
    assert len(grid) == n_steps + 1 and grid[-1] == 0 and torch.all(grid[1:] < grid[:-1])
    assert grid[0] == pytest.approx(process.sigma_max) and grid[-2] == pytest.approx(process.sigma_min)
    assert value == pytest.approx(path_cost(cost, levels, grid))
    for name, g in made.items():
        assert value <= path_cost(cost, levels, g) + 1e-12, name
    assert value < min(path_cost(cost, levels, g) for g in made.values())  # strictly, here


def _levels(*sigmas):
    return torch.tensor(sigmas, dtype=torch.float64)


def test_path_kl_step_of_the_exact_denoiser_is_nonnegative_and_vanishes_for_tiny_steps():
    """With the exact denoiser a DDPM step has the true mean and misses only the posterior's spread
    ((1 − c)² V_k, c = σ'²/σ²), so its KL(q ‖ p_θ) falls like (σ − σ')²: faster than the step."""
    mix, process = GaussianMixture.ring8(), VPProcess()
    ddpm = {"variance": "small", "process": process}
    values = []
    for s_next in (0.5, 0.9, 0.99, 0.999):
        cost, se = path_kl_estimates(mix, mix, _levels(1.0, s_next), "ddpm", ddpm, n=400)
        assert cost[0, 1] >= -3 * se[0, 1] and se[0, 1] < 0.2 * cost[0, 1]
        values.append(float(cost[0, 1]))
    assert all(a / b > 30 for a, b in zip(values, values[1:])), values  # a step 10× shorter: ≥ 30× less
    assert values[-1] < 1e-5


def test_path_kl_on_gaussian_data_is_the_closed_form_kl():
    """One Gaussian N(μ, Σ): the exact denoiser is E[x0|x̂], so q(x̂'|x̂) and DDPM's step share their
    mean and differ in variance only, (1 − c)² V + v̄ against v̄ along each eigenvector of Σ
    (V = λσ²/(λ + σ²)): the KL is the same at every x̂ and known in closed form."""
    lam = torch.tensor([0.04, 0.25], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(1), torch.tensor([[0.3, -0.2]]), torch.diag(lam)[None])
    process = VPProcess()
    for s, s_next in ((2.0, 0.5), (0.5, 0.1), (0.1, 0.05)):
        cost, se = path_kl_estimates(mix, mix, _levels(s, s_next), "ddpm",
                                     {"variance": "small", "process": process}, n=300)
        c = s_next**2 / s**2
        vbar = s_next**2 * (1 - c)
        ratio = ((1 - c) ** 2 * lam * s**2 / (lam + s**2) + vbar) / vbar
        exact = float(0.5 * (ratio - 1 - ratio.log()).sum())
        assert float(cost[0, 1]) == pytest.approx(exact, rel=1e-6, abs=3 * float(se[0, 1]) + 1e-12)


def test_path_kl_bridge_draws_are_the_forward_pairs():
    """x̂' from the bridge q(x̂'|x̂, x0) given x̂ = x0 + σ ε is a draw of q(x̂'|x̂): the per-step cost
    agrees with the same average over pairs drawn the forward way (x̂' = x0 + σ' e₁, then
    x̂ = x̂' + √(σ² − σ'²) e₂; the network would then run at every (σ, σ') pair)."""
    mix, process = GaussianMixture.ring8(), VPProcess()
    ddpm = {"variance": "small", "process": process}
    s, s_next, n = 1.0, 0.5, 3000
    cost, se = path_kl_estimates(mix, mix, _levels(s, s_next), "ddpm", ddpm, n=n)
    x0 = mix.sample(Noise.from_seed(7, n, key=(1,))).double()
    e = Noise.from_seed(7, n, key=(2,)).randn(4, dtype=torch.float64)
    x_next = x0 + s_next * e[:, :2]
    x = x_next + math.sqrt(s**2 - s_next**2) * e[:, 2:]
    mean, std = step_moments("ddpm", mix, x, s, s_next, **ddpm)
    log_p = (-0.5 * ((x_next - mean) / std) ** 2 - std.log()).sum(1) - math.log(2 * math.pi)
    ref, ref_se = kl_estimate(reverse_transition_log_prob(mix, x, s, s_next, x_next), log_p)
    assert abs(float(cost[0, 1]) - ref) < 4 * math.hypot(float(se[0, 1]), ref_se)
    assert ref > 10 * ref_se  # the comparison is not between two zeros


def test_path_kl_given_x0_vanishes_for_a_single_data_point():
    """Data of one image: the exact denoiser returns it, and DDPM's step is then q(x̂'|x̂, x0) itself."""
    x0 = torch.randn(1, 1, 4, 4, dtype=torch.float64).expand(50, 1, 4, 4).clone()
    ddpm = {"variance": "small", "process": VPProcess()}
    levels = _levels(2.0, 1.0, 0.3, 0.05)
    cost, _ = path_kl_estimates(lambda x, s: x0[:1].expand_as(x).to(x.dtype), x0, levels, "ddpm", ddpm, n=50)
    finite = cost[torch.isfinite(cost)]
    assert len(finite) == 6 and finite.abs().max() < 1e-9


def test_path_kl_given_x0_exceeds_the_marginal_by_the_same_amount_on_every_grid():
    """Conditioning on x0 adds I(x0; x̂_σmin) − I(x0; x̂_σmax) to a path's sum (module docstring):
    grids from the same first to the same last level keep their order, so the DP on images (given
    x0) picks the grid the exact marginal form would. Tolerance: Monte Carlo at n = 3000, fixed seed."""
    mix = GaussianMixture.ring8()
    ddpm = {"variance": "small", "process": VPProcess()}
    levels = _levels(2.0, 1.0, 0.5, 0.25, 0.1, 0.05)
    given, _ = path_kl_estimates(mix, mix, levels, "ddpm", ddpm, n=3000, given_x0=True)
    marginal, _ = path_kl_estimates(mix, mix, levels, "ddpm", ddpm, n=3000)
    paths = ([0, 1, 2, 3, 4, 5], [0, 2, 5], [0, 3, 5], [0, 1, 4, 5], [0, 5])
    total = lambda cost, p: sum(float(cost[a, b]) for a, b in zip(p, p[1:]))  # noqa: E731
    excess = [total(given, p) - total(marginal, p) for p in paths]
    sums = [total(marginal, p) for p in paths]
    assert min(excess) > 1 and max(excess) - min(excess) < 0.2, excess  # I(x0; x̂_0.05) − I(x0; x̂_2) > 0
    assert max(sums) - min(sums) > 100  # the grids differ by far more than that


def _exact_ddpm_final_kl(mix, process, levels, ddpm) -> float:
    """KL(q_σk ‖ p_σk) at a grid's last level for 1-D Gaussian data and its exact denoiser: each DDPM
    step is then affine-Gaussian, so p_σ stays Gaussian from the prior on (mean, variance pushed
    through the step's own moments)."""
    m, v = 0.0, process.prior_std(float(levels[0])) ** 2
    for s, s_next in zip(levels[:-1].tolist(), levels[1:].tolist()):
        mean, std = step_moments("ddpm", mix, torch.tensor([[0.0], [1.0]], dtype=torch.float64), s, s_next,
                                 **ddpm)
        a, b = float(mean[1, 0] - mean[0, 0]), float(mean[0, 0])
        m, v = a * m + b, a * a * v + float(std[0, 0]) ** 2
    qm, qv = float(mix.means[0, 0]), float(mix.covs[0, 0, 0]) + float(levels[-1]) ** 2
    return 0.5 * (qv / v + (m - qm) ** 2 / v - 1 + math.log(v / qv))


def test_path_kl_with_the_prior_bounds_the_final_forward_kl():
    """The chain rule: KL(q_σ0 ‖ prior) + Σ per-step KL(q ‖ p_θ) ≥ KL(q_σk ‖ p_σk), here exact
    (1-D Gaussian data, exact denoiser, DDPM); and a longer grid has a far smaller path KL."""
    mix = GaussianMixture(torch.ones(1), torch.tensor([[0.3]]), torch.tensor([[[0.04]]]))
    process = VPProcess()
    ddpm = {"variance": "small", "process": process}
    bound = {}
    for k in (3, 5, 10, 20):
        for name, g in hand_made(process, k, free_start=True).items():
            if k == 20 and name != "exponential":
                continue
            levels = g[g > 0].to(torch.float64)
            cost = path_kl_costs(mix, mix, levels, "ddpm", ddpm, n=500)
            start = prior_costs(process, mix, levels, n=500, q_first=True)
            bound[name, k] = path_cost(cost, levels, g, start)
            assert bound[name, k] >= _exact_ddpm_final_kl(mix, process, levels, ddpm), (name, k)
    assert bound["exponential", 20] < bound["exponential", 5] / 10


def test_local_error_is_the_closed_form_on_gaussian_data():
    """One Gaussian N(0, s0²) in 1-D: the probability-flow ODE is linear, x̂_σ = x̂_σ0 ·
    √((s0² + σ²)/(s0² + σ0²)), and a DDIM step from σ to σ' multiplies by (s0² + σσ')/(s0² + σ²).
    The teacher (Heun) converges to it at second order in its substeps."""
    s0, process = 0.7, VPProcess()
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 1), torch.full((1, 1, 1), s0**2))
    levels = _levels(80.0, 10.0, 2.0, 0.5, 0.1, 0.02)
    z = Noise.from_seed(0, 200, key=(KEY_START,)).randn(1, dtype=torch.float64)
    exact = torch.full((6, 6), math.inf, dtype=torch.float64)
    for i, j in itertools.combinations(range(6), 2):
        si, sj = float(levels[i]), float(levels[j])
        x_i = process.prior_std(80.0) * z * math.sqrt((s0**2 + si**2) / (s0**2 + 80.0**2))
        gain = (s0**2 + si * sj) / (s0**2 + si**2) - math.sqrt((s0**2 + sj**2) / (s0**2 + si**2))
        exact[i, j] = x_i.abs().mean() * abs(gain)
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    err, start = {}, {}
    for sub in (8, 32):
        cost, start[sub] = local_costs(mix, process, levels, (1,), n=200, sub=sub)
        err[sub] = ((cost / exact - 1)[upper]).abs().max()
    assert err[32] < 5e-3 and err[8] / err[32] > 10, err  # Heun: 4× the substeps, ≈ 16× less error
    # the start's term: the prior's draw at σ (same z) against the teacher's state there
    gap = torch.tensor([abs(process.prior_std(s) - process.prior_std(80.0)
                            * math.sqrt((s0**2 + s**2) / (s0**2 + 80.0**2))) for s in levels.tolist()])
    assert start[32][0] == 0
    assert start[32][1:] == pytest.approx(z.abs().mean() * gap[1:], rel=5e-3)


def test_descend_never_gets_worse_and_stays_on_the_candidates():
    levels = torch.linspace(10, 1, 10, dtype=torch.float64)
    target = torch.tensor([10.0, 7.0, 3.0, 1.0], dtype=torch.float64)

    def f(g):
        return float((g[g > 0] - target).abs().sum())

    start = torch.tensor([10.0, 9.0, 8.0, 1.0, 0.0], dtype=torch.float64)
    grid, value, calls = descend(f, levels, start, max_rounds=20)
    assert value <= f(start) and value == 0 and calls > 1
    assert torch.all(grid[1:] < grid[:-1]) and grid[-1] == 0


def _mixture_run(tmp_path, denoiser=None, **sample):
    overrides = [f"sample.{k}={v}" for k, v in sample.items()]
    cfg = config.load(overrides=overrides)
    mix = GaussianMixture.ring8()
    return Run(tmp_path, cfg, build_process(cfg), denoiser or mix, 1, (2,))


def test_optimize_reports_cost_and_oracle_and_guards_its_objectives(tmp_path):
    run = _mixture_run(tmp_path)
    res = optimize(run, "ddpm", 5, "modular", n=100, m=16, oracle=True)
    assert res["network_evaluations"] > 0 and res["sampling_runs"] == 1 + len(res["hand_made"])
    assert set(res["final_xent"]) == {"optimized", *res["hand_made"]}
    assert all(np.diff(res["sigmas"]) < 0) and len(res["sigmas"]) == 5
    with pytest.raises(ErrpropError, match="deterministic: use --objective klub, path_kl"):
        optimize(run, "ddim", 5, "modular", n=50, m=8)
    xent = optimize(run, "ddim", 5, "xent", n=100, m=12)
    assert xent["value"] <= min(xent["start_values"].values()) + 1e-12
    assert xent["sampling_runs"] >= 1 + len(xent["hand_made"])


def test_cli_writes_a_grid_that_sample_and_evaluate_use(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run),
                 "--set", "train.steps=30", "--set", "model.width=32", "--set", "model.depth=1",
                 "--no-progress"]) == 0
    grid = tmp_path / "grid.json"
    assert main(["grid", "optimize", str(run), "--sampler", "ddpm", "--steps", "6", "--objective", "klub",
                 "--n", "100", "--candidates", "16", "--out", str(grid), "--device", "cpu"]) == 0
    assert "klub: optimized" in capsys.readouterr().out
    sigmas = json.loads(grid.read_text())["sigmas"]
    assert len(sigmas) == 6
    assert main(["sample", str(run), "--sigmas", str(grid), "--n", "20", "--sampler", "ddpm"]) == 0
    assert capsys.readouterr().out.strip().endswith("ddpm-list-6-0.npz")
    assert main(["evaluate", str(run), "--sigmas", str(grid), "--sampler", "ddpm", "--metric", "modes",
                 "--n", "50", "--device", "cpu"]) == 0
    res = json.loads(next((run / "eval").glob("modes-*-list-*.json")).read_text())
    assert res["grid_options"]["sigmas"] == sigmas and res["results"][0]["steps"] == 6
    (tmp_path / "bad.json").write_text(json.dumps([1.0, 2.0]))
    assert main(["sample", str(run), "--sigmas", str(tmp_path / "bad.json")]) == 2
    assert "strictly decreasing" in capsys.readouterr().err


def test_with_the_prior_cost_the_start_is_free_and_still_optimal():
    mix, process = GaussianMixture.ring8(), VPProcess()
    made = hand_made(process, 6, free_start=True)
    assert {"uniform-leading", "quadratic"} <= set(made)
    levels = candidates(process, 24, list(made.values()))
    start = prior_costs(process, mix, levels, n=200)
    assert start[0] < 1e-3 and start[-1] > start[0]  # at σ_max the prior is (nearly) the truth
    cost = klub_costs(mix, mix, levels, n=200)
    grid, value = dp_grid(cost, levels, 6, start)
    assert grid[-2] == pytest.approx(process.sigma_min) and grid[-1] == 0
    for name, g in made.items():
        assert value <= path_cost(cost, levels, g, start) + 1e-12, name


def test_the_default_objective_fits_the_sampler_and_data(tmp_path):
    """A deterministic sampler (DDIM, η = 0) has no Gaussian step for ``modular``: the default is
    then ``klub``, as on images; a Gaussian stochastic step on a mixture gets ``modular``."""
    assert default_objective(gaussian_step=True, mixture=True) == "modular"
    assert default_objective(gaussian_step=False, mixture=True) == "klub"
    assert default_objective(gaussian_step=True, mixture=False) == "klub"
    run = _mixture_run(tmp_path)
    assert optimize(run, "ddim", 4, n=50, m=8)["objective"] == "klub"
    assert optimize(run, "ddpm", 4, n=50, m=8)["objective"] == "modular"
    assert optimize(_mixture_run(tmp_path, eta=1.0), "ddim", 4, n=50, m=8)["objective"] == "modular"


def test_cli_grid_optimize_with_a_deterministic_sampler_needs_no_objective(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run),
                 "--set", "train.steps=5", "--set", "model.width=16", "--set", "model.depth=1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    grid = tmp_path / "grid.json"
    argv = ["grid", "optimize", str(run), "--sampler", "ddim", "--steps", "10", "--n", "50",
            "--candidates", "16", "--out", str(grid), "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("klub: optimized")
    res = json.loads(grid.read_text())
    assert res["objective"] == "klub" and len(res["sigmas"]) == 10
    assert res["command"] == "errprop " + " ".join(argv)  # the command given, not the test runner's


def test_path_kl_optimizes_every_sampler_on_a_mixture_and_says_which_step_it_scored(tmp_path):
    """A Gaussian step is scored with its own density; a deterministic solver (no density) with
    DDPM's step on the same levels, and the result says so. On images it is the form given x0
    (tests/test_diffusers_io.py); the direct descent needs the exact density: an error there."""
    run = _mixture_run(tmp_path)
    own = optimize(run, "ddpm", 5, "path_kl", n=60, m=10)
    assert own["step"] == "ddpm" and own["start"].startswith("free (KL(q_σ")
    assert own["network_evaluations"] == 60 * (own["candidates"] - 1)
    for sampler in ("dpmpp_2m", "unipc_2"):
        res = optimize(run, sampler, 5, "path_kl", n=60, m=10)
        assert res["step"] == "ddpm (transferred: sampler is deterministic)"
        assert res["sigmas"] == own["sigmas"] and res["value"] == own["value"]  # the same DDPM costs
        assert res["value"] <= min(h["cost"] for h in res["hand_made"].values()) + 1e-12
    eta = optimize(_mixture_run(tmp_path, eta=0.5), "ddim", 5, "path_kl", n=60, m=10)
    assert eta["step"] == "ddim" and eta["value"] != own["value"]
    cfg = config.load(overrides=["data.name=digits"])
    images = Run(tmp_path, cfg, build_process(cfg), GaussianMixture.ring8(), 1, (1, 8, 8))
    with pytest.raises(ErrpropError, match="xent needs a Gaussian-mixture run"):
        optimize(images, "ddpm", 5, "xent", n=20, m=8)


def test_local_error_optimizes_deterministic_samplers_with_a_free_start(tmp_path):
    """The ODE's local error: DDIM's own step for DDIM, the same first-order grid transferred to the
    multistep solvers; the start is free (the prior's distance to the teacher added); a stochastic
    sampler is an error."""
    run = _mixture_run(tmp_path)
    own = optimize(run, "ddim", 6, "local", n=60, m=10)
    assert own["step"] == "ddim" and own["start"].startswith("free (distance of the prior")
    assert "uniform-leading" in own["hand_made"]  # the free-start hand-made grids are compared
    assert own["value"] <= min(h["cost"] for h in own["hand_made"].values()) + 1e-12
    for sampler in ("dpmpp_2m", "unipc_2"):
        res = optimize(run, sampler, 6, "local", n=60, m=10)
        assert res["step"] == f"ddim (transferred: first-order step for {sampler})"
        assert res["sigmas"] == own["sigmas"] and res["value"] == own["value"]
    with pytest.raises(ErrpropError, match="sampler 'ddpm' is stochastic"):
        optimize(run, "ddpm", 6, "local", n=20, m=8)

    def never(x, sigma):
        raise AssertionError("the network ran before the step count was checked")

    with pytest.raises(ErrpropError, match="need ≥ 2 steps"):
        optimize(_mixture_run(tmp_path, denoiser=never), "ddim", 1, "local", n=20, m=8)


def test_cli_objectives_are_the_library_s(capsys):
    with pytest.raises(SystemExit):
        main(["grid", "optimize", "run", "--steps", "4", "--out", "g.json", "--objective", "bogus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and all(repr(o) in err for o in OBJECTIVES)
