"""experiments/e2_fashion_mnist.py's report on made-up FDs: a pure function of the result data,
its verdicts by the library's rule with p_Holm, re-rendered from the JSON alone with the original
provenance, and a study summary the claims table reads."""

import json
from pathlib import Path

import pytest

from errprop import config as config_mod
from errprop.findings import claim_row
from errprop.stats import holm

ROOT = Path(__file__).parents[1]
COMMAND = ("python experiments/e2_fashion_mnist.py --steps 10 --n 50 --sampling-steps 10,20 "
           "--samplers ddim --seeds-cm 2")
ORIGINAL = {"commit": "abc1234", "machine": "Some CPU, 2 cores, torch 9.9", "date": "2000-01-01 00:00 UTC"}


@pytest.fixture
def e2(script):
    return script("experiments/e2_fashion_mnist.py")


def _fd() -> dict:
    """FDs per arm and seed (int keys, as a run holds them): SA-2 one below the baseline, the
    compute-matched baseline three below it (so SA-2 is above it), EP and ε-scaling one seed."""
    shift = {"baseline": 0.0, "sa2": -1.0, "ep": 0.5, "cm": -3.0, "es": 0.0}
    seeds = {"baseline": 3, "sa2": 3, "ep": 1, "cm": 2, "es": 1}
    out = {}
    for arm, n in seeds.items():
        for s in range(n):
            noise = 0 if arm == "baseline" else 0.02 * (-1) ** s * (1 + (arm == "cm"))
            out.setdefault(arm, {})[s] = {
                "n": 50, "seed": s, "floor": 0.2 + 0.01 * s, "train_step": 20 if arm == "cm" else 10,
                "results": [{"sampler": "ddim", "steps": k,
                             "value": 10 + 0.3 * s + k / 10 + shift[arm] + noise} for k in (10, 20)]}
    return out


def _old_payload() -> dict:
    """A result file as E2 wrote it before write_result: no sizes, no compute-matched steps."""
    times = {a: {str(s): 100.0 + s for s in runs} for a, runs in _fd().items() if a != "es"}
    fd = {a: {str(s): r for s, r in runs.items()} for a, runs in _fd().items()}
    return {"command": COMMAND, **ORIGINAL, "fd": fd, "train_seconds": times,
            "es_b": {"ddim-10": 1.0, "ddim-20": 1.002}, "paired": {"sa2 ddim-10": {"verdict": "lower"}}}


def test_fashion_mnist_overrides_load_the_config_file(e2):
    size = e2.size(16, 1500)
    assert (config_mod.load(overrides=e2.FASHION_MNIST + size).to_dict()
            == config_mod.load(ROOT / "configs" / "fashion_mnist.yaml", size).to_dict())


