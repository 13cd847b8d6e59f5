"""Faults lose nothing: signals, failing writes, divergence and bad input end in a checkpoint that
loads and resumes exactly, or in a clear ErrpropError."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import errprop.train as train_mod
from errprop import checkpoint, config
from errprop.errors import ErrpropError
from errprop.train import train

ROOT = Path(__file__).parents[1]
FAST = ["train.batch_size=32", "model.width=16", "model.depth=1", "train.log_every=2", "train.warmup=2",
        "model.dropout=0.1", "train.ckpt_every=2"]
SET = ["--set", "train.steps=3000", "--set", "train.batch_size=32", "--set", "model.width=16",
       "--set", "model.depth=1", "--set", "train.ckpt_every=25", "--set", "train.log_every=25",
       "--no-progress"]


def _cli(*args):
    return [sys.executable, "-m", "errprop.cli", *args]


def _cfg(*extra):
    return config.load(overrides=FAST + list(extra))


def _same_weights(a, b):
    ta, tb = checkpoint.load(a)[0], checkpoint.load(b)[0]
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _hook_loss(monkeypatch, at: dict):
    """Make the loss of the n-th call (1-based) do ``at[n](out)``: the test-only fault hook."""
    real = train_mod.build_loss

    def build(cfg, process):
        loss, calls = real(cfg, process), []

        def fn(denoiser, x0, noise):
            calls.append(1)
            out = loss(denoiser, x0, noise)
            return at[len(calls)](out) if len(calls) in at else out

        return fn

    monkeypatch.setattr(train_mod, "build_loss", build)


def _nan(out):
    return {**out, "loss": out["loss"] * float("nan")}


# ------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_resume_is_exact(tmp_path, monkeypatch, sig):
    def send(out):
        os.kill(os.getpid(), sig)  # arrives during step 3 (index 2); the loop stops after it
        return out

    _hook_loss(monkeypatch, {3: send})
    stopped = train(_cfg("train.steps=6", "train.ckpt_every=5"), tmp_path / "a", progress=False)
    assert stopped.interrupted and stopped.step == 3
    assert stopped.checkpoint == checkpoint.resolve(tmp_path / "a") and checkpoint.load(stopped.checkpoint)
    monkeypatch.undo()
    done = train(_cfg("train.steps=6", "train.ckpt_every=5"), tmp_path / "a", resume=True, progress=False)
    assert done.step == 6 and not done.interrupted
    train(_cfg("train.steps=6", "train.ckpt_every=5"), tmp_path / "b", progress=False)
    _same_weights(tmp_path / "a", tmp_path / "b")
    rows = [json.loads(r)["step"] for r in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [2, 4, 6]


def test_second_ctrl_c_quits_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    def twice(out):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    # What was installed before (Python's default, or SIG_IGN when the suite runs as a background
    # job of a non-interactive shell) must be back afterwards.
    before = signal.getsignal(signal.SIGINT)
    _hook_loss(monkeypatch, {3: twice})
    with pytest.raises(KeyboardInterrupt):
        train(_cfg("train.steps=6"), tmp_path, progress=False)
    assert checkpoint.load(tmp_path)[1]["step"] == 2
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_sigterm_to_a_cli_run_saves_and_resume_completes_exactly(tmp_path):
    run = tmp_path / "killed"
    argv = _cli("train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SET)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not checkpoint.list_checkpoints(run) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at step" in err and "--resume" in err
    tensors, meta = checkpoint.load(run)
    stopped = meta["step"]
    assert 25 <= stopped < 3000
    total = ["--set", f"train.steps={stopped + 30}"]
    assert subprocess.run(_cli("train", "--resume", str(run), *total, "--no-progress"),
                          capture_output=True).returncode == 0
    whole = tmp_path / "whole"
    assert subprocess.run(_cli("train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(whole),
                               *SET, *total), capture_output=True).returncode == 0
    _same_weights(run, whole)


# ------------------------------------------------------------------------------ failing writes
def test_failing_checkpoint_write_stops_and_keeps_the_previous_one(tmp_path, monkeypatch):
    real, calls = checkpoint.save_file, []

    def fail_second(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            open(path, "wb").write(b"half a checkpoint")
            raise OSError(28, "No space left on device")
        real(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", fail_second)
    with pytest.raises(ErrpropError, match=r"checkpoint of step 4.*No space.*step-00000002\.json"):
        train(_cfg("train.steps=6"), tmp_path / "a", progress=False)
    assert checkpoint.load(tmp_path / "a")[1]["step"] == 2
    monkeypatch.undo()
    train(_cfg("train.steps=6"), tmp_path / "a", resume=True, progress=False)
    train(_cfg("train.steps=6"), tmp_path / "b", progress=False)
    _same_weights(tmp_path / "a", tmp_path / "b")


def test_resume_drops_a_metrics_line_cut_by_a_crash(tmp_path):
    train(_cfg("train.steps=4"), tmp_path, progress=False)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 5, "lo')
    train(_cfg("train.steps=6"), tmp_path, resume=True, progress=False)
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [2, 4, 6]


# ------------------------------------------------------------------------------------ divergence
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _hook_loss(monkeypatch, {4: _nan})
    with pytest.raises(ErrpropError, match=r"loss is nan at step 4.*Last good checkpoint.*step-00000002"):
        train(_cfg("train.steps=6"), tmp_path, progress=False)
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 2 and all(torch.isfinite(v).all() for v in tensors.values())


def test_nonfinite_gradient_stops_before_the_update(tmp_path, monkeypatch):
    def inf_grad(out):
        out["loss"].register_hook(lambda g: g * float("inf"))
        return out

    _hook_loss(monkeypatch, {3: inf_grad})
    with pytest.raises(ErrpropError, match=r"gradient norm is (nan|inf) at step 3"):
        train(_cfg("train.steps=6"), tmp_path, progress=False)
    assert all(torch.isfinite(v).all() for v in checkpoint.load(tmp_path)[0].values())


def test_skip_nonfinite_skips_then_continues_within_a_budget_kept_across_resume(tmp_path, monkeypatch):
    _hook_loss(monkeypatch, {2: _nan})
    ok = train(_cfg("train.steps=4", "train.skip_nonfinite=2"), tmp_path, progress=False)
    assert ok.step == 4 and not ok.interrupted
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["skipped_nonfinite"] == 1 and all(torch.isfinite(v).all() for v in tensors.values())
    assert 2 not in [json.loads(r)["step"] for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    monkeypatch.undo()
    _hook_loss(monkeypatch, {1: _nan, 3: _nan})  # calls of the resumed run: steps 5 and 7
    with pytest.raises(ErrpropError, match="loss is nan at step 7"):  # budget 2: one left after the 1st run
        train(_cfg("train.steps=8", "train.skip_nonfinite=2"), tmp_path, resume=True, progress=False)
    assert checkpoint.load(tmp_path)[1]["step"] == 6


# ------------------------------------------------------------------------------------- bad input
def test_resume_with_another_model_or_past_the_end_is_clear(tmp_path):
    train(_cfg("train.steps=2"), tmp_path, progress=False)
    # the one resume rule refuses a model change before any weight is loaded, naming the field
    with pytest.raises(ErrpropError, match=r"changes what the run learns \(model.width: 16 → 8\)"):
        train(_cfg("train.steps=4", "model.width=8"), tmp_path, resume=True, progress=False)
    with pytest.raises(ErrpropError, match=r"does not fit the model \(model weights\)"):  # if allowed
        train(_cfg("train.steps=4", "model.width=8"), tmp_path, resume=True, progress=False,
              allow_change=True)
    with pytest.raises(ErrpropError, match="at step 2, past train.steps = 1"):
        train(_cfg("train.steps=1"), tmp_path, resume=True, progress=False)
    with pytest.raises(ErrpropError, match=r"nothing: not a run folder \(no config.yaml\)"):
        train(_cfg("train.steps=2"), tmp_path / "nothing", resume=True, progress=False)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ErrpropError, match=r"not a run folder \(no config.yaml\)|no checkpoint in"):
        train(_cfg("train.steps=2"), tmp_path / "nothing", resume=True, progress=False)


def _idx(path: Path, a: np.ndarray) -> None:
    header = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()  # IDX: uint8, big-endian dims
    path.write_bytes(header + a.astype("u1").tobytes())


def test_missing_truncated_or_misshapen_data_is_clear_and_writes_nothing(tmp_path):
    root, run = tmp_path / "fm", tmp_path / "run"
    root.mkdir()
    img = ["data.name=fashion-mnist", f"data.root={root}", "model.net=unet", "model.channels=4",
           "model.channel_mult=[1]", "train.steps=1"]
    with pytest.raises(ErrpropError, match="does not hold the IDX file"):
        train(_cfg(*img), run, progress=False)
    _idx(root / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    _idx(root / "train-labels-idx1-ubyte", np.zeros(4))
    data = (root / "train-images-idx3-ubyte").read_bytes()
    (root / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(ErrpropError, match="truncated"):
        train(_cfg(*img), run, progress=False)
    (root / "train-images-idx3-ubyte").write_bytes(data)
    with pytest.raises(ErrpropError, match="'mlp' needs vector data"):
        train(_cfg(*img, "model.net=mlp"), run, progress=False)
    assert not run.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root and mount; skipped where a test cannot mount)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    """Write until the file system is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _snapshot(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.parent.name != "tb"}


