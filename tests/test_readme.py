"""The README's test command is the one CI runs."""

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_the_readme_test_command():
    readme = ROOT.joinpath("README.md").read_text()
    ci = ROOT.joinpath(".ci/run").read_text()
    cmd = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert cmd in readme and cmd in ci
    assert "bash scripts/setup.sh && .venv/bin/errprop demo" in readme
