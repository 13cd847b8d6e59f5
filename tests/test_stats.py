"""Paired statistics over seeds, against scipy's paired t-test."""

import math

import numpy as np
import pytest
from scipy import stats

from errprop.errors import ErrpropError
from errprop.stats import paired, summary


@pytest.mark.parametrize("shift", [0.0, 0.3, -1.0])
def test_paired_interval_agrees_with_scipy_ttest_rel(shift):
    rng = np.random.default_rng(int(abs(shift) * 10))
    a = rng.normal(size=10)
    b = a + shift + 0.5 * rng.normal(size=10)
    r = paired(b.tolist(), a.tolist())
    t = stats.ttest_rel(b, a)
    ci = t.confidence_interval(0.95)
    assert r["lo"] == pytest.approx(ci.low, rel=1e-9) and r["hi"] == pytest.approx(ci.high, rel=1e-9)
    excludes_zero = t.pvalue < 0.05
    assert (r["verdict"] != "no difference") == excludes_zero
    if excludes_zero:
        assert r["verdict"] == ("lower" if r["mean"] < 0 else "higher")


def test_one_seed_gives_no_verdict_and_mismatched_pairs_are_errors():
    r = paired([1.0], [0.0])
    assert r["verdict"] == "no difference" and math.isnan(r["lo"])
    with pytest.raises(ErrpropError, match="pair them by seed"):
        paired([1.0, 2.0], [1.0])


def test_summary():
    s = summary([1.0, 2.0, 3.0])
    assert (s["mean"], s["std"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert summary([4.0])["std"] == 0.0


def test_paired_p_value_is_scipys_paired_t_test():
    from scipy.stats import ttest_rel

    a, b = [1.0, 2.5, 3.1, 4.0], [1.4, 2.4, 3.9, 4.8]
    assert paired(a, b)["p"] == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-12)
    assert paired([1.0, 2.0], [1.0, 2.0])["p"] == 1.0


def test_holm_adjusts_step_down_and_keeps_order():
    from errprop.stats import holm

    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 → 0.04, 0.06, 0.06 (monotone), 0.5
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == []
