"""experiments/e8_digits.py end to end at its --quick size (numbers not meaningful), and its
bookkeeping on made-up FDs."""

import copy
import json
from pathlib import Path

import pytest

from errprop.findings import claim_row
from errprop.study import objective_arms

ROOT = Path(__file__).parents[1]


@pytest.fixture
def e8(script):
    return script("experiments/e8_digits.py")


def _fd(e8, arms, seeds, steps, first, shift):
    """FDs that fall with the budget; each arm ``shift[arm]`` above the baseline, seed noise ±0.01."""
    out = {}
    for a in arms:
        for s in seeds:
            top = e8.arm_steps(a, steps)
            out.setdefault(a.name, {})[s] = {
                b: {**{f"{x}-{k}": 10 / b + shift[a.name] + 0.01 * (-1) ** s for x, k in e8.SETTINGS},
                    "floor": 0.5} for b in e8.budgets(top, first)}
    return out


def test_numbers_pair_on_seeds_and_match_compute_from_the_baselines_longer_run(e8):
    arms = objective_arms(e8.D, ["sa2", "ep"])
    seeds = [0, 1, 2]
    fd = _fd(e8, arms, seeds, 8, 2, {"baseline": 0.0, "sa2": -1.0, "ep": 0.0})
    d = e8.numbers(fd, arms, seeds, 8, 2, {"baseline": 1.0, "sa2": 1.9, "ep": 2.7})
    assert d["budgets"] == [2, 4, 8, 16]
    assert "sa2" not in d["per_budget"][16] and "baseline" in d["per_budget"][16]
    p = d["paired_primary"]["sa2"]
    assert p["mean"] == pytest.approx(-1.0) and p["hi"] < 0 and "p_holm" in p
    # SA-2 at 8 steps costs 15.2 baseline steps: matched with the baseline at 16, not 8
    m = {r["budget"]: r for r in d["compute_matched"]["sa2"]}
    assert m[8]["baseline_budget"] == 16 and m[8]["mean"] == pytest.approx(10 / 8 - 1 - 10 / 16)
    assert 8 not in {r["budget"] for r in d["compute_matched"]["ep"]}  # 2.7 × 8 > 16: no fair match
    text = e8.notes(d)
    assert "**supported**" in text and "**not decidable**" in text
    assert "at the floor" not in text  # 10/16 = 0.625 at the last budget, the floor 0.5 ± 0
    at_floor = copy.deepcopy(d)
    for st in at_floor["per_budget"][16]["baseline"].values():
        st["mean"] = 0.49
    assert "At 16 steps it is at the floor" in e8.notes(at_floor)
    claims = e8.claims_summary(d)  # SA-2 at 8 against the baseline at 16; EP has no fair match
    assert set(claims["paired_against"]["cm"]) == {"sa2"}
    assert claims["arms"]["cm"]["fd ddim-10"]["mean"] == pytest.approx(10 / 16, abs=0.01)
    rows = e8.table(d)
    assert rows[-1][3:] == ["–", "–"]  # the arms did not train to 16 steps


@pytest.mark.slow
def test_quick_run_writes_the_result_and_a_claim_the_table_can_read(e8, tmp_path):
    docs = tmp_path / "docs"
    assert e8.main(["--quick", "--jobs", "1", "--only", "sa2", "--out", str(tmp_path / "runs"),
                    "--docs", str(docs)]) == 0
    res = json.loads((docs / "e8_digits_quick.json").read_text())
    assert res["arms"] == ["baseline", "sa2"] and res["budgets"] == [10, 20, 40]
    assert "--quick" in res["command"] and (docs / "e8_digits_quick.png").is_file()
    row = claim_row({"id": "x", "source": "e8_digits_quick/study.json", "arm": "sa2",
                     "metric": "fd ddim-10", "claimed": "lower", "claim": "c", "test": "t",
                     "endpoint": "e", "declared": "d"}, docs)
    assert row[4].strip("*") in ("supported", "contradicted", "not decidable")
    # SA-2 differs from the baseline in its loss, and its t-sampling is flagged (SA's code draws t
    # antithetically); nothing of the training budget or model differs
    assert "loss.t_sampling" in row[1] and "train." not in row[1] and "model." not in row[1]


@pytest.mark.slow
def test_a_longer_study_trains_the_shorter_ones_runs_on(e8, tmp_path, monkeypatch):
    """--steps 10 then --steps 20: one folder; the runs are trained on (recorded in their
    changes.jsonl), the FDs of the budgets both studies share are read back, not recomputed."""
    # the step costs are measured at full size outside --quick (minutes); not what this tests
    monkeypatch.setattr(e8, "step_costs", lambda base, arms, **_: {x.name: 1.0 + (x.name != "baseline")
                                                                  for x in arms})
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    tiny = ["--first", "10", "--n", "60", "--seeds", "2", "--only", "sa2", "--jobs", "1",
            "--out", str(runs), "--docs", str(docs)]
    assert e8.main(["--steps", "10", *tiny]) == 0
    base = runs / "n60" / "baseline" / "seed0"
    shared = base / "e8_fd_step20.json"
    before = shared.stat().st_mtime_ns
    assert e8.main(["--steps", "20", *tiny]) == 0
    change = json.loads((base / "changes.jsonl").read_text().splitlines()[-1])
    assert change["resumed_at_step"] == 20 and change["changed"]["train.steps"] == [20, 40]
    assert shared.stat().st_mtime_ns == before
    res = json.loads((docs / "e8_digits.json").read_text())
    assert res["budgets"] == [10, 20, 40] and res["steps"] == 20
