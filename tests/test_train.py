"""The training loop: exact resume, logs, divergence guard, run-folder contents."""

import json

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


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    _poison(monkeypatch, {4})
    cfg = config.load(overrides=FAST + ["train.steps=6", "train.ckpt_every=2"])
    with pytest.raises(ErrpropError, match=r"loss is nan at step 3.*Last good checkpoint.*step-00000002"):
        train(cfg, tmp_path, progress=False)
    assert checkpoint.load(tmp_path)[1]["step"] == 2


def test_skip_nonfinite_skips_a_bounded_number_of_batches(tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 4})
    ok = train(config.load(overrides=FAST + ["train.steps=6", "train.skip_nonfinite=2"]), tmp_path / "a",
               progress=False)
    assert ok.step == 6 and not ok.interrupted
    with pytest.raises(ErrpropError, match="loss is nan at step 3"):
        train(config.load(overrides=FAST + ["train.steps=6", "train.skip_nonfinite=1"]), tmp_path / "b",
              progress=False)
