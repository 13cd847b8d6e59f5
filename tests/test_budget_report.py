"""The E4/E6 result files: numbers from a study with budgets, the compute-matched pairing, the split
into discretization and learned error, and verdicts computed from the intervals."""

import json

from errprop.budget_report import budget_numbers, write_budget_results
from errprop.study import Arm, Settings

BASE = ["data.name=ring8", "train.steps=40", "train.ckpt_every=10", "train.keep_last=4"]
SETTINGS = Settings(base=BASE, seeds=[0, 1, 2, 3], samplers=["ddim", "dpmpp_2m"], sampling_steps=[10, 50],
                    budgets=[10, 20])
ARMS = [Arm("baseline", "base", ["loss.name=simple"]), Arm("better", "SA-2", ["loss.name=sa"])]


def _res(v: float) -> dict:
    q = {f"{s}-{k}": {"xent": v + 1, "xent_median": v, "mmd2": 0.01} for s in SETTINGS.samplers
         for k in SETTINGS.sampling_steps}
    return {"quality": q, "modular_kl": [0.1, None], "cumulative_xent": [0.2, 0.3], "gap": [0.0, 1.0]}


def _study(shift_at_last: float) -> dict:
    """Every seed: exact 1.0; the baseline 1 + 10/b (+ seed noise); 'better' the same, shifted at
    the last budget only."""
    def arms(b, shift):
        return {"baseline": {s: _res(1 + 10 / b + 0.01 * s) for s in SETTINGS.seeds},
                "better": {s: _res(1 + 10 / b + 0.01 * s + shift + 0.001 * s) for s in SETTINGS.seeds}}
    exact = {s: _res(1.0) for s in SETTINGS.seeds}
    return {"results": {**arms(40, shift_at_last), "exact": exact},
            "results_at": {b: {**arms(b, 0.0), "exact": exact} for b in (10, 20)},
            "summary": {}}


def test_numbers_of_a_budget_study():
    d = budget_numbers(_study(-0.5), ARMS, SETTINGS, {"baseline": 1.0, "better": 1.5})
    assert d["budgets"] == [10, 20, 40]
    last = d["per_budget"][40]["paired"]["better"]
    assert last["hi"] < 0 and abs(last["mean"] - (-0.5 + 0.0015)) < 1e-9
    assert abs(d["per_budget"][10]["paired"]["better"]["mean"] - 0.0015) < 1e-9  # no shift there
    # convergence: baseline − exact at the finest DDIM grid (ddim-50) = 10/b + seed noise
    assert abs(d["per_budget"][40]["gap_fine"]["xent_median"]["mean"] - (0.25 + 0.015)) < 1e-9
    # a step of 'better' costs 1.5×: at 10 steps it faces the baseline at 20 (≥ 15), at 20 → 40
    pairs = [(m["budget"], m["baseline_budget"]) for m in d["compute_matched"]["better"]]
    assert pairs == [(10, 20), (20, 40)]
    assert abs(d["cost_ratio"]["better"] - 1.5) < 1e-12
    sp = d["split"]["better"]["ddim-10"]
    assert abs(sp["discretization"]["mean"] - 1.0) < 1e-12
    assert abs(sp["total"]["mean"] - sp["discretization"]["mean"] - sp["learned"]["mean"]) < 1e-9
    assert all("p_holm" in p for p in d["solvers"].values())


def test_result_files_say_what_the_numbers_say(tmp_path):
    for shift, word in ((-0.5, "supported"), (+0.5, "contradicted")):
        paths = write_budget_results(tmp_path, tmp_path / word, _study(shift), ARMS, SETTINGS, "ring8",
                                     "ring", "python experiments/e4_budget.py",
                                     {"baseline": 1.0, "better": 1.5})
        e4 = json.loads((tmp_path / word / "e4_budget_ring8.json").read_text())
        assert f"lowers it at 40 steps: **{word}**" in e4["notes"]
        assert "⚠ loss.t_sampling: uniform → antithetic" in e4["notes"]  # SA's own t, disclosed
        assert all(p.is_file() for p in paths)
        study = json.loads((tmp_path / word / "e4_budget_ring8" / "study.json").read_text())
        assert "results" not in study and study["arms"][1]["name"] == "better"
