"""Error-optimal grids: the DP is exact, and on a mixture it beats every hand-made grid on its own
objective; the CLI writes a grid that sample/evaluate use."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from errprop import config
from errprop.builders import Run, build_process
from errprop.cli import main
from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.optimal_grid import (
    candidates,
    default_objective,
    descend,
    dp_grid,
    hand_made,
    klub_costs,
    modular_costs,
    optimize,
    path_cost,
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


@pytest.mark.parametrize("objective", ["modular", "klub"])
@pytest.mark.parametrize("n_steps", [5, 10])
def test_dp_grid_beats_every_hand_made_grid_on_its_objective(objective, n_steps):
    mix, process = GaussianMixture.ring8(), VPProcess()
    made = hand_made(process, n_steps)
    levels = candidates(process, 32, list(made.values()))
    if objective == "modular":
        cost = modular_costs(mix, mix, levels, "ddpm", {"variance": "small", "process": process}, n=200)
    else:
        cost = klub_costs(mix, mix, levels, n=200)
    grid, value = dp_grid(cost, levels, n_steps)
    assert len(grid) == n_steps + 1 and grid[-1] == 0 and torch.all(grid[1:] < grid[:-1])
    assert grid[0] == pytest.approx(process.sigma_max) and grid[-2] == pytest.approx(process.sigma_min)
    assert value == pytest.approx(path_cost(cost, levels, grid))
    for name, g in made.items():
        assert value <= path_cost(cost, levels, g) + 1e-12, name
    assert value < min(path_cost(cost, levels, g) for g in made.values())  # strictly, here


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
    with pytest.raises(ErrpropError, match="deterministic: use --objective klub"):
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
