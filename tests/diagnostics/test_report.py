"""``errprop diagnose --oracle`` on an image run: the learned part and its split, and one report page
that a reader can open — rendered in a real headless browser like the demo's."""

import json

import pytest
from browser import render, require_browser

from errprop.cli import main
from errprop.diagnostics.report import headline, summary

TINY_UNET = ["--set", "data.name=digits", "--set", "model.net=unet", "--set", "model.channels=8",
             "--set", "model.channel_mult=[1]", "--set", "train.steps=2", "--set",
             "train.batch_size=8", "--set", "train.ckpt_every=2", "--no-progress"]


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    run = tmp_path_factory.mktemp("img") / "run"
    assert main(["train", "--out", str(run), *TINY_UNET]) == 0
    assert main(["diagnose", str(run), "--oracle", "--sampler", "ddim", "--steps", "4", "--n", "32",
                 "--device", "cpu"]) == 0
    return run / "diagnostics"


def test_oracle_on_images_reports_the_learned_part_and_the_split(diagnosed, capsys):
    out = diagnosed
    assert {p.name for p in out.iterdir()} >= {
        "modular.json", "cumulative.json", "gap.json", "learned.json", "learned.png",
        "learned_split.png", "memorisation.png", "report.html", "report.md", "command.txt"}
    learned = json.loads((out / "learned.json").read_text())
    assert learned["reference"] == "ideal denoiser of the training set"
    res = learned["model"]
    assert len(res["learned"]) == 4 and all(v > 0 for v in res["learned"])
    assert set(res["final"]) >= {"total", "E_D", "E_S", "floor", "discretization_share", "path"}
    assert res["memorisation"]["heldout_nn_train"] > 0
    results = {w: json.loads((out / f"{w}.json").read_text())
               for w in ("modular", "cumulative", "gap", "learned")}
    text = summary(results)
    assert "of the final error (MMD²) is discretization at 4 steps" in text
    assert any(r[0].startswith("learned E_S") for r in headline(results))


def test_report_renders_in_a_browser(diagnosed):
    require_browser()
    page = render(diagnosed / "report.html")
    assert page.verdict and "is discretization at 4 steps" in page.verdict
    assert "σ" in page.text and "Headline numbers" in page.text and "good" in page.text
    assert page.table_rows >= 6
    assert len(page.images) >= 6 and all(img.decoded for img in page.images)
    assert all(img.src_prefix.startswith("data:image/png;base64,") for img in page.images)
    assert page.external_requests == [] and page.js_errors == []


def test_summary_says_when_the_error_enters_where_the_reference_memorises():
    term = {"value": 0.5, "lo": 0.4, "hi": 0.6}
    model = {"final": {"total": term, "E_D": term, "E_S": term, "floor": term, "path": term,
                       "discretization_share": {"value": 0.25, "lo": 0.1, "hi": 0.4}},
             "enters": {"sigma_lo": 0.3, "sigma_hi": 2.0, "share": 0.6, "intervals": []},
             "memorisation": {"reference_valid_from": 1.5}}
    results = {"learned": {"sampler": "ddim", "steps": 10, "grid": "uniform", "n": 8, "model": model}}
    text = summary(results)
    assert "The error enters at σ ∈ [0.3, 2]" in text and "25 % (90 % bootstrap interval 10 %–40 %)" in text
    assert "Part of the σ range where the error enters (below 1.5) lies where D* memorises" in text
    model["memorisation"]["reference_valid_from"] = 0.1
    assert "lies where D* memorises" not in summary(results)
