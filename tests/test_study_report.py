"""A study's report from a synthetic study: its tables hold the summary's numbers (mean ± sd, the
paired t-interval), its verdict follows from them, its confounds are named, its figures are real
PNGs and the HTML page carries them inside."""

import re

import pytest

from errprop.provenance import provenance
from errprop.study import Arm, Settings, summarize
from errprop.study_report import write_report

T_975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom
SEEDS = [0, 1, 2]
ARMS = [Arm("baseline", "baseline", []), Arm("sa", "SA-2", ["loss.name=sa", "loss.sa.K=2"])]
SETTINGS = Settings(base=["data.name=ring8", "model.width=16"], seeds=SEEDS, sampling_steps=[3],
                    samplers=["ddim"], n=64, diag_steps=3, n_diag=16)
BASE_XENT = [1.0, 1.1, 1.2]  # baseline's mean excess cross-entropy per seed: 1.1 ± 0.1
SHIFT = [0.4, 0.5, 0.6]  # SA-2 − baseline per seed: +0.5, sd 0.1


def _measurement(xent: float, gap: float) -> dict:
    return {"quality": {"ddim-3": {"xent": xent, "xent_median": xent / 2, "mmd2": xent / 10}},
            "modular_kl": [0.3, 0.2, None], "cumulative_xent": [0.1, 0.2, 0.4, 0.8],
            "cumulative_floor": [0.01, 0.01, 0.02, 0.02], "gap": [0.0, 0.1, gap]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    results = {"baseline": {s: _measurement(BASE_XENT[s], 0.5) for s in SEEDS},
               "sa": {s: _measurement(BASE_XENT[s] + SHIFT[s], 0.5) for s in SEEDS},
               "exact": {s: _measurement(0.25, 0.2) for s in SEEDS},
               "floor": {s: {"xent": 0.0, "xent_median": 0.0, "mmd2": 0.001} for s in SEEDS}}
    summary = summarize(results, ARMS, SETTINGS)
    summary["train_seconds"] = {"baseline": {"mean": 12.0, "std": 0.5}, "sa": {"mean": 23.0, "std": 1.0}}
    md = write_report(out, {"results": results, "summary": summary}, ARMS, SETTINGS, "A synthetic study",
                      "errprop study --synthetic", "ring of 8")
    return out, md.read_text(), summary


def _row(md: str, first_cell: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_quality_table_holds_the_summary_numbers(report):
    _, md, _ = report
    section = md.split("## Sample quality: excess cross-entropy, mean (nats)")[1].split("## ")[0]
    row = _row(section, "ddim-3")
    half = T_975_2 * 0.1 / 3**0.5  # the paired t half-width of SHIFT
    assert row[:5] == ["ddim-3", "0 ± 0", "1.1 ± 0.1", "1.6 ± 0.2", "0.25 ± 0"]  # floor, arms, exact
    assert row[5].startswith(f"+0.5 [{0.5 - half:+.3g}, {0.5 + half:+.3g}] ↑ p_Holm ")
    median = _row(md.split("## Sample quality: excess cross-entropy, median (nats)")[1], "ddim-3")
    assert median[2:4] == ["0.55 ± 0.05", "0.8 ± 0.1"]


def test_verdict_and_measures_follow_from_the_summary(report):
    _, md, summary = report
    verdict = md.split("> **Verdict.** ")[1].split("\n\n")[0]
    assert verdict.startswith("SA-2 is worse than the baseline: of 3 sample-quality comparisons "
                              "(metric × sampler × steps), 0 better, 3 worse, 0 within noise")
    assert "over 3 seeds" in verdict
    kl = _row(md, "modular KL, sum over steps")
    assert kl[1:4] == ["0.5 ± 0", "0.5 ± 0", "0.5 ± 0"]  # the None of the last step is left out
    gap = _row(md, "estimation gap above exact, last step")
    assert gap[1] == "0.3 ± 0" and gap[3] == "0 (by definition)"
    assert _row(md.split("## Training cost")[1], "SA-2")[1] == "23 ± 1"
    assert summary["paired"]["sa"]["xent ddim-3"]["verdict"] == "higher"


def test_report_names_the_confound_the_command_and_the_commit(report):
    _, md, _ = report
    assert "SA-2 differs from the baseline in the settings marked ⚠" in md
    assert "⚠ loss.t_sampling: uniform → antithetic" in md  # SA draws its t antithetically
    assert "Command: `errprop study --synthetic`" in md
    assert f"Commit {provenance()['commit']}" in md and "Seeds: [0, 1, 2]" in md


def test_figures_are_pngs_linked_from_the_markdown_and_inside_the_html(report):
    out, md, _ = report
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(linked) == {"quality_xent_median.png", "quality_xent.png", "quality_mmd2.png",
                           "paired_xent_median.png", "paired_xent.png", "paired_mmd2.png",
                           "propagation.png"}
    for name in linked:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(linked) and 'src="quality' not in html
    assert '<section id="verdict">' in html