def test_a_full_disk_during_train_evaluate_and_diagnose_loses_nothing(small_disk, capsys):
    from errprop.cli import main

    run = small_disk / "run"
    base = ["--set", "model.width=32", "--set", "model.depth=1", "--set", "train.ckpt_every=5",
            "--no-progress"]
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run),
                 "--set", "train.steps=10", *base]) == 0
    assert main(["evaluate", str(run), "--metric", "modes", "--steps", "5", "--n", "100",
                 "--device", "cpu"]) == 0
    assert main(["diagnose", str(run), "--what", "gap", "--steps", "5", "--n", "50", "--device", "cpu"]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    _fill(small_disk)
    for argv in (["train", "--resume", str(run), "--set", "train.steps=20", *base],
                 ["evaluate", str(run), "--metric", "modes", "--steps", "5,10", "--n", "100",
                  "--device", "cpu"],
                 ["diagnose", str(run), "--what", "gap", "--steps", "7", "--n", "50", "--device", "cpu"]):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("errprop: error:")]
        assert code == 2 and len(lines) == 1, (argv[0], err[-2000:])
        assert "No space left on device" in lines[0] and ".tmp" not in lines[0] and "Traceback" not in err
        after = _snapshot(run)
        for name, data in before.items():  # every earlier file is intact
            if name != "metrics.jsonl":  # (its rows up to the checkpoint are kept, rewritten)
                assert after.get(name) == data, f"{argv[0]} changed {name}"
        assert not [n for n, d in after.items() if not d and n not in before], f"{argv[0]} left a 0-byte file"
    assert checkpoint.load(run)[1]["step"] == 10
