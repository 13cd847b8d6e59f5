"""``evaluate`` on the exact mixture denoiser: scores sit at their floor; a biased one scores worse."""

import json

import pytest

from errprop import config
from errprop.builders import Run, build_process
from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.evaluate import evaluate, format_table


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
    saved = json.loads((tmp_path / "eval" / f"{metric}.json").read_text())
    assert saved["n"] == 1000 and saved["results"][0]["nfe"] == 79
    assert (tmp_path / "eval" / f"{metric}.png").is_file()
    assert "floor" in format_table(saved)


def test_metric_must_fit_data(tmp_path):
    with pytest.raises(ErrpropError, match="needs image data"):
        evaluate(_run(tmp_path, GaussianMixture.ring8()), [5], ["ddim"], "fd", n=10, progress=False)
