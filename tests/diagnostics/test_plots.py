"""Error-vs-step plots: several runs on one axis, log y when the values span > 2 decades."""

import pytest

from errprop.diagnostics.plots import choose_yscale, plot_steps
from errprop.errors import ErrpropError
from errprop.plots import plt


def test_choose_yscale():
    assert choose_yscale([1.0, 50.0, None, float("nan")]) == "linear"
    assert choose_yscale([1e-4, 1e-2, 1.0]) == "log"
    assert choose_yscale([-0.5, 1e-4, 1.0]) == "symlog"
    assert choose_yscale([0.0, 0.0]) == "linear"


def test_plot_steps_writes_a_png(tmp_path):
    curves = {
        "model": {"x": [0, 1, 2, 3], "y": [1e-5, 1e-3, None, 1e-1], "yerr": [0, 1e-4, 0, 1e-2]},
        "oracle": {"x": [0, 1, 2, 3], "y": [1e-6, 1e-5, 1e-4, 1e-3], "style": "--"},
        "signed": {"x": [0, 1, 2, 3], "y": [-1e-6, 1e-5, 1e-4, 1e-3], "style": ":"},
    }
    path = plot_steps(curves, tmp_path / "e.png", ylabel="KL", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    open_before = plt.get_fignums()
    with pytest.raises(ErrpropError, match="2 x values"):
        plot_steps({"bad": {"x": [0, 1], "y": [1.0]}}, tmp_path / "b.png")
    assert plt.get_fignums() == open_before  # the error leaves no figure open
    with pytest.raises(ErrpropError, match="no curves"):
        plot_steps({}, tmp_path / "c.png")
