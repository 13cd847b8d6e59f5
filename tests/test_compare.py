"""``compare`` and the report writer on runs made by the CLI: like with like, or said plainly."""

import json
from pathlib import Path

import pytest

from errprop.cli import main

ROOT = Path(__file__).parents[1]
SMALL = ["--set", "train.steps=20", "--set", "model.width=32", "--set", "model.depth=1", "--no-progress"]


def _train(run: Path, *extra: str) -> None:
    assert main(["train", "--config", str(ROOT / "configs" / "gmm.yaml"), "--out", str(run), *SMALL,
                 *extra]) == 0


def _evaluate(run: Path, *extra: str) -> None:
    assert main(["evaluate", str(run), "--metric", "modes", "--steps", "5,10", "--n", "200",
                 "--device", "cpu", *extra]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    _train(root / "base")
    _train(root / "other", "--set", "loss.input_perturbation=0.1")
    _train(root / "longer", "--set", "train.steps=30")
    _train(root / "bare")
    for r in ("base", "other", "longer"):
        _evaluate(root / r)
    return root


def test_compare_two_like_runs(runs, capsys):
    out = runs / "cmp2"
    assert main(["compare", str(runs / "base"), str(runs / "other"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "baseline (eps, IP γ=0.1)" in md and "| ddim | 10 |" in md
    assert "Read this first" not in md  # the same budget, data, n and seeds: nothing to warn of
    assert (out / "modes.png").is_file() and "<table>" in (out / "report.html").read_text()
    shown = json.loads((out / "compare.json").read_text())["shown"]["modes"]
    assert shown == {"base": "modes-n200-seed0-uniform-trailing-step20.json",
                     "other": "modes-n200-seed0-uniform-trailing-step20.json"}
    assert main(["compare", str(runs / "nothing")]) == 2


def test_compare_says_what_is_not_like_for_like(runs, capsys):
    out = runs / "cmp4"
    assert main(["compare", *(str(runs / r) for r in ("base", "other", "longer", "bare")),
                 "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    err = capsys.readouterr().err
    for text in ("No evaluation in: bare", "different numbers of steps (base 20, other 20, longer 30",
                 "training settings"):
        assert text in md and text in err
    # the losses shown are the comparable base part and, labelled, each objective's own
    assert "final base loss (loss_simple)" in md and "| train s" not in md


def test_compare_shows_the_largest_n_and_says_when_runs_differ(runs, capsys):
    _evaluate(runs / "other", "--n", "20")  # a smaller evaluation must not replace the n = 200 one
    out = runs / "cmpn"
    assert main(["compare", str(runs / "base"), str(runs / "other"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "n = 200" in md and "different sample counts" not in md
    _evaluate(runs / "base", "--seed", "3", "--n", "400")
    assert main(["compare", str(runs / "base"), str(runs / "other"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "different sample counts n (base 400, other 200)" in md


def test_compare_tolerates_a_cut_metrics_line_and_names_a_broken_result(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "base"
    shutil.copytree(runs / "base", run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "loss": 0.')  # a crash mid-line
    assert main(["compare", str(run), "--out", str(tmp_path / "c")]) == 0
    (run / "eval" / "modes-n200-seed0-uniform-trailing-step20.json").write_text("")  # an old 0-byte file
    assert main(["compare", str(run), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "modes-n200-seed0-uniform-trailing-step20.json is not valid JSON" in err
    assert "Traceback" not in err