def test_rerender_gives_the_library_verdicts_with_holm_and_keeps_the_original_provenance(e2, tmp_path):
    (tmp_path / "e2_fashion_mnist.json").write_text(json.dumps(_old_payload()))
    payload = e2.rerender(tmp_path)
    assert {k: payload[k] for k in ORIGINAL} == ORIGINAL and payload["command"] == COMMAND
    assert payload["config"] == {"channels": 16, "steps": 10, "n": 50, "samplers": ["ddim"],
                                 "sampling_steps": [10, 20]}
    assert payload["cm_steps"] == 20 and payload["cm_ratio"] is None
    md = (tmp_path / "e2_fashion_mnist.md").read_text()
    assert "- commit: abc1234, date: 2000-01-01 00:00 UTC" in md
    # the verdicts: the library's words, never the old ones
    intro = payload["intro"]
    assert "(lower FD)" not in intro and "beyond noise" not in intro
    assert "**SA-2 (λ=1)** against the baseline (3 paired seeds): ddim-10 **supported**" in intro
    assert "**EP (L=5, λ=D=784)**: not decidable (one seed: no interval)." in intro
    assert "**baseline + ε-scaling (b per setting)**: not decidable (one seed: no interval)." in intro
    assert ("**SA-2 (λ=1)** against the **compute-matched baseline (20 steps)** (paired on their shared "
            "seeds [0, 1]; p_Holm over its 2 settings): ddim-10 **contradicted**") in intro
    # Holm over the arm × setting tests with an interval: SA-2 and the compute-matched baseline × 2
    tests = payload["paired"]
    family = [k for k in tests if "p_holm" in tests[k]]
    assert sorted(family) == ["cm ddim-10", "cm ddim-20", "sa2 ddim-10", "sa2 ddim-20"]
    assert [tests[k]["p_holm"] for k in family] == pytest.approx(holm([tests[k]["p"] for k in family]))
    assert "p_Holm over the 4 arm × setting tests" in intro
    assert f"p_Holm {tests['sa2 ddim-10']['p_holm']:.2g}" in intro
    # the table: mean ± sd, Δ with its interval and p_Holm; a one-seed arm its single difference
    row = payload["table"][1]
    assert row[0] == "ddim-10" and row[2].startswith("10.31 ± 0.3<br>Δ -0.993 [") and "p_Holm" in row[2]
    assert row[3] == "11.52<br>Δ +0.52"
    # rendering the re-rendered file again changes nothing
    files = {p.name: p.read_bytes() for p in tmp_path.rglob("*.json")} | {"md": md.encode()}
    e2.rerender(tmp_path)
    assert files == {p.name: p.read_bytes() for p in tmp_path.rglob("*.json")} | {
        "md": (tmp_path / "e2_fashion_mnist.md").read_bytes()}


def test_a_run_and_its_rerender_write_the_same_report(e2, tmp_path):
    data = {"config": {"channels": 16, "steps": 10, "n": 50, "samplers": ["ddim"],
                       "sampling_steps": [10, 20]},
            "fd": _fd(), "train_seconds": {"baseline": {0: 1.0, 1: 2.0, 2: 3.0}}, "es_b": {},
            "cm_steps": 20, "cm_ratio": 2.0, "missing": ["ip seed 0"]}
    first = e2.write_report(tmp_path, data, COMMAND)  # what a run writes: this process's provenance
    before = (tmp_path / "e2_fashion_mnist.md").read_text()
    assert "**Not finished when this report was written**" in before and "10 × 2.00" in before
    again = e2.rerender(tmp_path)
    assert (tmp_path / "e2_fashion_mnist.md").read_text() == before
    keys = ("commit", "date", "machine")
    assert {k: again[k] for k in keys} == {k: first[k] for k in keys}


def test_the_study_summary_answers_claims_against_the_baseline_and_the_compute_matched_one(e2, tmp_path):
    (tmp_path / "e2_fashion_mnist.json").write_text(json.dumps(_old_payload()))
    e2.rerender(tmp_path)
    prov = json.loads((tmp_path / "e2_fashion_mnist" / "provenance.json").read_text())
    assert prov == {"command": COMMAND, **ORIGINAL, "cpu": "Some CPU"}
    claim = {"id": "x", "claim": "c", "test": "t", "source": "e2_fashion_mnist/study.json", "arm": "sa2",
             "metric": "fd ddim-10", "claimed": "lower", "endpoint": "e", "declared": "post hoc"}
    base = claim_row(claim, tmp_path)
    assert base[4] == "**supported**" and "on baseline 11.3;" in base[3] and "p_Holm" in base[3]
    assert "train.steps" not in base[1] and "t_sampling uniform → antithetic" in base[1]
    cm = claim_row(claim | {"against": "cm"}, tmp_path)
    assert cm[4] == "**contradicted**" and "on compute-matched baseline (20 steps) 8.15;" in cm[3]
    assert "train.steps 20 → 10" in cm[1] and "(2 paired seeds; commit abc1234, Some CPU" in cm[5]


