"""Image data loaders: IDX format, the real Fashion-MNIST files, digits, folders, torchvision."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from errprop.data.images import (
    FASHION_MNIST_ROOT,
    load_images,
    random_hflip,
    read_idx,
)
from errprop.errors import ErrpropError

HAVE_FASHION = all(
    (FASHION_MNIST_ROOT / f"{stem}-ubyte.gz").is_file()
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
)
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION,
    reason=f"Fashion-MNIST not in {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist",
)


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> Path:
    """Write an IDX file by hand: magic 00 00 <type> <ndim>, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + np.asarray(array, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def small_idx_folder(root: Path, compress: bool, n_train: int = 5, n_test: int = 3) -> dict:
    rng = np.random.default_rng(0)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", x, compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", y, compress=compress)
        data[split] = (x, y)
    return data


@pytest.mark.parametrize("code", [0x08, 0x0B, 0x0D])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, code, compress):
    a = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * (3 if code != 0x08 else 1)).astype(np.float64)
    out = read_idx(write_idx(tmp_path / "a.idx", a, code, compress))
    assert out.shape == (2, 3, 4)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_idx_is_a_clear_error(tmp_path, compress):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    raw = path.read_bytes()[:-100]
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ErrpropError, match=r"truncated.*3152 bytes.*3052.*dataset-fashion-mnist") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_corrupted_gzip_and_bad_magic_are_clear_errors(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:30])  # cut inside the compressed stream
    with pytest.raises(ErrpropError, match="corrupted or truncated gzip"):
        read_idx(path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(ErrpropError, match="not an IDX file"):
        read_idx(bad)
    with pytest.raises(ErrpropError, match="cannot read IDX file"):
        read_idx(tmp_path / "missing")


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path, compress):
    data = small_idx_folder(tmp_path, compress)
    for split in ("train", "test"):
        d = load_images("fashion-mnist", split, root=tmp_path)
        x, y = data[split]
        assert d.x.shape == (len(x), 1, 28, 28) and d.x.dtype == torch.float32
        expected = torch.from_numpy(x).float()[:, None] / 127.5 - 1
        torch.testing.assert_close(d.x, expected, rtol=0, atol=1e-6)
        assert d.y.dtype == torch.int64 and d.y.tolist() == y.tolist()
        assert d.num_classes == 10 and d.class_names[9] == "Ankle boot"


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ErrpropError, match=r"apt-get install dataset-fashion-mnist.*data.root"):
        load_images("fashion-mnist", root=tmp_path)
    with pytest.raises(ErrpropError, match="unknown image data set"):
        load_images("imagenet")
    with pytest.raises(ErrpropError, match="unknown split"):
        load_images("digits", "val")


def test_mismatched_image_and_label_counts(tmp_path):
    small_idx_folder(tmp_path, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ErrpropError, match="5 images but .* 4 labels"):
        load_images("fashion-mnist", root=tmp_path)


@needs_fashion
def test_real_fashion_mnist():
    train = load_images("fashion-mnist", "train")
    test = load_images("fashion-mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.min() == -1 and train.x.max() == 1
    assert torch.equal(train.y.bincount(), torch.full((10,), 6000))
    assert torch.equal(test.y.bincount(), torch.full((10,), 1000))
    assert train.y[:5].tolist() == [9, 0, 0, 3, 0]  # the published first labels


def test_digits_split_and_scale():
    from sklearn.datasets import load_digits

    train, test = load_images("digits", "train"), load_images("digits", "test")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    ref = load_digits()
    torch.testing.assert_close(test.x[:, 0].double(), torch.from_numpy(ref.images[1437:] / 8 - 1))
    assert train.y.tolist() == ref.target[:1437].tolist()
    assert train.x.min() == -1 and train.x.max() == 1


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_classes_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 2), ("dog", 3)):
        for i in range(n):
            save_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    d = load_images("folder", root=tmp_path, image_size=8)
    assert d.x.shape == (5, 3, 8, 8) and d.class_names == ("cat", "dog")
    assert d.y.tolist() == [0, 0, 1, 1, 1] and d.num_classes == 2
    assert -1 <= d.x.min() and d.x.max() <= 1
    gray = load_images("folder", root=tmp_path, image_size=8, channels=1)
    assert gray.x.shape == (5, 1, 8, 8)
    with pytest.raises(ErrpropError, match="no train/ and test/"):
        load_images("folder", "test", root=tmp_path)


def test_flat_image_folder_exact_values_and_errors(tmp_path):
    img = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17  # 0..255
    save_png(tmp_path / "train" / "a.png", img)
    save_png(tmp_path / "train" / "b.png", img[::-1].copy())
    d = load_images("folder", root=tmp_path)
    assert d.y is None and d.num_classes == 0 and d.x.shape == (2, 1, 4, 4)
    torch.testing.assert_close(d.x[0, 0], torch.from_numpy(img).float() / 127.5 - 1)
    save_png(tmp_path / "train" / "c.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ErrpropError, match="different sizes.*image_size"):
        load_images("folder", root=tmp_path)
    with pytest.raises(ErrpropError, match="no 'test' sub-folder"):
        load_images("folder", "test", root=tmp_path)
    with pytest.raises(ErrpropError, match="pass data.root"):
        load_images("folder")


def test_cifar10_binary_files(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, size=(2, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(tmp_path / name)
    d = load_images("cifar10", "test", root=tmp_path)
    assert d.x.shape == (2, 3, 32, 32) and d.y.tolist() == records[:, 0].tolist()
    raw = records[1, 1:].reshape(3, 32, 32)
    torch.testing.assert_close(d.x[1], torch.from_numpy(raw).float() / 127.5 - 1)
    assert load_images("cifar10", "train", root=tmp_path).x.shape[0] == 10
    (tmp_path / "test_batch.bin").write_bytes(records.tobytes()[:-5])
    with pytest.raises(ErrpropError, match="truncated"):
        load_images("cifar10", "test", root=tmp_path)


def test_mnist_from_idx_folder_and_torchvision_message(tmp_path):
    data = small_idx_folder(tmp_path, compress=True)
    assert load_images("mnist", "test", root=tmp_path).y.tolist() == data["test"][1].tolist()
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ErrpropError, match="torchvision is not installed"):
            load_images("cifar10", root=tmp_path / "empty")


def test_random_hflip_is_seeded_and_flips_about_half():
    x = torch.arange(4.0).repeat(1000, 1, 1, 1)  # (1000, 1, 1, 4)
    a = random_hflip(x, torch.Generator().manual_seed(0))
    b = random_hflip(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    flipped = a[:, 0, 0, 0] == 3
    assert torch.all(flipped | (a[:, 0, 0, 0] == 0)) and 400 < int(flipped.sum()) < 600
    assert torch.equal(a[flipped], x[flipped].flip(-1))
