"""The ``errprop`` command end to end on the ring of 8."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from errprop.cli import main
from errprop.data.gmm import GaussianMixture

ROOT = Path(__file__).parents[1]
SMALL = ["--set", "train.steps=30", "--set", "model.width=32", "--set", "model.depth=1", "--no-progress"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SMALL]) == 0
    return run


def test_sample_writes_npz_and_png_and_prints_path(small_run, capsys):
    argv = ["sample", str(small_run), "--sampler", "ddpm", "--steps", "5", "--n", "40", "--seed", "1"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str(small_run / "samples" / "ddpm-5-1.npz")
    assert np.load(last)["x"].shape == (40, 2)
    assert (small_run / "samples" / "ddpm-5-1.png").stat().st_size > 1000


def test_same_seed_same_samples_whatever_batch_size(small_run, capsys):
    arrays = []
    for bs in ("40", "7"):
        assert main(["sample", str(small_run), "--sampler", "ddim", "--eta", "1", "--steps", "4", "--n", "40",
                     "--seed", "2", "--batch-size", bs]) == 0
        arrays.append(np.load(capsys.readouterr().out.strip().splitlines()[-1])["x"])
    # Noise is identical per sample (bitwise: tests/test_samplers.py); the network's BLAS kernels
    # may round differently for another batch shape, so agreement is to float32 rounding, amplified
    # by the chain.
    np.testing.assert_allclose(arrays[0], arrays[1], rtol=1e-4, atol=1e-4)


def test_resume_continues(small_run, capsys):
    assert main(["train", "--resume", str(small_run), "--set", "train.steps=35", "--no-progress"]) == 0
    assert "trained 35 steps" in capsys.readouterr().out


def test_dry_run_prints_resolved_config(capsys):
    argv = ["train", "--config", str(ROOT / "configs/gmm.yaml"), "--set", "train.steps=7", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out and "parameterization: eps" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "train.steps=-1", "--dry-run"], "train.steps must be ≥ 1"),
    (["train", "--config", "missing.yaml"], "config file not found"),
    (["sample", "no/such/run"], "no run folder or checkpoint"),
    (["train", "--resume", "no/such/run"], "not a run folder"),
])
def test_user_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  name: magic\n")
    r = subprocess.run([sys.executable, "-m", "errprop.cli", "train", "--config", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "loss.name must be one of" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "errprop.cli", "sample", str(tmp_path), "--sampler", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_gmm_config_covers_all_eight_modes(tmp_path, capsys):
    """The shipped config, at its default steps, puts 1/8 ± 30 % of 50-step samples on each mode."""
    run = tmp_path / "gmm"
    argv = ["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    assert main(["sample", str(run), "--steps", "50", "--n", "4000", "--seed", "0"]) == 0
    x = np.load(capsys.readouterr().out.strip().splitlines()[-1])["x"]
    import torch

    counts, off = GaussianMixture.ring8().mode_counts(torch.from_numpy(x))
    share = counts.numpy() / len(x)
    assert np.all(np.abs(share - 1 / 8) <= 0.3 / 8), (share, off)


@pytest.mark.parametrize("cfg,component", [("gmm_sa2.yaml", "loss_sa"), ("gmm_ep.yaml", "loss_ep")])
def test_each_objective_trains_end_to_end(tmp_path, cfg, component, capsys):
    import json

    run = tmp_path / cfg
    assert main(["train", "--config", str(ROOT / "configs" / cfg), "--out", str(run), *SMALL,
                 "--set", "train.log_every=10"]) == 0
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all({"loss", "loss_simple", component} <= r.keys() for r in rows)
    assert main(["sample", str(run), "--steps", "5", "--n", "20"]) == 0


def test_python_dash_m_errprop_is_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "errprop", "demo", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--quick" in out.stdout
