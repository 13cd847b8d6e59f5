"""experiments/e1_mixtures.py --rerender: a committed study's report written again by the current
generator — the run's numbers and provenance, today's config diffs and Holm-adjusted p-values."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def e1(script):
    return script("experiments/e1_mixtures.py")


def test_rerender_keeps_numbers_and_provenance_and_flags_the_confound(e1, tmp_path):
    docs = tmp_path / "e1_ring8"
    docs.mkdir()
    for name in ("study.json", "provenance.json"):
        shutil.copy2(ROOT / "docs" / "results" / "e1_ring8" / name, docs / name)
    study = json.loads((docs / "study.json").read_text())
    committed = study["summary"]["paired"]["sa2"]["xent_median ddim-10"]
    # A summary from before the family correction, as the first E1 runs wrote it.
    for arm in study["summary"]["paired"].values():
        for t in arm.values():
            t.pop("p_holm", None)
    study["summary"].pop("family_size", None)
    (docs / "study.json").write_text(json.dumps(study))
    prov = json.loads((docs / "provenance.json").read_text())

    md = e1.rerender(docs, "ring of 8 Gaussians (2-D)").read_text()

    again = json.loads((docs / "study.json").read_text())["summary"]
    t = again["paired"]["sa2"]["xent_median ddim-10"]
    assert t["mean"] == committed["mean"] and t["lo"] == committed["lo"] and "p_holm" in t
    assert again["family_size"] == (len(study["arms"]) - 1) * len(again["metrics"])
    assert f"Commit {prov['commit']}" in md and prov["date"] in md and f"`{prov['command']}`" in md
    assert "rendered again from the committed study.json" in md
    # SA draws t antithetically, the baseline uniformly: the report must say so, never claim
    # "only the objective differs".
    assert "⚠ loss.t_sampling" in md and "only the objective differs" not in md
    assert "p_Holm" in md and not (docs / "report.html").exists()
