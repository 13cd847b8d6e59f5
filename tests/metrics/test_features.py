"""The feature classifier: shapes, determinism, caching, reference statistics, and accuracy."""

import json
import time

import numpy as np
import pytest
import torch

from errprop.data.images import FASHION_MNIST_ROOT, load_images
from errprop.errors import ErrpropError
from errprop.metrics import FeatureStats
from errprop.metrics import features as F

HAVE_FASHION = (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A fresh, empty errprop cache folder."""
    monkeypatch.setenv("ERRPROP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ERRPROP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert F.cache_dir() == tmp_path / "xdg" / "errprop"
    monkeypatch.setenv("ERRPROP_CACHE", str(tmp_path / "mine"))
    assert F.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("ERRPROP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert F.cache_dir().parts[-2:] == (".cache", "errprop")


@pytest.mark.parametrize("size", [8, 28, 32])
def test_classifier_shapes(size):
    model = F.Classifier(1, size, 10).eval()
    x = torch.zeros(3, 1, size, size)
    assert model(x).shape == (3, 10) and model.features(x).shape == (3, 128)
    with pytest.raises(ErrpropError, match="at least 8"):
        F.Classifier(1, 4, 10)


def test_training_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, acc_a = F.train_classifier("digits", seed=1, epochs=2, progress=False)
    assert torch.rand(1) == before  # the caller's random stream is untouched
    b, acc_b = F.train_classifier("digits", seed=1, epochs=2, progress=False)
    assert acc_a == acc_b
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    c, _ = F.train_classifier("digits", seed=2, epochs=2, progress=False)
    assert not torch.equal(a.out.weight, c.out.weight)


def test_digits_classifier_learns():
    _, acc = F.train_classifier("digits", epochs=15, progress=False)
    assert acc > 0.85


def test_load_or_train_caches_weights_and_json(cache):
    model, acc = F.load_or_train_classifier("digits", epochs=2, progress=False)
    folder = F.classifier_dir(F.TrainSettings("digits", epochs=2))
    assert folder.is_relative_to(cache)
    info = json.loads((folder / "classifier.json").read_text())
    assert info["test_accuracy"] == acc and info["settings"]["epochs"] == 2
    assert info["settings"]["seed"] == 0 and info["n_test"] == 360
    assert (folder / "classifier.safetensors").is_file()
    again, acc2 = F.load_or_train_classifier("digits", epochs=2, progress=False)  # from the cache
    assert acc2 == acc
    x = load_images("digits", "test").x
    torch.testing.assert_close(again.features(x), model.features(x), rtol=0, atol=0)
    (folder / "classifier.safetensors").write_bytes(b"broken")
    with pytest.raises(ErrpropError, match="delete that folder"):
        F.load_or_train_classifier("digits", epochs=2, progress=False)


def test_reference_stats_cached(cache):
    full = F.reference_stats("digits", "test", epochs=2, progress=False)
    assert full.n == 360 and full.mean.shape == (128,) and full.meta["split"] == "test"
    model, _ = F.load_or_train_classifier("digits", epochs=2, progress=False)
    x = load_images("digits", "test").x
    direct = F.compute_stats(model, x, batch_size=7)
    np.testing.assert_allclose(direct.cov, full.cov, rtol=1e-5, atol=1e-6)
    stats_files = list(cache.rglob("*.npz"))
    assert len(stats_files) == 1
    assert FeatureStats.load(stats_files[0]).n == 360
    with pytest.raises(ErrpropError, match="do not fit the classifier"):
        F.compute_stats(model, torch.zeros(2, 1, 28, 28))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FASHION, reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_classifier_reaches_90_percent():
    t0 = time.perf_counter()
    model, acc = F.train_classifier("fashion-mnist", seed=0, progress=False)
    elapsed = time.perf_counter() - t0
    print(f"fashion-mnist classifier: test accuracy {acc:.4f} in {elapsed:.0f} s")
    assert acc >= 0.90
