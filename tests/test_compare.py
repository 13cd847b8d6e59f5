"""``compare`` and the report writer on runs made by the CLI."""

from pathlib import Path

from errprop.cli import main

ROOT = Path(__file__).parents[1]
SMALL = ["--set", "train.steps=20", "--set", "model.width=32", "--set", "model.depth=1", "--no-progress"]


def test_compare_two_runs(tmp_path, capsys):
    for name, cfg in (("base", "gmm.yaml"), ("other", "gmm.yaml")):
        run = tmp_path / name
        extra = ["--set", "loss.input_perturbation=0.1"] if name == "other" else []
        argv = ["train", "--config", str(ROOT / "configs" / cfg), "--out", str(run), *SMALL, *extra]
        assert main(argv) == 0
        assert main(["evaluate", str(run), "--metric", "modes", "--steps", "5,10", "--n", "200",
                     "--device", "cpu"]) == 0
    runs = [str(tmp_path / "base"), str(tmp_path / "other")]
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "baseline (eps, IP γ=0.1)" in md and "| ddim | 10 |" in md
    assert (tmp_path / "cmp" / "modes.png").is_file() and (tmp_path / "cmp" / "compare.json").is_file()
    assert "<table>" in (tmp_path / "cmp" / "report.html").read_text()
    assert main(["compare", str(tmp_path / "nothing")]) == 2
