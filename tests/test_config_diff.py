"""What two configs train differently: SA's antithetic t is seen, bookkeeping is not."""

from errprop import config
from errprop.config_diff import describe, differences, differing, objective_only

BASE = ["data.name=ring8", "model.width=16"]


def load(*o):
    return config.load(overrides=BASE + list(o))


def test_sa_with_its_default_t_sampling_differs_in_more_than_the_objective():
    diff = differences(load(), load("loss.name=sa", "loss.sa.K=3"))
    assert diff["loss.name"] == ("simple", "sa") and diff["loss.sa.K"] == (None, 3)
    assert diff["loss.t_sampling"] == ("uniform", "antithetic")
    assert not objective_only(diff) and "⚠ loss.t_sampling: uniform → antithetic" in describe(diff)


def test_sa_with_uniform_t_differs_only_in_the_objective():
    diff = differences(load(), load("loss.name=sa", "loss.sa.t_sampling=uniform"))
    assert objective_only(diff) and "loss.t_sampling" not in diff
    ep = differences(load(), load("loss.name=ep", "loss.ep.lam=2.0"))
    assert objective_only(ep) and ep["loss.ep.lam"] == (None, 2.0)


def test_bookkeeping_is_not_a_difference_but_the_budget_is():
    assert differences(load(), load("train.seed=3", "train.log_every=7", "train.threads=1")) == {}
    diff = differences(load(), load("train.steps=9", "model.dropout=0.1"))
    assert set(diff) == {"train.steps", "model.dropout"} and not objective_only(diff)


def test_differing_among_several_configs_names_each_value():
    diff = differing({"a": load(), "b": load("train.steps=9"), "c": load("loss.name=sa", "train.threads=1")})
    assert diff["train.steps"] == {"a": load().train.steps, "b": 9, "c": load().train.steps}
    assert diff["loss.sa.K"] == {"a": None, "b": None, "c": 2}
    assert "train.threads" not in diff and "loss.sa.lam" in diff
    assert differing({"a": load(), "b": load("train.seed=4")}) == {}


def test_arms_sentence_says_only_the_objective_differs_only_when_it_does():
    from errprop.config_diff import arms_differences, arms_sentence
    from errprop.study import Arm

    base = ["data.name=ring8", "train.steps=100"]
    arms = [Arm("baseline", "baseline", ["loss.name=simple"]),
            Arm("ip", "IP", ["loss.input_perturbation=0.1"]),
            Arm("sa2u", "SA-2 uniform t", ["loss.name=sa", "loss.sa.t_sampling=uniform"])]
    diffs = arms_differences(base, arms)
    assert diffs["baseline"] == "—" and "⚠" not in diffs["ip"] + diffs["sa2u"]
    text = arms_sentence(diffs, {"ip": "IP", "sa2u": "SA-2 uniform t"})
    assert text.startswith("Only the objective differs") and "IP: loss.input_perturbation: 0.0 → 0.1" in text
    # SA's own antithetic t and a longer training are not the objective: flagged, never "only".
    arms += [Arm("sa2", "SA-2", ["loss.name=sa"]), Arm("long", "longer", ["train.steps=200"])]
    diffs = arms_differences(base, arms)
    text = arms_sentence(diffs, {a.name: a.label for a in arms})
    assert text.startswith("Not only the objective differs")
    assert "⚠ loss.t_sampling: uniform → antithetic" in diffs["sa2"]
    assert "⚠ train.steps: 100 → 200" in diffs["long"]
    assert "Only the objective differs" not in text