def test_a_study_of_some_arms_has_its_own_name_and_a_primary_endpoint_declared_before_it(e2, tmp_path):
    fd = _fd()
    fd = {"baseline": fd["baseline"], "sa2u": fd["sa2"]}
    data = {"config": {"channels": 16, "steps": 10, "n": 50, "samplers": ["ddim"],
                       "sampling_steps": [10, 20]},
            "fd": fd, "train_seconds": {"baseline": {0: 1.0}, "sa2u": {0: 2.0}}, "es_b": {},
            "cm_steps": None, "cm_ratio": None, "missing": [], "name": "e2_uniform_t"}
    payload = e2.write_report(tmp_path, data, "python experiments/e2_fashion_mnist.py --name e2_uniform_t")
    assert not (tmp_path / "e2_fashion_mnist.md").exists()
    md = (tmp_path / "e2_uniform_t.md").read_text()
    assert md.startswith("# E2 — Fashion-MNIST: FD of SA-2 with uniform t against the baseline\n")
    assert "declared in code (`PRIMARY`) before this run" in md and "post hoc" not in md
    assert "**SA-2 (λ=1, uniform t)** against the baseline (3 paired seeds): ddim-10 **supported**" in md
    # the t distribution is the baseline's: the objective is all that differs (checked on the configs)
    assert "⚠" not in md and "--rerender --name e2_uniform_t" in md
    assert payload["arms"] == ["baseline", "sa2u"]
    e2.rerender(tmp_path, "e2_uniform_t")
    assert (tmp_path / "e2_uniform_t.md").read_text() == md
    claim = {"id": "x", "claim": "c", "test": "t", "source": "e2_uniform_t/study.json", "arm": "sa2u",
             "metric": "fd ddim-10", "claimed": "lower", "endpoint": "e", "declared": "before the run"}
    assert claim_row(claim, tmp_path)[4] == "**supported**"


@pytest.mark.parametrize("argv, words", [
    (["--arms", "baseline,sa2u"], "needs its own --name"),
    (["--arms", "sa2,sa2u", "--name", "x"], "must name the baseline"),
    (["--arms", "baseline,cm", "--name", "x"], "cm (the baseline given SA-2's step cost) needs sa2"),
    (["--arms", "baseline,sa2u", "--name", "x", "--only", "ep"], "are not in --arms"),
    (["--seed-list", "0,one"], "--seed-list: '0,one' is not"),
    (["--rerender", "--name", "nosuch", "--docs", "/nonexistent"], "/nonexistent/nosuch.json does not exist"),
    (["--arms", "baseline,sa2u", "--name", "x", "--only", "sa2u", "--seed-list", "1,3"],
     "--seed-list: seed(s) [3] belong to none of the arms run here (sa2u"),
])
def test_arms_and_seeds_that_make_no_study_are_usage_errors(e2, argv, words, capsys):
    with pytest.raises(SystemExit):
        e2.main(argv)
    assert words in capsys.readouterr().err


@pytest.mark.slow
def test_a_study_split_across_processes_by_seed_gives_one_report(e2, tmp_path, capsys):
    from errprop.data.images import FASHION_MNIST_ROOT

    if not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (the README's setup installs it)")
    args = ["--quick", "--arms", "baseline,sa2u", "--name", "split", "--out", str(tmp_path)]
    e2.main([*args, "--only", "sa2u", "--seed-list", "1"])  # one process: SA-2 uniform-t seed 1 only
    runs = tmp_path / "quick"
    assert (runs / "sa2u" / "seed1" / "e2_fd.json").is_file()
    assert not (runs / "sa2u" / "seed0").exists() and not (runs / "baseline").exists()
    assert not (runs / "split.md").exists()
    assert "rerun without --only and --seed-list" in capsys.readouterr().out
    e2.main(args)  # the run without them: trains what is left, reads seed 1 back, writes the report
    out = capsys.readouterr().out
    assert "sa2u seed 1: training" not in out and "sa2u seed 0: training" in out
    payload = json.loads((runs / "split.json").read_text())
    assert payload["seeds"] == {"baseline": [0, 1], "sa2u": [0, 1]}
    assert "declared in code (`PRIMARY`) before this run" in payload["intro"]
