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
    assert ema_decay(0.999, 5000) == 0.999
    assert ema_decay(0.999, 0, warmup=False) == 0.999


def test_ema_warmup_forgets_the_initial_weights(tmp_path):
    """With warm-up the EMA after one step is the trained weights (diffusers: decay 0 first)."""
    run = train(config.load(overrides=FAST + ["train.steps=1", "train.ema_decay=0.999"]),
                tmp_path / "w", progress=False).run
    t = _weights(run)
    for k in (k for k in t if k.startswith("model.")):
        assert torch.equal(t[k], t["ema." + k[len("model."):]]), k
