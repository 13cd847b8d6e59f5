"""Fréchet distance against closed forms and scipy; FeatureStats against numpy."""

import numpy as np
import pytest
import scipy.linalg
import torch

from errprop.errors import ErrpropError
from errprop.metrics import FeatureStats, frechet_distance


def scipy_reference(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy.linalg.sqrtm (fine for well-conditioned inputs)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # a shared eigenbasis: Σ1 Σ2 = Σ2 Σ1
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # 1-D: the 2-Wasserstein distance between N(m1, v1) and N(m2, v2)
    fd = frechet_distance([1.0], [[4.0]], [3.0], [[9.0]])
    assert fd == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2, rel=1e-12)


def test_agrees_with_scipy_on_random_features():
    rng = np.random.default_rng(1)
    d = 32
    f1 = rng.normal(size=(500, d)) @ rng.normal(size=(d, d))
    f2 = rng.normal(size=(400, d)) @ rng.normal(size=(d, d)) + 0.5
    args = (f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert frechet_distance(*args) == pytest.approx(scipy_reference(*args), rel=1e-6)
    torch_args = [torch.from_numpy(a) for a in args]  # tensors are accepted too
    assert frechet_distance(*torch_args) == pytest.approx(frechet_distance(*args), rel=1e-12)


def test_zero_against_itself_and_stable_when_rank_deficient():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(1000, 16))
    mu, s = f.mean(0), np.cov(f, rowvar=False)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10
    # 20 samples in 64 dimensions: rank ≤ 19; sqrtm(Σ1 Σ2) is complex/ill-posed here
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert np.linalg.matrix_rank(sa) < 64
    fd = frechet_distance(a.mean(0), sa, b.mean(0), sb)
    assert np.isfinite(fd) and fd > 0
    assert abs(frechet_distance(a.mean(0), sa, a.mean(0), sa)) < 1e-8
    # exactly singular: a rank-1 covariance against itself shifted
    v = rng.normal(size=(64, 1))
    s1 = v @ v.T
    assert frechet_distance(np.zeros(64), s1, np.ones(64), s1) == pytest.approx(64, rel=1e-9)
    # scaled rank-1 covariances: W2² = (√1 − √4)² ‖v‖²
    assert frechet_distance(np.zeros(64), s1, np.zeros(64), 4 * s1) == pytest.approx(
        float((v**2).sum()), rel=1e-9
    )


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ErrpropError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ErrpropError, match="non-finite"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))


def test_feature_stats_match_numpy_and_ignore_batch_size(tmp_path):
    rng = np.random.default_rng(3)
    feats = (rng.normal(size=(200, 10)) * 3 + 1000).astype(np.float32)  # large mean
    results = []
    for bs in (1, 7, 64):
        st = FeatureStats()
        for i in range(0, len(feats), bs):
            st.update(torch.from_numpy(feats[i : i + bs]))
        results.append(st)
    f64 = feats.astype(np.float64)
    for st in results:
        assert st.n == 200
        np.testing.assert_allclose(st.mean, f64.mean(0), rtol=1e-14)
        np.testing.assert_allclose(st.cov, np.cov(f64, rowvar=False), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(st.mean, results[0].mean, rtol=1e-15)
        np.testing.assert_allclose(st.cov, results[0].cov, rtol=1e-12, atol=1e-12)


def test_feature_stats_save_load_and_continue(tmp_path):
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(50, 5))
    st = FeatureStats({"data": "x"}).update(feats[:30])
    st.save(tmp_path / "s.npz")
    loaded = FeatureStats.load(tmp_path / "s.npz")
    assert loaded.meta == {"data": "x"} and loaded.n == 30
    np.testing.assert_array_equal(loaded.cov, st.cov)
    loaded.update(feats[30:])
    np.testing.assert_allclose(loaded.cov, np.cov(feats, rowvar=False), rtol=1e-12)
    (tmp_path / "bad.npz").write_bytes(b"nonsense")
    with pytest.raises(ErrpropError, match="delete the file"):
        FeatureStats.load(tmp_path / "bad.npz")
    with pytest.raises(ErrpropError, match="need at least 2"):
        _ = FeatureStats().update(feats[:1]).cov
    with pytest.raises(ErrpropError, match="dimension 4, expected 5"):
        st.update(feats[:2, :4])
