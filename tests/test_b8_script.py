"""benchmarks/b8_optimal_grids.py: a smoke run, and its cache grows by the objectives added since."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "b8_optimal_grids.py"


def _run(out: Path) -> str:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--data", "ring8", "--samplers", "ddim",
           "--candidates", "10", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_a_rerun_computes_only_what_its_cache_lacks(tmp_path):
    first = _run(tmp_path)
    assert "[b8] ring8 seed 0 ddim-5: trailing" in first and "opt-local" in first
    assert "[b8]" not in _run(tmp_path)  # all cached: nothing recomputed
    cache = tmp_path / "quick" / "ring8" / "seed0" / "b8_ddim5.json"
    stored = json.loads(cache.read_text())
    kept = dict(stored["result"]["scores"])
    for part in ("scores", "cost", "grids"):
        stored["result"][part].pop("opt-local")
    cache.write_text(json.dumps(stored))  # as if written before the local error existed
    again = _run(tmp_path)
    assert "[b8] ring8 seed 0 ddim-5: opt-local\n" in again and "seed 1" not in again
    assert json.loads(cache.read_text())["result"]["scores"] == kept  # same seeds, same noise


@pytest.mark.slow
def test_images_measure_a_run_trained_on_again(tmp_path):
    """--images caches each run's FDs under its checkpoint's step: after the run is trained on
    (E8's longer study does that to the runs B8 measured) the scores are measured again, never
    read back from the shorter run's."""
    from errprop import config
    from errprop.train import train_to_end

    def cfg(steps):
        return config.load(ROOT / "configs" / "digits.yaml", [
            "model.channels=8", "model.channel_mult=[1,2]", "model.num_res_blocks=1", "train.batch_size=16",
            f"train.steps={steps}", "train.ckpt_every=2", "train.log_every=1", "train.device=cpu"])

    runs = tmp_path / "runs"
    train_to_end(cfg(2), runs / "seed0", progress=False)
    cmd = [sys.executable, str(SCRIPT), "--images", str(runs), "--seeds", "1", "--n", "60", "--n-opt", "20",
           "--candidates", "6", "--samplers", "ddim", "--steps", "3", "--out", str(tmp_path / "out"),
           "--docs", str(tmp_path / "docs")]

    def run():
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((runs / "seed0" / "b8_fd_ddim3.json").read_text())

    first = run()
    assert first["key"]["checkpoint_step"] == 2
    assert run() == first  # cached
    train_to_end(cfg(4), runs / "seed0", progress=False, extend=True)
    again = run()
    assert again["key"]["checkpoint_step"] == 4 and again["result"]["scores"] != first["result"]["scores"]
