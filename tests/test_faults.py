"""A run killed with SIGTERM keeps a loadable checkpoint and resumes to the uninterrupted weights."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from errprop import checkpoint

ROOT = Path(__file__).parents[1]
SET = ["--set", "train.steps=3000", "--set", "train.batch_size=32", "--set", "model.width=16",
       "--set", "model.depth=1", "--set", "train.ckpt_every=25", "--set", "train.log_every=25",
       "--no-progress"]


def _cli(*args):
    return [sys.executable, "-m", "errprop.cli", *args]


@pytest.mark.slow
def test_sigterm_saves_and_resume_completes_exactly(tmp_path):
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
    a, _ = checkpoint.load(run)
    b, _ = checkpoint.load(whole)
    for k in a:
        assert torch.equal(a[k], b[k]), k
