"""Generated findings: one verdict rule, blocks rebuilt from result files, --check catches an edit."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from errprop.errors import ErrpropError
from errprop.findings import blocks, regenerate, verdict
from errprop.results import write_result

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "results.py"


def test_verdict_rule():
    assert verdict(-2.0, -0.1, "lower") == "supported"
    assert verdict(0.1, 2.0, "lower") == "contradicted"
    assert verdict(-0.1, 2.0, "lower") == "not decidable"
    assert verdict(0.1, 2.0, "higher") == "supported"
    with pytest.raises(ErrpropError):
        verdict(0, 1, "better")


def _repo(tmp_path: Path) -> Path:
    write_result(tmp_path / "docs" / "results", "bx", "BX", "python bx.py", {"x": 1},
                 [["case", "ratio"], ["a", "0.91"]], "Goal ≥ 0.85.")
    (tmp_path / "README.md").write_text("# r\n\nBefore.\n<!-- generated: table bx -->\nstale 0.5\n"
                                        "<!-- end generated -->\nAfter.\n")
    return tmp_path


def test_blocks_are_rebuilt_from_the_result_file(tmp_path):
    root = _repo(tmp_path)
    text = (root / "README.md").read_text()
    assert blocks(text) == [("table", "bx")]
    new = regenerate(text, root / "docs" / "results")
    assert "| a | 0.91 |" in new and "stale" not in new and "Goal ≥ 0.85." in new
    assert new.startswith("# r\n\nBefore.\n") and new.endswith("<!-- end generated -->\nAfter.\n")
    assert regenerate(new, root / "docs" / "results") == new  # a fixed point


def test_check_fails_on_an_edited_number(tmp_path):
    root = _repo(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert run("--check").returncode == 1  # the stale block
    assert run().returncode == 0
    assert run("--check").returncode == 0
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("0.91", "0.95"))
    bad = run("--check")
    assert bad.returncode == 1 and "0.95" in bad.stdout and "README.md" in bad.stderr


def test_a_block_naming_a_missing_result_is_an_error(tmp_path):
    (tmp_path / "README.md").write_text("<!-- generated: table nope -->\n<!-- end generated -->\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "nope" in out.stderr


def test_the_repository_is_up_to_date(tmp_path):
    # What CI checks: every generated block in README.md and docs/ matches the committed JSON.
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
