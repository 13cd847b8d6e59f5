"""Studies: paired arms over seeds, cached and resumable, refusing to reuse a different run."""

import json

import pytest

from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.study import Arm, Settings, quality, run_study, summarize

BASE = ["data.name=ring8", "model.width=16", "model.depth=1", "train.batch_size=64",
        "train.steps=20", "train.ckpt_every=20", "train.warmup=2"]
TINY = dict(seeds=[0, 1], sampling_steps=[3], samplers=["ddim"], n=64, diag_steps=4, n_diag=32)


def test_quality_of_data_itself_is_at_the_floor():
    mix = GaussianMixture.ring8()
    ref, x = mix.sample_n(4000, seed=1), mix.sample_n(4000, seed=2)
    q = quality(mix, x, ref, -mix.log_prob(ref.double()))
    assert abs(q["xent"]) < 0.05 and abs(q["xent_median"]) < 0.05
    assert q["modes"] < 0.02 and q["off_mode"] < 0.01
    far = quality(mix, x + 0.3, ref, -mix.log_prob(ref.double()))
    assert far["xent"] > 1.0 and far["mmd2"] > 10 * max(q["mmd2"], 1e-4)


def test_study_pairs_arms_by_seed_and_caches(tmp_path):
    arms = [Arm("baseline", "base", []), Arm("same", "same again", [])]
    s = Settings(base=BASE, **TINY)
    r = run_study(tmp_path, arms, s, progress=False, log=lambda m: None)
    p = r["summary"]["paired"]["same"]
    # The same objective with the same seeds is the same model: every paired difference is 0.
    assert all(v["mean"] == 0 and v["verdict"] == "no difference" for v in p.values())
    assert (tmp_path / "study.json").is_file() and (tmp_path / "timing.json").is_file()
    logs = []
    run_study(tmp_path, arms, s, progress=False, log=logs.append)
    # nothing retrained or re-measured (the exact denoiser, cheap and uncached, is measured again)
    assert [m for m in logs if "exact denoiser" not in m] == []
    with pytest.raises(ErrpropError, match="another config"):  # never silently reuse another run
        (tmp_path / "runs" / "same" / "seed0" / "study.json").unlink()
        run_study(tmp_path, [arms[0], Arm("same", "changed", ["train.lr=0.5"])], s, progress=False,
                  log=lambda m: None)


def test_summary_flags_a_real_difference():
    """A synthetic arm that is worse by a constant on every seed is flagged 'higher'."""
    def res(shift):
        return {"quality": {"ddim-3": {"xent": 1 + shift, "xent_median": 0.5 + shift,
                                       "mmd2": 0.1 + shift}},
                "modular_kl": [0.1, None], "cumulative_xent": [0.2, 0.3], "gap": [0.0, 1.0]}
    seeds = [0, 1, 2]
    results = {"baseline": {s: res(0.01 * s) for s in seeds},
               "worse": {s: res(0.01 * s + 0.5) for s in seeds},
               "exact": {s: res(0.0) for s in seeds},
               "floor": {s: {"xent": 0.0, "xent_median": 0.0, "mmd2": 0.0} for s in seeds}}
    arms = [Arm("baseline", "b", []), Arm("worse", "w", [])]
    out = summarize(results, arms, Settings(base=[], seeds=seeds))
    assert out["paired"]["worse"]["xent ddim-3"]["verdict"] == "higher"
    assert out["paired"]["worse"]["modular KL, sum over steps"]["verdict"] == "no difference"


def test_study_needs_a_mixture_and_a_baseline_first(tmp_path):
    with pytest.raises(ErrpropError, match="baseline"):
        run_study(tmp_path, [Arm("x", "x", [])], Settings(base=BASE), progress=False)
    with pytest.raises(ErrpropError, match="Gaussian-mixture"):
        run_study(tmp_path, [Arm("baseline", "b", [])], Settings(base=["data.name=digits"]),
                  progress=False)


def test_provenance_names_the_code_the_process_loaded(monkeypatch):
    """A report written after the repository moved on names the commit the process started with."""
    from errprop import provenance

    monkeypatch.setattr(provenance, "commit", lambda: "bbbbbbb")
    monkeypatch.setattr(provenance, "_LOADED", "bbbbbbb")
    assert provenance.provenance()["commit"] == "bbbbbbb"
    monkeypatch.setattr(provenance, "_LOADED", "aaaaaaa")
    assert provenance.provenance()["commit"] == "aaaaaaa (code loaded at start; HEAD bbbbbbb when written)"


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    run_study(out, PAIR, Settings(base=BASE, **TINY), progress=False, log=lambda m: None, jobs=1)
    return (out / "study.json").read_bytes()


PAIR = [Arm("baseline", "base", []), Arm("sa2", "SA-2", ["loss.name=sa", "loss.sa.K=2"])]


@pytest.mark.slow  # worker processes start a fresh interpreter each (torch's import: seconds)
def test_parallel_study_equals_the_sequential_one(sequential, tmp_path):
    logs = []
    run_study(tmp_path, PAIR, Settings(base=BASE, **TINY), progress=False, log=logs.append, jobs=2)
    assert any("in 2 processes" in m for m in logs)  # it did run in workers
    assert (tmp_path / "study.json").read_bytes() == sequential


