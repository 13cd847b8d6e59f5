"""experiments/e4_budget.py end to end at its --quick size (numbers not meaningful): a study of
another network width is a result of its own, and bad data sets, widths or budgets are usage errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "e4_budget.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", **os.environ}, timeout=900)


@pytest.mark.slow
def test_quick_run_of_another_width_writes_its_own_result(tmp_path):
    r = _run("--data", "ring8", "--seeds", "2", "--quick", "--width", "32", "--jobs", "1", "--only", "sa2",
             "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    docs = tmp_path / "ring8_w32-quick"  # (a quick run writes its results beside its runs)
    assert not (tmp_path / "ring8-quick").exists()
    res = json.loads((docs / "e4_budget_ring8_w32.json").read_text())
    assert res["arms"] == ["baseline", "sa2"] and "MLP width 32" in res["title"]
    assert (docs / "e6_solvers_ring8_w32.json").is_file()
    study = json.loads((docs / "e4_budget_ring8_w32" / "study.json").read_text())
    base = study["settings"]["base"]
    assert "model.width=32" in base and "model.width=128" not in base


@pytest.mark.parametrize("args, words", [(["--data", "ring9"], "--data:"),
                                         (["--width", "0"], "--width: expected a positive integer"),
                                         (["--steps", "1000", "--first", "300"], "multiple of --first")])
def test_bad_data_widths_and_budgets_are_usage_errors(args, words, tmp_path):
    r = _run(*args, "--out", str(tmp_path))
    assert r.returncode == 2 and words in r.stderr, r.stderr[-2000:]
