"""Inception metrics: weights loaded from a local file only, clear errors, IS/KID formulas."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from errprop.errors import ErrpropError
from errprop.metrics import inception


def fidelity_class():
    try:
        return inception._inception_class()
    except ErrpropError as e:
        pytest.skip(f"torch-fidelity not installed: {e}")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A randomly initialised InceptionV3 state dict in torch-fidelity's format."""
    cls = fidelity_class()
    folder = tmp_path_factory.mktemp("inception")
    empty = folder / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    with mock.patch.object(cls, "load_state_dict"):  # skip loading: keep the random init
        net = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    path = folder / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty torch hub cache and a download function that fails the test if called."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)


def test_loads_weights_by_path_without_download(random_weights, no_download):
    model = inception.load_inception(random_weights)
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    feats, logits = inception.inception_features(model, gray, batch_size=1)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    # gray images are repeated to RGB, so the same images given as RGB are the same set
    out = inception.inception_metrics(gray.expand(-1, 3, -1, -1), gray, model=model, kid_subsets=2)
    assert set(out) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "n_samples", "n_reference"}
    assert out["n_samples"] == out["n_reference"] == 2
    assert out["fid"] == pytest.approx(0, abs=1e-6 * float(feats.var(0).sum()))
    assert out["is_mean"] == pytest.approx(1.0)  # splits of one image: p(y|x) = p(y)
    assert np.isfinite(out["kid_mean"])


def test_missing_or_invalid_weights_are_clear_errors(tmp_path, no_download, monkeypatch):
    with pytest.raises(ErrpropError, match=r"does not exist.*--inception-weights PATH"):
        inception.load_inception(tmp_path / "nope.pth")
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ErrpropError, match=r"offline.*--inception-weights PATH.*https://"):
        inception.resolve_inception_weights(None)
    with pytest.raises(ErrpropError, match="downloads are disabled"):
        inception.resolve_inception_weights(None, allow_download=False)
    fidelity_class()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(ErrpropError, match="not a readable PyTorch weights file"):
        inception.load_inception(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ErrpropError, match="not torch-fidelity InceptionV3 weights"):
        inception.load_inception(wrong)


def test_cached_weights_are_used_offline(random_weights, no_download):
    cached = Path(torch.hub.get_dir()) / "checkpoints" / inception.INCEPTION_URL.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(random_weights.read_bytes())
    assert inception.resolve_inception_weights(None) == cached


def test_inception_score_closed_forms():
    uniform = torch.zeros(100, 10)  # p(y|x) = p(y): IS = 1
    assert inception.inception_score(uniform, splits=4)[0] == pytest.approx(1.0, rel=1e-12)
    confident = torch.full((100, 10), -1e4)
    confident[torch.arange(100), torch.arange(100) % 10] = 0  # one-hot, balanced: IS = 10
    mean, std = inception.inception_score(confident, splits=5)
    assert mean == pytest.approx(10.0, rel=1e-9) and std < 1e-9
    with pytest.raises(ErrpropError, match="splits"):
        inception.inception_score(uniform, splits=0)


def test_kid_matches_explicit_formula_and_vanishes_for_one_set():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) + 0.5
    k = lambda u, v: (u @ v.T / 6 + 1) ** 3  # noqa: E731
    m = 40
    expected = (
        sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        + sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        - 2 * k(a, b).mean()
    )
    mean, std = inception.kernel_inception_distance(a, b, subsets=3, subset_size=100)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0, abs=1e-12)
    big = rng.normal(size=(400, 6))
    same, _ = inception.kernel_inception_distance(big, big.copy(), subsets=20, subset_size=100)
    shifted, _ = inception.kernel_inception_distance(big, big + 0.5, subsets=20, subset_size=100)
    assert abs(same) < 0.05 * shifted