@pytest.mark.slow
def test_a_dask_cluster_runs_the_same_study(sequential, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        logs = []
        run_study(tmp_path, PAIR, Settings(base=BASE, **TINY), progress=False, log=logs.append,
                  executor=client.get_executor())
    assert any("ClientExecutor" in m for m in logs)
    assert (tmp_path / "study.json").read_bytes() == sequential


def test_budgets_measure_the_checkpoints_of_one_training(tmp_path):
    """A budget's measurement is that of the checkpoint at that step: equal to a study trained
    only that far (the learning rate is constant after warm-up, so a longer run passes through it)."""
    arms = [Arm("baseline", "base", [])]
    long = Settings(base=BASE[:-2] + ["train.steps=20", "train.ckpt_every=10", "train.keep_last=2"],
                    budgets=[10], **TINY)
    r = run_study(tmp_path / "long", arms, long, progress=False, log=lambda m: None)
    short = Settings(base=BASE[:-2] + ["train.steps=10", "train.ckpt_every=10"], **TINY)
    s = run_study(tmp_path / "short", arms, short, progress=False, log=lambda m: None)
    same = json.dumps  # (compares NaN with NaN as equal)
    assert same(r["results_at"][10]["baseline"]) == same(s["results"]["baseline"])
    assert same(r["results"]["baseline"]) != same(s["results"]["baseline"])  # the last budget: another model
    assert same(r["summary"]["budgets"][10]["arms"]["baseline"]) == same(s["summary"]["arms"]["baseline"])


def test_budgets_must_be_kept_checkpoints(tmp_path):
    arms = [Arm("baseline", "base", [])]
    for base, budgets, match in [(["train.ckpt_every=10"], [15], "multiple of train.ckpt_every"),
                                 (["train.ckpt_every=10"], [20], "below train.steps"),
                                 (["train.ckpt_every=5", "train.keep_last=2"], [5], "keep_last must be ≥ 4")]:
        s = Settings(base=BASE[:-2] + ["train.steps=20", *base], budgets=budgets, **TINY)
        with pytest.raises(ErrpropError, match=match):
            run_study(tmp_path, arms, s, progress=False, log=lambda m: None)


def test_a_cache_of_other_training_numerics_is_retrained(tmp_path, monkeypatch):
    import errprop.study as study_mod

    arms = [Arm("baseline", "base", [])]
    s = Settings(base=BASE, **TINY)
    run_study(tmp_path, arms, s, progress=False, log=lambda m: None)
    logs = []
    monkeypatch.setattr(study_mod, "NUMERICS", study_mod.NUMERICS + 1)
    run_study(tmp_path, arms, s, progress=False, log=logs.append)
    assert any("training" in m for m in logs)  # not paired with the old numbers


def test_mixtures_and_arms_by_name():
    from errprop.study import mixture, objective_arms

    assert mixture("random512")[1] == 512 and mixture("ring8")[1] == 2
    for bad in ("random0", "random", "moons"):
        with pytest.raises(ErrpropError, match="unknown mixture"):
            mixture(bad)
    names = [a.name for a in objective_arms(16, ["ep", "sa2"])]
    assert names == ["baseline", "sa2", "ep"]
    assert "loss.ep.lam=16.0" in objective_arms(16, ["ep"])[1].overrides
    with pytest.raises(ErrpropError, match="unknown arm"):
        objective_arms(2, ["sa9"])


def test_step_costs_are_relative_to_the_baseline():
    from errprop.study import step_costs

    arms = [Arm("baseline", "base", []), Arm("ep", "EP", ["loss.name=ep"])]
    c = step_costs(BASE, arms, steps=30, skip=10, repeats=1)
    assert c["baseline"] == 1.0 and c["ep"] > 1.0  # EP's rollouts cost network passes
    with pytest.raises(ErrpropError, match="must exceed skip"):
        step_costs(BASE, arms, steps=10, skip=10)


def test_an_unreadable_cached_measurement_is_measured_again(tmp_path):
    arms = [Arm("baseline", "base", [])]
    s = Settings(base=BASE, **TINY)
    first = run_study(tmp_path, arms, s, progress=False, log=lambda m: None)
    (tmp_path / "runs" / "baseline" / "seed0" / "study.json").write_text("{broken")
    logs = []
    again = run_study(tmp_path, arms, s, progress=False, log=logs.append)
    assert any("seed 0" in m for m in logs) and not any("seed 1" in m for m in logs)
    assert json.dumps(again["results"]["baseline"]) == json.dumps(first["results"]["baseline"])


def test_a_worker_whose_training_was_stopped_starts_no_further_unit(tmp_path, monkeypatch):
    """A process pool hands a worker its next unit before the last one ends, and a stopped study
    cannot take it back: once a signal stopped a training in a worker, the units still queued to it
    end at once (TrainingInterrupted), instead of training to their end while the study waits."""
    from errprop import study as study_mod
    from errprop.train import TrainingInterrupted

    monkeypatch.setattr(study_mod, "_STOPPED", [])
    started = []

    def stopped(cfg, run, progress):
        started.append(run)
        raise TrainingInterrupted(f"training of {run} was interrupted at step 7 of 20")

    monkeypatch.setattr(study_mod, "train_to_end", stopped)
    s = Settings(base=BASE, **TINY)
    unit, queued = study_mod._units(tmp_path, [Arm("baseline", "base", [])], s)
    with pytest.raises(TrainingInterrupted, match="step 7 of 20"):
        study_mod._train_and_measure(unit, s, False, 1)
    with pytest.raises(TrainingInterrupted, match="not started: this worker's last training was stopped"):
        study_mod._train_and_measure(queued, s, False, 1)
    with pytest.raises(TrainingInterrupted, match="not started"):
        study_mod._measure_exact(BASE, s, 0, 1)
    assert started == [unit.run]  # the queued unit never reached its training
