"""experiments/e5_dimension.py end to end at its --quick size (numbers not meaningful): a study of
another network width is a result of its own, and bad dimensions or widths are usage errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "e5_dimension.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", **os.environ}, timeout=900)


@pytest.mark.slow
def test_quick_run_of_another_width_writes_its_own_result(tmp_path):
    r = _run("--dims", "2", "--seeds", "2", "--quick", "--width", "32", "--jobs", "1", "--only", "sa2",
             "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    docs = tmp_path / "quick"
    assert not (docs / "e5_dimension.json").exists()
    res = json.loads((docs / "e5_dimension_w32.json").read_text())
    assert res["width"] == 32 and res["dims"] == [2] and res["arms"] == ["baseline", "sa2"]
    assert "MLP of width 32" in (docs / "e5_dimension_w32.md").read_text()
    assert (tmp_path / "random2_w32").is_dir() and not (tmp_path / "random2").exists()
    study = json.loads((docs / "e5_dimension_w32" / "random2" / "study.json").read_text())
    base = study["settings"]["base"]
    assert "model.width=32" in base and "model.width=128" not in base


@pytest.mark.parametrize("args, words", [(["--dims", "2,0"], "--dims: expected"),
                                         (["--width", "0"], "--width: expected a positive integer")])
def test_bad_dimensions_and_widths_are_usage_errors(args, words, tmp_path):
    r = _run(*args, "--out", str(tmp_path))
    assert r.returncode == 2 and words in r.stderr
