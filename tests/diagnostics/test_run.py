"""``diagnose``: every measurement writes strict JSON and a PNG, on mixtures and on image data."""

import json

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.diagnostics.run import WHATS, diagnose
from errprop.errors import ErrpropError
from errprop.process import VEProcess, VPProcess


def test_every_measurement_on_a_mixture_with_an_oracle_curve(tmp_path):
    mix = GaussianMixture.ring8()
    model = lambda x, s: mix(x, s) + 0.2  # noqa: E731  (a biased "trained" model)
    whats = [w for w in WHATS if w != "local"]  # (local: deterministic solvers only, tested below)
    out = diagnose(model, VPProcess(), mix, whats, sampler="ddpm", steps=8, n=64,
                   seed=1, out_dir=tmp_path, oracle=mix)
    assert set(out) == {f"{w}.{ext}" for w in whats for ext in ("json", "png")} | {
        "report.html", "report.md"}
    for w in whats:
        res = json.loads(out[f"{w}.json"].read_text())  # strict JSON: no NaN
        assert res["what"] == w and res["n"] == 64 and res["seed"] == 1 and res["steps"] == 8
        assert out[f"{w}.png"].stat().st_size > 1000
    mod = json.loads(out["modular.json"].read_text())
    assert mod["model"]["measure"] == "modular_kl" and mod["model"]["kl"][-1] is None
    assert len(mod["model"]["t"]) == 8 and mod["model"]["t"][0] == 999.0
    cum = json.loads(out["cumulative.json"].read_text())
    assert len(cum["model"]["sigma"]) == 9 and cum["oracle"]["xent"][-1] < cum["model"]["xent"][-1]
    gap = json.loads(out["gap.json"].read_text())
    assert gap["model"]["gap"][-1] > gap["oracle"]["gap"][-1] > 0
    amp = json.loads(out["amplification.json"].read_text())
    assert len(amp["model"]["mu_per_step"]) == 8 and amp["model"]["steps_used"] == 7
    budget = json.loads(out["budget.json"].read_text())
    assert set(budget["model"]["grids"]) == {"uniform", "edm", "exponential"}


def test_local_error_of_a_multistep_solver_with_an_oracle_curve(tmp_path):
    mix = GaussianMixture.ring8()
    model = lambda x, s: mix(x, s) + 0.2  # noqa: E731
    out = diagnose(model, VPProcess(), mix, "local", sampler="unipc_2", steps=6, n=32, seed=1,
                   out_dir=tmp_path, oracle=mix)
    res = json.loads(out["local.json"].read_text())
    assert len(res["model"]["local"]) == 6 and max(res["oracle"]["learned"]) == 0
    assert min(res["model"]["learned"]) > 0 and out["local.png"].stat().st_size > 1000
    with pytest.raises(ErrpropError, match="stochastic"):
        diagnose(model, VPProcess(), mix, "local", sampler="ddpm", steps=4, n=8, out_dir=tmp_path)


def test_deterministic_sampler_falls_back_and_analytic_runs(tmp_path):
    mix = GaussianMixture.ring8()
    out = diagnose(mix, VEProcess(), mix, ["modular"], sampler="heun", steps=6, n=32,
                   out_dir=tmp_path / "heun")
    res = json.loads(out["modular.json"].read_text())["model"]
    assert res["measure"] == "denoising_excess" and "undefined" in res["fallback"]
    assert res["reducible"] == [0.0] * 6
    out = diagnose(mix, VPProcess(T=50), mix, ["modular"], sampler="analytic", steps=5, n=32,
                   out_dir=tmp_path / "analytic")
    assert json.loads(out["modular.json"].read_text())["model"]["measure"] == "modular_kl"


def test_image_data(tmp_path):
    imgs = torch.rand(100, 1, 4, 4) * 2 - 1
    model = lambda x, s: torch.zeros_like(x)  # noqa: E731
    out = diagnose(model, VPProcess(T=100), imgs, ["modular", "cumulative", "gap"], steps=5, n=40,
                   out_dir=tmp_path)
    res = json.loads(out["modular.json"].read_text())["model"]
    assert res["measure"] == "denoising_excess" and res["includes_irreducible"]
    assert "mmd2" in json.loads(out["cumulative.json"].read_text())["model"]
    for what in ("budget", "amplification"):
        with pytest.raises(ErrpropError, match="Gaussian-mixture"):
            diagnose(model, VPProcess(T=100), imgs, [what], steps=5, n=40, out_dir=tmp_path)
    with pytest.raises(ErrpropError, match="unknown measurement"):
        diagnose(model, VPProcess(T=100), imgs, ["modluar"], n=40, out_dir=tmp_path)
    with pytest.raises(ErrpropError, match="unknown sampler"):
        diagnose(model, VPProcess(T=100), imgs, ["gap"], sampler="dpm", n=40, out_dir=tmp_path)


def test_image_data_with_the_ideal_denoiser_as_oracle(tmp_path):
    from errprop.data.empirical import EmpiricalDenoiser

    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(200, 1, 3, 3, generator=g) * 2 - 1, torch.rand(60, 1, 3, 3, generator=g)
    oracle = EmpiricalDenoiser(train)
    model = lambda x, s: oracle(x, s) * 0.8  # noqa: E731  (a shrunk "trained" model)
    out = diagnose(model, VPProcess(T=100), train, ["modular", "learned", "budget"], sampler="ddim",
                   steps=5, n=40, out_dir=tmp_path, oracle=oracle, heldout=test, command="errprop x")
    assert {"report.html", "report.md", "learned.json", "budget.json"} <= set(out)
    mod = json.loads(out["modular.json"].read_text())
    assert mod["reference"] == "ideal denoiser of the training set"
    assert len(mod["model"]["learned_at_chain"]) == 5 and mod["model"]["reducible"][0] > 0
    assert mod["oracle"]["reducible"] == [0.0] * 5  # D*'s own excess: the floor
    learned = json.loads(out["learned.json"].read_text())
    assert "oracle" not in learned  # not re-run with D* as the model: it compares the two
    res = learned["model"]
    assert len(res["learned"]) == 5 and all(v > 0 for v in res["learned"])
    assert res["learned"] == mod["model"]["learned_at_chain"]  # one chain serves both
    assert res["memorisation"]["sigma"] and res["final"]["discretization_share"]["lo"] is not None
    budget = json.loads(out["budget.json"].read_text())["model"]
    assert list(budget["grids"]) == ["uniform"] and budget["grids"]["uniform"]["E_S"]["mmd"][-1] > 0
    md = out["report.md"].read_text()
    assert "> **Verdict.**" in md and "% (90 % bootstrap interval" in md
    assert "![" in md and (tmp_path / "learned_split.png").is_file()
    assert (tmp_path / "memorisation.png").is_file()
    for what in ("learned", "budget"):
        with pytest.raises(ErrpropError, match="--oracle"):
            diagnose(model, VPProcess(T=100), train, [what], steps=5, n=40, out_dir=tmp_path)
