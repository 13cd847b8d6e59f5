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
