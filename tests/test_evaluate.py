"""``evaluate`` on the exact mixture denoiser: scores sit at their floor; a biased one scores worse."""

import json
from pathlib import Path

import pytest

from errprop import config
from errprop.builders import Run, build_process
from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.evaluate import evaluate, format_table, read_results


def _run(tmp_path, denoiser):
    cfg = config.load(overrides=["sample.grid=edm"])
    return Run(tmp_path, cfg, build_process(cfg), denoiser, 0, (2,))


@pytest.mark.parametrize("metric", ["xent", "modes", "mmd"])
def test_exact_denoiser_scores_near_floor_biased_worse(tmp_path, metric):
    mix = GaussianMixture.ring8()
    exact = evaluate(_run(tmp_path, mix), [40], ["heun"], metric, n=1000, progress=False)
    biased = evaluate(_run(tmp_path, lambda x, s: mix(x, s) + 0.1), [40], ["heun"], metric, n=1000,
                      progress=False)
    e, b, floor = exact["results"][0]["value"], biased["results"][0]["value"], exact["floor"]
    assert b > e
    assert abs(e) <= 3 * abs(floor) + 0.01
    saved = json.loads((tmp_path / "eval" / f"{metric}-n1000-seed0-edm-rho7-step0.json").read_text())
    assert saved["n"] == 1000 and saved["results"][0]["nfe"] == 79
    assert (tmp_path / "eval" / f"{metric}-n1000-seed0-edm-rho7-step0.png").is_file()
    assert "floor" in format_table(saved)


def test_metric_must_fit_data(tmp_path):
    with pytest.raises(ErrpropError, match="needs image data"):
        evaluate(_run(tmp_path, GaussianMixture.ring8()), [5], ["ddim"], "fd", n=10, progress=False)


def test_results_at_other_settings_never_overwrite_and_rows_merge(tmp_path):
    mix = GaussianMixture.ring8()
    big = evaluate(_run(tmp_path, mix), [5], ["ddim"], "modes", n=400, progress=False)
    evaluate(_run(tmp_path, mix), [5], ["ddim"], "modes", n=20, progress=False)  # the `--n 1` abuse
    evaluate(_run(tmp_path, mix), [5], ["ddim"], "modes", n=400, seed=1, progress=False)
    files = sorted(p.name for p in (tmp_path / "eval").glob("*.json"))
    assert files == ["modes-n20-seed0-edm-rho7-step0.json", "modes-n400-seed0-edm-rho7-step0.json",
                     "modes-n400-seed1-edm-rho7-step0.json"]
    assert json.loads((tmp_path / "eval" / files[1]).read_text())["results"] == big["results"]
    # another sampler and step count at the same settings join the same file
    evaluate(_run(tmp_path, mix), [10], ["ddpm"], "modes", n=400, progress=False)
    rows = json.loads((tmp_path / "eval" / files[1]).read_text())["results"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddim", 5), ("ddpm", 10)]
    assert [r["file"] for r in read_results(tmp_path)] == [*files[:2], files[2]]


def test_xent_carries_median_trimmed_outliers_and_flags_the_floor(tmp_path):
    mix = GaussianMixture.ring8()
    exact = evaluate(_run(tmp_path, mix), [40], ["heun"], "xent", n=1000, progress=False)
    row = exact["results"][0]
    assert {"median", "trimmed", "outliers", "below_floor"} <= set(row)
    assert 0 <= row["outliers"] < 0.05 and row["below_floor"] == (row["value"] <= exact["floor"])
    far = evaluate(_run(tmp_path / "far", lambda x, s: mix(x, s) * 3), [10], ["ddim"], "xent", n=1000,
                   progress=False)["results"][0]
    assert far["outliers"] > 0.5 and not far["below_floor"]
    assert "median" in format_table(exact)


def test_default_metrics_fit_the_data(tmp_path):
    res = evaluate(_run(tmp_path, GaussianMixture.ring8()), [5], ["ddim"], n=50, progress=False)
    assert set(res) == {"xent", "modes"}


def test_too_many_steps_fail_before_any_sampling(tmp_path, monkeypatch):
    import errprop.evaluate as ev

    calls = []
    monkeypatch.setattr(ev, "generate", lambda *a, **k: calls.append(k) or None)
    cfg = config.load(overrides=["sample.grid=uniform"])
    run = Run(tmp_path, cfg, build_process(cfg), GaussianMixture.ring8(), 0, (2,))
    with pytest.raises(ErrpropError, match="at most 1000"):
        evaluate(run, [10, 2000], ["ddim"], "modes", n=10, progress=False)
    assert calls == [] and not (tmp_path / "eval").exists()


def test_an_unreadable_result_is_named(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "fd-n10-seed0-uniform-trailing-step5.json").write_text("")
    with pytest.raises(ErrpropError, match="not valid JSON.*rerun evaluate"):
        read_results(tmp_path)


def test_row_finds_each_setting_in_a_merged_result(tmp_path):
    """Rows of earlier calls are merged into the same file: a later call's own setting must be
    looked up by (sampler, steps), not taken from the first row (B8's Fashion-MNIST bug)."""
    from errprop.evaluate import row

    run = _run(tmp_path, GaussianMixture.ring8())
    evaluate(run, [5], ["ddim"], "xent", n=300, seed=0, progress=False)
    res = evaluate(run, [20], ["ddim"], "xent", n=300, seed=0, progress=False)
    assert [r["steps"] for r in res["results"]] == [5, 20]  # the earlier row comes first
    assert row(res, "ddim", 20) is res["results"][1]
    with pytest.raises(ErrpropError, match="no ddpm-20 row"):
        row(res, "ddpm", 20)


def test_the_command_is_passed_in_never_read_from_sys_argv(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["somebody-elses-program", "--secret"])
    mix = GaussianMixture.ring8()
    res = evaluate(_run(tmp_path, mix), [5], ["ddim"], "modes", n=50, progress=False)
    assert res["command"] is None
    res = evaluate(_run(tmp_path, mix), [5], ["ddim"], "modes", n=50, progress=False,
                   command="errprop evaluate RUN --steps 5")
    assert json.loads((tmp_path / "eval" / f"{Path(res['file']).name}").read_text())["command"] == (
        "errprop evaluate RUN --steps 5")
