"""The training loop: exact resume, logs, divergence guard, run-folder contents."""

import json
from pathlib import Path

import pytest
import torch

from errprop import checkpoint, config
from errprop.errors import ErrpropError
from errprop.train import train

FAST = ["train.batch_size=64", "model.width=32", "model.depth=1", "train.log_every=5",
        "train.warmup=3", "model.dropout=0.1"]


def _weights(run):
    tensors, _ = checkpoint.load(run)
    return tensors


def test_resume_is_bitwise_exact(tmp_path):
    whole = train(config.load(overrides=FAST + ["train.steps=20"]), tmp_path / "a", progress=False)
    half = config.load(overrides=FAST + ["train.steps=10"])
    train(half, tmp_path / "b", progress=False)
    rest = config.load(overrides=FAST + ["train.steps=20"])
    train(rest, tmp_path / "b", resume=True, progress=False)
    a, b = _weights(whole.run), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(r) for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all({"step", "loss", "loss_simple", "lr", "grad_norm"} <= r.keys() for r in rows)


def test_run_folder_contents(tmp_path):
    train(config.load(overrides=FAST + ["train.steps=4", "train.ckpt_every=2", "train.keep_last=1"]),
          tmp_path, progress=False)
    assert config.load(tmp_path / "config.yaml").train.steps == 4
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-00000004.json"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    with pytest.raises(ErrpropError, match="already holds a run"):
        train(config.load(overrides=FAST + ["train.steps=4"]), tmp_path, progress=False)


def _poison(monkeypatch, bad_calls):
    """Make the training loss NaN on the given (1-based) calls — a test-only divergence hook."""
    import errprop.train as train_mod

    real = train_mod.build_loss

    def poisoned(cfg, process):
        loss, calls = real(cfg, process), []

        def fn(denoiser, x0, noise):
            calls.append(1)
            out = loss(denoiser, x0, noise)
            return {**out, "loss": out["loss"] * float("nan")} if len(calls) in bad_calls else out

        return fn

    monkeypatch.setattr(train_mod, "build_loss", poisoned)


def test_same_seed_same_weights_and_samples(tmp_path):
    from errprop.builders import load_run
    from errprop.generate import generate

    cfg = config.load(overrides=FAST + ["train.steps=6"])
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    runs = [load_run(tmp_path / r) for r in "ab"]
    xa, xb = (generate(r.denoiser, r.process, r.shape, 64, seed=3, steps=5) for r in runs)
    assert torch.equal(xa, xb)
    other = train(config.load(overrides=FAST + ["train.steps=6", "train.seed=1"]), tmp_path / "c",
                  progress=False)
    assert not torch.equal(_weights(other.run)["model.out.2.weight"], a["model.out.2.weight"])


def test_ema_warmup_is_diffusers_ema_model():
    from diffusers.training_utils import EMAModel

    from errprop.train import ema_decay

    ema = EMAModel([torch.nn.Parameter(torch.zeros(1))], decay=0.999)
    for k in range(200):
        ema.optimization_step = k + 1  # diffusers counts the update being made
        assert ema_decay(0.999, k) == pytest.approx(ema.get_decay(ema.optimization_step), abs=1e-12), k
    assert ema_decay(0.999, 10_000) == 0.999  # (1 + k)/(10 + k) reaches 0.999 at k ≈ 9,000
    assert ema_decay(0.999, 0, warmup=False) == 0.999


def test_ema_warmup_forgets_the_initial_weights(tmp_path):
    """With warm-up the EMA after one step is the trained weights (diffusers: decay 0 first)."""
    run = train(config.load(overrides=FAST + ["train.steps=1", "train.ema_decay=0.999"]),
                tmp_path / "w", progress=False).run
    t = _weights(run)
    for k in (k for k in t if k.startswith("model.")):
        assert torch.equal(t[k], t["ema." + k[len("model."):]]), k


def test_train_to_end_never_returns_a_half_trained_run(tmp_path, monkeypatch):
    """SIGTERM (a job's time limit) stops `train` early *by design*; a script that then scores the
    model would score a half-trained one, as B4 did with EP. `train_to_end` raises instead, keeps
    the checkpoint, and a second call continues to the end."""
    import os
    import signal

    from errprop import train as train_mod
    from errprop.train import train_to_end

    lr = train_mod._lr

    def lr_then_sigterm(cfg, step):  # called once per step inside the loop
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return lr(cfg, step)

    monkeypatch.setattr(train_mod, "_lr", lr_then_sigterm)
    cfg = config.load(overrides=FAST + ["train.steps=50", "train.ckpt_every=1000"])
    with pytest.raises(ErrpropError, match="interrupted at step 8 of 50"):
        train_to_end(cfg, tmp_path / "r", progress=False)
    assert checkpoint.load(tmp_path / "r")[1]["step"] == 8
    monkeypatch.setattr(train_mod, "_lr", lr)
    done = train_to_end(cfg, tmp_path / "r", progress=False)
    assert done.step == 50 and not done.interrupted
    # the interruption's checkpoint was a resume point only: gone once the run saved a later one
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(tmp_path / "r")] == [50]


def test_train_to_end_refuses_a_folder_with_another_config(tmp_path):
    from errprop.train import train_to_end

    train_to_end(config.load(overrides=FAST + ["train.steps=3"]), tmp_path / "r", progress=False)
    with pytest.raises(ErrpropError, match="another config.*loss.name: 'simple' → 'sa'"):
        train_to_end(config.load(overrides=FAST + ["train.steps=3", "loss.name=sa"]), tmp_path / "r",
                     progress=False)
    # stricter than train(resume=True): a script's folder is one config, train.* included
    with pytest.raises(ErrpropError, match="another config.*train.lr"):
        train_to_end(config.load(overrides=FAST + ["train.steps=3", "train.lr=0.01"]), tmp_path / "r",
                     progress=False)


