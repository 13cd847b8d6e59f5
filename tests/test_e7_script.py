"""experiments/e7_learned_split.py end to end on a tiny digits run (--quick: numbers not meaningful)."""

import json
from pathlib import Path

from errprop.cli import main

ROOT = Path(__file__).parents[1]


def test_e7_quick_writes_the_split_table(tmp_path, script):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--set", "data.name=digits", "--set", "model.net=unet",
                 "--set", "model.channels=8", "--set", "model.channel_mult=[1]", "--set",
                 "train.steps=2", "--set", "train.batch_size=8", "--no-progress"]) == 0
    e7 = script("experiments/e7_learned_split.py")
    assert e7.main([str(run), "--quick", "--label", "digits", "--docs", str(tmp_path / "docs")]) == 0
    md = (tmp_path / "docs" / "e7_learned_split_digits_quick.md").read_text()
    assert "| 4 |" in md and "| 8 |" in md and "--quick" in md and "D* " in md
    res = json.loads((tmp_path / "docs" / "e7_learned_split_digits_quick.json").read_text())
    assert set(res["steps"]) == {"4", "8"} and res["memorisation"]["sigma"]
    assert len(res["steps"]["8"]["learned"]) == 8
