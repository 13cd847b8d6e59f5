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


def _summary_of(name: str, *overrides: str) -> dict:
    from errprop import config

    cfg = config.load(ROOT / "configs" / "gmm.yaml", list(overrides))
    return {"name": name, "config": cfg.to_dict(), "steps": cfg.train.steps,
            "train_steps": cfg.train.steps, "weighting": "eps", "eval": [{"metric": "modes"}]}


def test_what_does_not_change_what_is_learned_is_not_a_difference():
    """The train fields config_diff calls bookkeeping — threads and skip_nonfinite included, which
    compare's own list used to lack — are not flagged; the objective is what is compared."""
    from errprop.compare import _differences

    base = _summary_of("base")
    quiet = _summary_of("quiet", "train.threads=1", "train.skip_nonfinite=3", "train.seed=7",
                        "train.log_every=5", "train.device=cpu")
    assert _differences([base, quiet]) == []
    assert _differences([base, _summary_of("ip", "loss.input_perturbation=0.1")]) == []
    notes = _differences([base, _summary_of("lr", "train.lr=0.01")])
    assert len(notes) == 1 and "training settings (lr: base" in notes[0] and "lr 0.01" in notes[0]


def test_a_loss_setting_besides_the_objective_is_a_difference():
    """Two baselines that draw their noise levels differently train differently (compare ignored
    the whole loss section before it read config_diff's effective settings)."""
    from errprop.compare import _differences

    notes = _differences([_summary_of("a"), _summary_of("b", "loss.sigma_sampling=lognormal")])
    assert len(notes) == 1 and notes[0].startswith("The runs differ in loss settings besides the objective")
    assert "t_sampling: a " in notes[0] and "b lognormal" in notes[0]