def test_train_to_end_extends_a_run_exactly(tmp_path):
    """With ``extend`` (E8's budgets along one training) a run trained to 10 steps is trained on to
    20 — bit for bit the run trained to 20 at once, its checkpoints kept — and the change is
    recorded; what the run learns still may not differ, and a shorter request reads the longer run
    as it is."""
    from errprop.train import train_to_end

    def cfg(steps, *more):
        return config.load(overrides=FAST + [f"train.steps={steps}", "train.ckpt_every=5",
                                             f"train.keep_last={steps // 5}", *more])

    whole = train_to_end(cfg(20), tmp_path / "whole", progress=False)
    run = tmp_path / "r"
    train_to_end(cfg(10), run, progress=False)
    with pytest.raises(ErrpropError, match="another config.*train.steps"):
        train_to_end(cfg(20), run, progress=False)  # without extend: another run
    with pytest.raises(ErrpropError, match="another config.*loss.name"):
        train_to_end(cfg(20, "loss.name=sa"), run, progress=False, extend=True)
    assert checkpoint.load(run)[1]["step"] == 10
    done = train_to_end(cfg(20), run, progress=False, extend=True)
    assert done.step == 20 and done.start == 10
    a, b = _weights(whole.run), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a), "an extended run differs from the run trained at once"
    assert [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(run)] == [5, 10, 15, 20]
    change = json.loads((run / "changes.jsonl").read_text().splitlines()[-1])
    assert change["changed"]["train.steps"] == [10, 20]
    again = train_to_end(cfg(10), run, progress=False, extend=True)  # a shorter study reads it
    assert again.step == 20 and checkpoint.load(run)[1]["step"] == 20


def test_resume_follows_the_one_rule_and_records_every_change(tmp_path):
    """train(resume=True) — the API, as the CLI does — refuses a change to what the run learns
    unless allowed (naming the field, before touching the folder), and records every change."""
    run = tmp_path / "r"
    train(config.load(overrides=FAST + ["train.steps=3"]), run, progress=False)
    before = (run / "config.yaml").read_text()
    with pytest.raises(ErrpropError, match=r"loss.name: 'simple' → 'sa'.*allow_change=True"):
        train(config.load(overrides=FAST + ["train.steps=5", "loss.name=sa"]), run, resume=True,
              progress=False)
    assert (run / "config.yaml").read_text() == before and not (run / "changes.jsonl").exists()
    assert checkpoint.load(run)[1]["step"] == 3
    # train and sample fields change freely (training on); the change is recorded
    train(config.load(overrides=FAST + ["train.steps=5"]), run, resume=True, progress=False)
    change = json.loads((run / "changes.jsonl").read_text().splitlines()[-1])
    assert change["resumed_at_step"] == 3 and change["changed"] == {"train.steps": [3, 5]}
    # what the run learns changes only when allowed
    result = train(config.load(overrides=FAST + ["train.steps=7", "loss.input_perturbation=0.1"]), run,
                   resume=True, progress=False, allow_change=True)
    assert result.step == 7 and result.start == 5
    rows = [json.loads(r) for r in (run / "changes.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["changed"]["loss.input_perturbation"] == [0.0, 0.1]
    assert config.load(run / "config.yaml").loss.input_perturbation == 0.1
    # the same config: nothing to record
    train(config.load(run / "config.yaml", ["train.steps=7"]), run, resume=True, progress=False)
    assert len((run / "changes.jsonl").read_text().splitlines()) == 2


def test_a_run_without_a_folder_goes_to_runs_name_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(config.load(overrides=FAST + ["train.steps=1"]), progress=False, name="gmm")
    assert result.run.parent == Path("runs") and result.run.name.startswith("gmm-")
    assert (tmp_path / result.run / "config.yaml").is_file()
    with pytest.raises(ErrpropError, match="needs the run folder"):
        train(config.load(overrides=FAST), resume=True, progress=False)


def test_train_to_end_accepts_a_run_saved_before_a_field_was_added(tmp_path):
    """A config.yaml without a field added later (it takes its default) is the same run, not another."""
    import yaml

    from errprop import config as config_mod
    from errprop.train import train_to_end

    small = ["model.width=16", "model.depth=1", "train.ckpt_every=2"]
    cfg = config_mod.load(overrides=["train.steps=4", *small])
    run = tmp_path / "run"
    train_to_end(config_mod.load(overrides=["train.steps=2", *small]), run, progress=False)
    raw = yaml.safe_load((run / "config.yaml").read_text())
    del raw["sample"]["thresholding"], raw["process"]["betas"]  # as written by an older errprop
    raw["train"]["steps"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    assert train_to_end(cfg, run, progress=False).step == 4
    raw["loss"]["name"] = "sa"
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ErrpropError, match="another config"):
        train_to_end(cfg, run, progress=False)


def test_train_threads_apply_during_training_and_are_restored(tmp_path, monkeypatch):
    import errprop.train as train_mod

    seen = []
    real = train_mod._train
    monkeypatch.setattr(train_mod, "_train", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    for threads in (1, 0):
        train(config.load(overrides=FAST + ["train.steps=2", f"train.threads={threads}"]),
              tmp_path / f"run{threads}", progress=False)
        assert torch.get_num_threads() == before
    assert seen == [1, before]
