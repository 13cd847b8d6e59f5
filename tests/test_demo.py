"""``errprop demo``: the report opens with a verdict backed by seeds, renders in a real browser as
one self-contained file, and two runs give the same numbers."""

import json

import pytest
from browser import render, require_browser

from errprop.demo import demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = demo(out / "a", quick=True, progress=False)
    return out, report


@pytest.mark.slow
def test_report_opens_with_a_verdict_and_renders_in_a_browser(quick_demo):
    out, report = quick_demo
    md = report.read_text()
    assert md.splitlines()[2].startswith("> **Verdict.**")
    study = json.loads((out / "a" / "study.json").read_text())
    assert study["settings"]["seeds"] == [0, 1]
    for arm in ("sa2", "ep"):  # the verdict names every compared objective with its counts
        label = next(a["label"] for a in study["arms"] if a["name"] == arm)
        assert label in md.split("\n\n")[1]
    require_browser()
    page = render(out / "a" / "report.html")
    assert page.verdict and "comparisons" in page.verdict and "seeds" in page.verdict
    assert page.table_rows >= 10
    assert len(page.images) >= 6 and all(img.decoded for img in page.images)
    assert all(img.src_prefix.startswith("data:image/png") for img in page.images)
    assert page.external_requests == [] and page.js_errors == []
    for label in ("excess cross-entropy, median (nats)", "floor", "exact denoiser", "95 % CI"):
        assert label in page.text


@pytest.mark.slow
def test_two_runs_give_identical_numbers(quick_demo):
    out, _ = quick_demo
    demo(out / "b", quick=True, progress=False)
    a = json.loads((out / "a" / "study.json").read_text())
    b = json.loads((out / "b" / "study.json").read_text())
    assert a == b


@pytest.mark.slow
def test_an_interrupted_demo_continues_and_reuses_finished_work(quick_demo, capsys):
    out, _ = quick_demo
    capsys.readouterr()
    demo(out / "a", quick=True, progress=False)  # everything cached: nothing is trained again
    assert "training" not in capsys.readouterr().out
