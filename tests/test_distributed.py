"""torchrun with two gloo ranks on CPU trains the same model as one process."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from errprop import checkpoint

ROOT = Path(__file__).parents[1]
SET = ["--set", "train.steps=12", "--set", "train.batch_size=64", "--set", "model.width=32",
       "--set", "model.depth=1", "--set", "train.ckpt_every=6", "--set", "train.log_every=3",
       "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out, ranks, extra=()):
    cmd = [sys.executable, "-m", "errprop.cli", "train", "--config", str(ROOT / "configs/gmm.yaml"),
           "--out", str(out), *SET, *extra]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *cmd[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path):
    _train(tmp_path / "one", 1)
    _train(tmp_path / "two", 2)
    a, _ = checkpoint.load(tmp_path / "one")
    b, meta = checkpoint.load(tmp_path / "two")
    assert meta["step"] == 12 and a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if k.startswith("model."))
    assert worst < 1e-6, worst
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4  # rank 0 alone writes the log


@pytest.mark.slow
def test_resume_under_two_ranks(tmp_path):
    _train(tmp_path / "r", 2, ["--set", "train.steps=6"])
    cmd_resume = ["--set", "train.steps=12"]
    port = _free_port()
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "errprop.cli",
                        "train", "--resume", str(tmp_path / "r"), *cmd_resume, "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _train(tmp_path / "whole", 1)
    a, _ = checkpoint.load(tmp_path / "whole")
    b, _ = checkpoint.load(tmp_path / "r")
    worst = max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("model."))
    assert worst < 1e-6, worst
    assert torch.isfinite(b["ema.out.2.weight"]).all()
