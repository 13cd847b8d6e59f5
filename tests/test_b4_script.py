"""benchmarks/b4_quality.py --rerender: the report is a function of the stored results, and a
column scored before its objective finished training is flagged by the generator, not by hand."""

import json
import shutil
from pathlib import Path

import pytest

from errprop.errors import ErrpropError

ROOT = Path(__file__).parents[1]


@pytest.fixture
def b4(script):
    return script("benchmarks/b4_quality.py")


def test_rerender_flags_the_half_trained_column_and_keeps_the_run_provenance(b4, tmp_path):
    shutil.copy2(ROOT / "docs" / "results" / "b4_quality.json", tmp_path)
    before = json.loads((tmp_path / "b4_quality.json").read_text())
    payload = b4.rerender(tmp_path)
    md = (tmp_path / "b4_quality.md").read_text()
    steps = {o: r["train_step"] for o, r in payload["results"].items()}
    short = [o for o, s in steps.items() if s != payload["settings"]["train_steps"]]
    assert short == ["ep"]  # the committed run: EP's training was interrupted
    assert (f"⚠ **The {payload['results']['ep']['objective']} column is not a result of its objective**: "
            f"it was scored at training step {steps['ep']} of {payload['settings']['train_steps']}") in md
    assert md.count("⚠") == 1
    meta = before.get("meta", before)
    assert {k: payload[k] for k in ("command", "commit", "machine", "date")} == \
        {k: meta[k] for k in ("command", "commit", "machine", "date")}
    b4.rerender(tmp_path)  # from the file it wrote: the same report
    assert (tmp_path / "b4_quality.md").read_text() == md


def test_a_run_finished_everywhere_has_no_warning(b4, tmp_path):
    payload = json.loads((ROOT / "docs" / "results" / "b4_quality.json").read_text())
    results = payload["results"]
    results["ep"]["train_step"] = results["baseline"]["train_step"]
    settings = {"train_steps": results["baseline"]["train_step"], "batch_size": 128, "n": 10}
    b4.write_report(tmp_path, settings, results, "python benchmarks/b4_quality.py")
    assert "⚠" not in (tmp_path / "b4_quality.md").read_text()


def test_rerender_without_a_result_file_names_it(b4, tmp_path):
    with pytest.raises(ErrpropError, match="b4_quality.json does not exist"):
        b4.rerender(tmp_path)


def test_rerender_of_a_file_without_provenance_is_a_usage_error_naming_it(tmp_path):
    import subprocess
    import sys

    (tmp_path / "b4_quality.json").write_text('{"results": {}}')
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "b4_quality.py"), "--rerender", "--out",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "records no command, commit, machine, date" in r.stderr
    assert "Traceback" not in r.stderr
