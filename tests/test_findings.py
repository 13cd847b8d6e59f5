"""Generated findings: one verdict rule, blocks rebuilt from result files, --check catches an edit."""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from errprop.errors import ErrpropError
from errprop.findings import BLOCK, blocks, regenerate, verdict
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


def test_interval_says_when_one_pair_has_none():
    from errprop.findings import interval
    from errprop.stats import paired

    assert interval({"mean": -1.0, "lo": -2.0, "hi": -0.5, "p_holm": 0.01}) == "-1 [-2, -0.5]; p_Holm 0.01"
    one = paired([1.0], [2.0])  # a one-seed run (E5's pilot): lo and hi are nan, None once stored
    assert interval(one) == "-1 (one pair: no interval)"
    assert interval({**one, "lo": None, "hi": None}) == "-1 (one pair: no interval)"
    assert verdict(one["lo"], one["hi"], "lower") == verdict(None, None, "higher") == "not decidable"


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


def test_links_to_result_files_follow_the_quoting_document(tmp_path):
    results = tmp_path / "docs" / "results"
    write_result(results, "bx", "BX", "python bx.py", {"x": 1}, [["case", "ratio"], ["a", "0.91"]],
                 "![BX](bx.png) and [elsewhere](missing.png) and [web](https://x.org/a.png)")
    (results / "bx.png").write_bytes(b"png")
    text = "<!-- generated: table bx -->\n<!-- end generated -->\n"
    assert "![BX](bx.png)" in regenerate(text, results)  # read from results/ itself
    new = regenerate(text, results, tmp_path / "docs")
    assert "![BX](results/bx.png)" in new
    assert "[elsewhere](missing.png)" in new and "(https://x.org/a.png)" in new  # left as written
    assert "![BX](docs/results/bx.png)" in regenerate(text, results, tmp_path)


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


