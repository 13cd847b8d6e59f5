"""torchrun with two gloo ranks on CPU: the same weights as one process, resume, agreed stops."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from errprop import checkpoint

ROOT = Path(__file__).parents[1]
SET = ["--set", "train.batch_size=64", "--set", "model.width=32", "--set", "model.depth=1",
       "--set", "model.dropout=0", "--set", "train.precision=fp32", "--set", "train.ckpt_every=6",
       "--set", "train.log_every=3", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(ranks: int, *args: str) -> list[str]:
    """``errprop ARGS`` in one process, or under torchrun with ``ranks`` processes."""
    if ranks == 1:
        return [sys.executable, "-m", "errprop.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "errprop.cli", *args]


def _run(ranks: int, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(_argv(ranks, *args), capture_output=True, text=True, timeout=600, env=ENV)
    if ok:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def _new(ranks: int, out: Path, steps: int, *extra: str) -> None:
    _run(ranks, "train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(out), *SET,
         "--set", f"train.steps={steps}", *extra)


def _max_diff(a: Path, b: Path, prefix: str = "model.") -> float:
    ta, tb = checkpoint.load(a)[0], checkpoint.load(b)[0]
    assert ta.keys() == tb.keys()
    return max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta if k.startswith(prefix))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The single-process reference: 12 steps of the ring-of-8 model."""
    out = tmp_path_factory.mktemp("single") / "run"
    _new(1, out, 12)
    return out


def test_two_ranks_match_one_process(single, tmp_path):
    _new(2, tmp_path / "two", 12)
    assert checkpoint.load(tmp_path / "two")[1]["step"] == 12
    assert _max_diff(single, tmp_path / "two") < 1e-6
    assert _max_diff(single, tmp_path / "two", "ema.") < 1e-6
    rows = [json.loads(r) for r in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(r) for r in (single / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 9, 12]  # rank 0 alone writes the log ...
    for r, s in zip(rows, ref):  # ... the losses of the whole global batch (means over ranks)
        assert r["loss"] == pytest.approx(s["loss"], rel=1e-5)
        assert r["grad_norm"] == pytest.approx(s["grad_norm"], rel=1e-5)
    assert len(list((tmp_path / "two" / "tb").glob("events.out.tfevents.*"))) == 1


def test_sa_under_two_ranks_matches_one_process(tmp_path):
    """SA's window noise is drawn per sample, so two ranks of half the batch train the same weights
    as one process — with uniform t. The code's antithetic t pairs samples within each rank's
    batch, so under torchrun it pairs other samples than one process would (a different draw of
    the same estimator, not an error)."""
    extra = ["--set", "loss.name=sa", "--set", "loss.sa.K=2", "--set", "loss.sa.t_sampling=uniform"]
    _new(1, tmp_path / "one", 6, *extra)
    _new(2, tmp_path / "two", 6, *extra)
    assert _max_diff(tmp_path / "one", tmp_path / "two") < 1e-6


def test_ep_trains_under_two_ranks(tmp_path):
    """EP's rollout (no_grad steps before the graded ones) runs under DDP: every rank finishes, the
    log is finite. Not bit-equal to one process: the rollout length is drawn per rank and the batch
    split into its two halves per rank."""
    _new(2, tmp_path / "two", 6, "--set", "loss.name=ep", "--set", "loss.ep.L=3")
    rows = [json.loads(r) for r in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert checkpoint.load(tmp_path / "two")[1]["step"] == 6


def test_resume_under_two_ranks(single, tmp_path):
    _new(2, tmp_path / "r", 6)
    _run(2, "train", "--resume", str(tmp_path / "r"), "--set", "train.steps=12", "--no-progress")
    assert _max_diff(single, tmp_path / "r") < 1e-6


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _rank_pid(launcher: int, rank: int) -> int:
    for child in _children(launcher):
        env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return child
    raise AssertionError(f"no worker with RANK={rank} under {launcher}")


@pytest.mark.parametrize("target", ["rank 1 alone", "the launcher"])
def test_sigterm_stops_every_rank_at_one_step_and_resumes(tmp_path, target):
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _argv(2, "train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SET,
              "--set", "train.steps=5000", "--set", "train.ckpt_every=20"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300
    while not checkpoint.list_checkpoints(run) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(_rank_pid(proc.pid, 1) if target == "rank 1 alone" else proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # both ranks stop (the launcher reports exit 130) and rank 0 alone says where
    assert err.count("interrupted at step") == 1, err[-3000:]
    stopped = checkpoint.load(run)[1]["step"]
    assert f"interrupted at step {stopped};" in err and 20 <= stopped < 5000
    _run(2, "train", "--resume", str(run), "--set", f"train.steps={stopped + 4}", "--no-progress")
    _new(1, tmp_path / "whole", stopped + 4, "--set", "train.ckpt_every=20")
    assert _max_diff(run, tmp_path / "whole") < 1e-6


NAN_ON_RANK_1 = """
import os, sys
import errprop.train as t
from errprop.cli import main

real = t.build_loss

def build(cfg, process):
    loss, calls = real(cfg, process), []
    def fn(denoiser, x0, noise):
        calls.append(1)
        out = loss(denoiser, x0, noise)
        if os.environ["RANK"] == "1" and len(calls) in (4, 7):
            out = {**out, "loss": out["loss"] * float("nan")}
        return out
    return fn

t.build_loss = build
sys.exit(main(sys.argv[1:]))
"""


def test_nan_on_one_rank_stops_every_rank_or_is_skipped_everywhere(tmp_path):
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    argv = _argv(2, "train", "--config", str(ROOT / "configs/gmm.yaml"), *SET, "--set", "train.steps=12",
                 "--set", "train.ckpt_every=2")
    argv[argv.index("-m", 3):argv.index("errprop.cli") + 1] = [str(script)]
    r = subprocess.run([*argv, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode != 0, r.stderr[-3000:]
    assert r.stderr.count("loss is nan at step 4; training stopped. Last good checkpoint") == 2, r.stderr
    assert checkpoint.load(tmp_path / "a")[1]["step"] == 2
    r = subprocess.run([*argv, "--out", str(tmp_path / "b"), "--set", "train.skip_nonfinite=2"],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    tensors, meta = checkpoint.load(tmp_path / "b")
    assert meta["step"] == 12 and meta["skipped_nonfinite"] == 2
    assert all(torch.isfinite(v).all() for v in tensors.values())


def test_accelerate_launch_runs_unchanged(single, tmp_path):
    """``accelerate launch --multi_gpu`` starts torchrun's workers: same env, same weights."""
    pytest.importorskip("accelerate")
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "errprop.cli", "train",
            "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(tmp_path / "acc"), *SET,
            "--set", "train.steps=12"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0 and r.stdout.count("trained 12 steps") == 2, r.stdout + r.stderr[-3000:]
    assert _max_diff(single, tmp_path / "acc") < 1e-6


def test_torchrun_without_out_makes_one_folder_named_by_rank_0(tmp_path):
    """Each rank's clock could name another folder: rank 0 picks, every rank uses it, rank 0 prints."""
    argv = _argv(2, "train", "--config", str(ROOT / "configs/gmm.yaml"), *SET, "--set", "train.steps=3")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and checkpoint.load(made[0])[1]["step"] == 3
    assert r.stdout.count("trained 3 steps") == 1