def test_claims_are_judged_by_the_rule_and_confounds_are_found(tmp_path):
    from errprop.findings import render

    def pair(lo, hi):
        return {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 5}

    study = {"settings": {"base": ["data.name=ring8"]},
             "arms": [{"name": "baseline", "overrides": []},
                      {"name": "sa", "overrides": ["loss.name=sa"]},
                      {"name": "sau", "overrides": ["loss.name=sa", "loss.sa.t_sampling=uniform"]}],
             "summary": {"arms": {"baseline": {"m": {"mean": 3.0}}},
                         "paired": {"sa": {"m": pair(-2, -1)}, "sau": {"m": pair(-1, 0.5)}}}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text(json.dumps(study))
    claims = {"claims": [{"id": i, "claim": "c", "test": "t", "source": "s/study.json", "arm": a,
                          "metric": "m", "claimed": "lower", "endpoint": "e", "declared": "before"}
                         for i, a in (("1", "sa"), ("2", "sau"))]}
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    rows = render("claims", "claims", tmp_path).splitlines()[2:4]
    assert "**supported**" in rows[0] and "⚠" in rows[0] and "t_sampling uniform → antithetic" in rows[0]
    assert "**not decidable**" in rows[1] and "⚠" not in rows[1]


def test_an_older_result_without_a_stored_table_is_quoted_from_its_markdown(tmp_path):
    from errprop.findings import render

    (tmp_path / "old.json").write_text(json.dumps({"commit": "abc", "machine": "m", "date": "d"}))
    (tmp_path / "old.md").write_text("# Old\n\n- command: `x`\n- commit: y\n\n| a | b |\n|---|---|\n"
                                     "| 1 | 2 |\n\n- a bullet of its text\n")
    body = render("table", "old", tmp_path)
    assert body.startswith("| a | b |") and "| 1 | 2 |" in body and "# Old" not in body
    assert "- a bullet of its text" in body and "command" not in body  # only the header is dropped
    (tmp_path / "old.md").unlink()
    with pytest.raises(ErrpropError, match="no table"):
        render("table", "old", tmp_path)


# A typed finding: a decimal, or a count with a unit of measurement ("1.41×", "222 s", "5 seeds").
_TYPED = re.compile(r"\d+\.\d+|\b\d[\d,]*\s*(?:%|×|s\b|nats\b|FD\b|seeds?\b|steps?\b|images\b|min\b)")


def _prose(text: str) -> str:
    """``text`` without its generated blocks and code spans."""
    text = BLOCK.sub("", text)
    return re.sub(r"`[^`]*`", "", text)


@pytest.mark.parametrize("doc", ["README.md#Results", "docs/findings.md"])
def test_no_finding_is_typed_outside_a_generated_block(doc):
    path, _, section = doc.partition("#")
    text = (ROOT / path).read_text()
    if section:
        text = text[text.index(f"## {section}"):]
        nxt = text.find("\n## ", 3)
        text = text if nxt < 0 else text[:nxt]
    typed = _TYPED.findall(_prose(text))
    assert not typed, f"{doc}: numbers typed by hand outside generated blocks: {typed}"


def test_the_typed_finding_check_can_fail():
    assert _TYPED.findall(_prose("SA-2 lost 1.41× and took 222 s over 5 seeds\n`ok 3.2`"))


def test_a_result_with_an_intro_quotes_it_before_its_table(tmp_path):
    from errprop.findings import render

    out = tmp_path / "results"
    payload = write_result(out, "by", "BY", "python by.py", {"x": 2}, [["case", "v"], ["a", "1"]],
                           "After the table.", intro="Before the table.")
    md = (out / "by.md").read_text()
    assert md.index("- machine:") < md.index("Before the table.") < md.index("| a | 1 |") < md.index("After")
    assert payload["intro"] == "Before the table." and "gpu" in payload and "python" in payload
    body = render("table", "by", out)
    assert body.index("Before the table.") < body.index("| a | 1 |") < body.index("After the table.")
    write_result(out, "bz", "BZ", "c", {}, [["h"]])
    assert "intro" not in json.loads((out / "bz.json").read_text())


def test_result_data_may_not_shadow_the_payloads_own_keys(tmp_path):
    """B7 once stored its statistics under "table", which the payload's own table overwrote."""
    with pytest.raises(ValueError, match="table"):
        write_result(tmp_path, "b", "B", "c", {"table": {"x": 1}}, [["h"]])
    with pytest.raises(ValueError, match="machine"):
        write_result(tmp_path, "b", "B", "c", {"machine": {"cpu": "x"}}, [["h"]])
    assert not (tmp_path / "b.json").exists()


def test_a_rerendered_result_keeps_the_original_runs_provenance(tmp_path):
    from errprop.findings import render
    from errprop.results import write_study_summary

    original = {"commit": "abc1234", "machine": "Old CPU, 2 cores", "date": "2000-01-01 00:00 UTC",
                "title": "not provenance"}
    payload = write_result(tmp_path, "old", "OLD", "python old.py", {"x": 1}, [["h"], ["1"]],
                           provenance=original)
    assert {k: payload[k] for k in ("commit", "machine", "date")} == {k: original[k] for k in
                                                                     ("commit", "machine", "date")}
    assert payload["title"] == "OLD" and "gpu" not in payload  # provenance keys only, those given
    assert "- commit: abc1234, date: 2000-01-01 00:00 UTC" in (tmp_path / "old.md").read_text()
    assert "commit abc1234, Old CPU, 2 cores, 2000-01-01 00:00 UTC." in render("table", "old", tmp_path)
    fresh = write_result(tmp_path, "new", "NEW", "c", {}, [["h"]])
    assert fresh["commit"] != "abc1234" and "python" in fresh  # by default: this process's
    with pytest.raises(ValueError, match="date"):
        write_result(tmp_path, "bad", "B", "c", {}, [["h"]], provenance={"commit": "a", "machine": "m"})
    assert not (tmp_path / "bad.json").exists()

    class Arm:
        def __init__(self, name):
            self.name, self.overrides = name, []

    write_study_summary(tmp_path / "s", {"summary": {}}, [Arm("baseline")], argparse.Namespace(base=[]),
                        "python old.py", provenance=original | {"cpu": "Old CPU"})
    prov = json.loads((tmp_path / "s" / "provenance.json").read_text())
    assert prov == {"command": "python old.py", "commit": "abc1234", "machine": "Old CPU, 2 cores",
                    "date": "2000-01-01 00:00 UTC", "cpu": "Old CPU"}
    with pytest.raises(ValueError, match="commit"):
        write_study_summary(tmp_path / "t", {"summary": {}}, [], argparse.Namespace(), "c", provenance={})
    assert not (tmp_path / "t").exists()


def test_a_claim_can_name_the_arm_it_is_compared_against(tmp_path):
    from errprop.findings import claim_row

    def pair(lo, hi, n=2):
        return {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": n}

    study = {"settings": {"base": ["data.name=ring8", "train.steps=100"]},
             "arms": [{"name": "baseline", "overrides": []},
                      {"name": "sa", "overrides": ["loss.name=sa", "loss.sa.t_sampling=uniform"]},
                      {"name": "cm", "label": "compute-matched baseline", "overrides": ["train.steps=200"]}],
             "summary": {"arms": {"baseline": {"m": {"mean": 3.0}}, "cm": {"m": {"mean": 2.0}}},
                         "paired": {"sa": {"m": pair(-2, -1, 5)}},
                         # p_Holm is over the family of tests against the same arm: here 2
                         "paired_against": {"cm": {"sa": {"m": pair(0.5, 1.5) | {"p_holm": 0.04},
                                                          "m2": pair(-1, 1) | {"p_holm": 0.9}}}}}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text(json.dumps(study))
    claim = {"id": "1", "claim": "c", "test": "t", "source": "s/study.json", "arm": "sa", "metric": "m",
             "claimed": "lower", "endpoint": "e", "declared": "post hoc"}
    base = claim_row(claim, tmp_path)  # against defaults to the baseline
    assert base[3] == "-1.5 [-2, -1] on baseline 3" and base[4] == "**supported**" and "⚠" not in base[1]
    cm = claim_row(claim | {"against": "cm"}, tmp_path)
    assert cm[3] == "+1 [+0.5, +1.5] on compute-matched baseline 2; p_Holm 0.04 (family of 2)"
    assert cm[4] == "**contradicted**" and "(2 paired seeds;" in cm[5]
    assert cm[1] == "t — ⚠ not only the objective differs: train.steps 200 → 100"
    with pytest.raises(ErrpropError, match="against 'ep'"):
        claim_row(claim | {"against": "ep"}, tmp_path)
    # the test's budgets come from the study, not from typing
    budgets = "sa after {steps} vs cm after {against_steps}"
    row = claim_row(claim | {"against": "cm", "test": budgets}, tmp_path)
    assert row[1].startswith("sa after 100 vs cm after 200 — ⚠")
    with pytest.raises(ErrpropError, match="unknown field 'budget'"):
        claim_row(claim | {"test": "after {budget}"}, tmp_path)
