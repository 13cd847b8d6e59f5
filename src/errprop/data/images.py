"""Real image data sets as tensors in [-1, 1]: Fashion-MNIST, digits, MNIST, CIFAR-10, folders.

Every loader returns an :class:`ImageData` with images ``x`` of shape (N, C, H, W), float32, scaled
linearly from the pixel range to [-1, 1], and integer class labels ``y`` (``None`` for a folder
without class sub-folders). Data sets:

- ``"fashion-mnist"``: the IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``) or any folder holding the four standard IDX files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``; gzipped or not). 60,000 train / 10,000 test, 28×28×1, 10 classes.
- ``"digits"``: scikit-learn's 8×8 digits (built in, no download), 17 gray levels 0..16.
  Split: the first 1,437 images are ``train``, the last 360 ``test`` (the file's order, 80/20).
- ``"mnist"``: the same four IDX file names in ``root`` if present, otherwise torchvision.
- ``"cifar10"``: the binary version (``data_batch_1.bin`` … ``test_batch.bin``, optionally in
  ``cifar-10-batches-bin/``) in ``root`` if present, otherwise torchvision.
- ``"folder"``: ``root/<class>/*.png|jpg|…`` (labels from the sorted class names) or a flat folder
  of images (no labels); ``root/train`` and ``root/test`` are used for the splits when present.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ErrpropError
from ..files import cache_dir

NAMES = ("fashion-mnist", "digits", "mnist", "cifar10", "folder")
SPLITS = ("train", "test")
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DIGITS_TRAIN = 1437  # first 1437 of scikit-learn's 1797 digits train, the last 360 test
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class ImageData:
    """A labelled (or unlabelled) image data set.

    Attributes:
        x: (N, C, H, W) float32 images in [-1, 1].
        y: (N,) int64 class labels in ``0..num_classes-1``, or ``None`` when the data has none.
        name: the data set name (``"fashion-mnist"``, ``"digits"``, …).
        num_classes: number of classes (0 without labels).
        class_names: the class names, in label order (empty without labels).
    """

    x: torch.Tensor
    y: torch.Tensor | None
    name: str
    num_classes: int
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.x.shape[0]


# ----------------------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped (by content, not by name).

    The header is two zero bytes, a type code, the number of dimensions and one big-endian uint32
    per dimension; the data follow, big-endian. The file length must match the header exactly.

    Returns:
        The array with the header's shape, in the header's dtype (native byte order).

    Raises:
        ErrpropError: the file is missing, truncated, too long or not an IDX file.
    """
    path = Path(path)
    hint = (
        "Re-install the data (for Fashion-MNIST: `apt-get install --reinstall "
        "dataset-fashion-mnist`) or download the file again."
    )
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ErrpropError(f"cannot read IDX file {path}: {e.strerror or e}. {hint}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise ErrpropError(
                f"IDX file {path} is a corrupted or truncated gzip file ({e}). {hint}"
            ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ErrpropError(
            f"{path} is not an IDX file: expected a magic number 0x0000TTNN with a type code TT "
            f"in {sorted(hex(k) for k in _IDX_DTYPES)}, got {raw[:4].hex() or 'an empty file'}. "
            f"{hint}"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ErrpropError(
            f"IDX file {path} is truncated: its header needs {header} bytes for {ndim} dimensions, "
            f"the file has {len(raw)}. {hint}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ErrpropError(
            f"IDX file {path} is {what}: shape {shape} of {dtype.name} needs {expected} bytes "
            f"(uncompressed), the file has {len(raw)}. {hint}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for sub in ("", "raw", "FashionMNIST/raw", "MNIST/raw"):
        for suffix in ("", ".gz"):
            p = folder / sub / (stem + suffix)
            if p.is_file():
                return p
    return None


def _load_idx_split(name: str, folder: Path, split: str, hint: str) -> tuple[np.ndarray, ...]:
    paths = [_find_idx(folder, stem) for stem in _IDX_FILES[split]]
    if any(p is None for p in paths):
        missing = [s for s, p in zip(_IDX_FILES[split], paths, strict=True) if p is None]
        raise ErrpropError(
            f"{name}: {folder} does not hold the IDX file(s) {', '.join(missing)} (.gz or not). "
            f"{hint}"
        )
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
        raise ErrpropError(
            f"{name}: {paths[0]} must hold uint8 images (N, H, W) and {paths[1]} labels (N,); "
            f"got {images.dtype} {images.shape} and {labels.dtype} {labels.shape}. {hint}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ErrpropError(
            f"{name}: {paths[0]} holds {images.shape[0]} images but {paths[1]} holds "
            f"{labels.shape[0]} labels. {hint}"
        )
    return images[:, None], labels


# --------------------------------------------------------------------------------- data sets


def _to_unit_range(pixels: np.ndarray, max_value: float) -> torch.Tensor:
    """Integer pixels in 0..max_value -> float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32)
    return x.mul_(2.0 / max_value).sub_(1.0)


def _fashion_mnist(split: str, root: str | None) -> ImageData:
    folder = Path(root).expanduser() if root is not None else FASHION_MNIST_ROOT
    hint = (
        "Install it with `apt-get install dataset-fashion-mnist` (files go to "
        f"{FASHION_MNIST_ROOT}) or pass data.root=FOLDER holding the four IDX files."
    )
    images, labels = _load_idx_split("fashion-mnist", folder, split, hint)
    return _labelled("fashion-mnist", _to_unit_range(images, 255), labels, FASHION_MNIST_CLASSES)


def _labelled(name: str, x: torch.Tensor, labels: np.ndarray, classes: tuple[str, ...]):
    y = torch.from_numpy(labels.astype(np.int64))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
        raise ErrpropError(
            f"{name}: labels must lie in 0..{len(classes) - 1}, found {int(y.min())}..{int(y.max())}"
        )
    return ImageData(x=x, y=y, name=name, num_classes=len(classes), class_names=classes)


def _digits(split: str) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    part = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    classes = tuple(str(i) for i in range(10))
    return _labelled("digits", _to_unit_range(images[part], 16), digits.target[part], classes)


@contextlib.contextmanager
def download_timeout(seconds: float = 20.0):
    """Sockets opened inside time out after ``seconds``: an offline machine fails fast, never hangs."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision_dataset(name: str, split: str, root: str | None) -> ImageData:
    """MNIST / CIFAR-10 through torchvision, downloading into ``root`` (default: the cache)."""
    try:
        import torchvision.datasets as tvd
    except ImportError as e:
        raise ErrpropError(
            f"{name}: no local copy found and torchvision is not installed. Install torchvision "
            "(matching your torch) on a machine with internet, or pass data.root=FOLDER holding "
            + (
                "the four MNIST IDX files."
                if name == "mnist"
                else "CIFAR-10's binary version (data_batch_1.bin ... test_batch.bin)."
            )
        ) from e
    folder = Path(root).expanduser() if root is not None else cache_dir() / "datasets"
    cls = tvd.MNIST if name == "mnist" else tvd.CIFAR10
    kwargs = {"root": str(folder), "train": split == "train"}
    try:
        ds = cls(**kwargs, download=False)
    except RuntimeError:
        try:
            with download_timeout():
                ds = cls(**kwargs, download=True)
        except Exception as e:  # torchvision raises many kinds on a failed download
            raise ErrpropError(
                f"{name}: downloading into {folder} failed ({e}). Download it on a machine with "
                "internet and pass data.root=FOLDER."
            ) from e
    data = np.asarray(ds.data)
    images = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
    classes = tuple(ds.classes) if name == "cifar10" else tuple(str(i) for i in range(10))
    return _labelled(name, _to_unit_range(images, 255), np.asarray(ds.targets), classes)


def _mnist(split: str, root: str | None) -> ImageData:
    if root is not None:
        folder = Path(root).expanduser()
        if _find_idx(folder, _IDX_FILES[split][0]) is not None:
            hint = "Pass data.root=FOLDER holding the four MNIST IDX files."
            images, labels = _load_idx_split("mnist", folder, split, hint)
            classes = tuple(str(i) for i in range(10))
            return _labelled("mnist", _to_unit_range(images, 255), labels, classes)
    return _torchvision_dataset("mnist", split, root)


def _cifar10_bin_files(folder: Path, split: str) -> list[Path] | None:
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    for sub in ("", "cifar-10-batches-bin"):
        paths = [folder / sub / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    return None


def _cifar10(split: str, root: str | None) -> ImageData:
    paths = _cifar10_bin_files(Path(root).expanduser(), split) if root is not None else None
    if paths is None:
        return _torchvision_dataset("cifar10", split, root)
    record = 1 + 3 * 32 * 32  # one label byte, then 32×32 R, G, B planes
    chunks = []
    for p in paths:
        raw = np.fromfile(p, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise ErrpropError(
                f"cifar10: {p} has {raw.size} bytes, not a whole number of {record}-byte records; "
                "it is truncated or not CIFAR-10's binary version. Download it again."
            )
        chunks.append(raw.reshape(-1, record))
    rows = np.concatenate(chunks)
    images = rows[:, 1:].reshape(-1, 3, 32, 32)
    return _labelled("cifar10", _to_unit_range(images, 255), rows[:, 0], CIFAR10_CLASSES)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _read_image(path: Path, size: int | None, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size, size):
                w, h = im.size
                s = min(w, h)  # centre square crop, then resize
                box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
                im = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ErrpropError(f"folder: cannot read image {path} ({e}); remove or fix it") from e
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _folder(
    split: str, root: str | None, image_size: int | None, channels: int | None
) -> ImageData:
    if root is None:
        raise ErrpropError("folder: pass data.root=FOLDER, the folder holding the images")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise ErrpropError(f"folder: {folder} is not a folder; pass data.root=FOLDER of images")
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        if not (folder / split).is_dir():
            raise ErrpropError(f"folder: {folder} has no '{split}' sub-folder; add one")
        folder = folder / split
    elif split != "train":
        raise ErrpropError(
            f"folder: {folder} has no train/ and test/ sub-folders, so it only serves the 'train' "
            f"split, not '{split}'; put held-out images in {folder}/test"
        )
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _image_files(p))
    flat = _image_files(folder)
    if class_dirs and flat:
        raise ErrpropError(
            f"folder: {folder} holds both images and class sub-folders; move the loose images "
            "into a class folder or remove the sub-folders"
        )
    if class_dirs:
        files = [(p, k) for k, d in enumerate(class_dirs) for p in _image_files(d)]
    else:
        files = [(p, -1) for p in flat]
    if not files:
        raise ErrpropError(
            f"folder: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder} or its sub-folders"
        )
    if channels is None:
        from PIL import Image

        with Image.open(files[0][0]) as im:
            channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    if channels not in (1, 3):
        raise ErrpropError(f"folder: channels must be 1 or 3, got {channels}")
    arrays = [_read_image(p, image_size, channels) for p, _ in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ErrpropError(
            f"folder: images in {folder} have different sizes {sorted(shapes)[:4]}; pass "
            "image_size (data.image_size) to resize them all"
        )
    x = _to_unit_range(np.stack(arrays), 255)
    if not class_dirs:
        return ImageData(x=x, y=None, name="folder", num_classes=0)
    labels = np.array([k for _, k in files])
    return _labelled("folder", x, labels, tuple(d.name for d in class_dirs))


def load_images(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageData:
    """Load an image data set as float32 tensors in [-1, 1] (see the module docstring).

    Args:
        name: ``"fashion-mnist"``, ``"digits"``, ``"mnist"``, ``"cifar10"`` or ``"folder"``.
        split: ``"train"`` or ``"test"``.
        root: folder holding the data (required for ``"folder"``; otherwise optional).
        image_size: ``"folder"`` only: centre-crop to a square and resize to this size (bicubic).
        channels: ``"folder"`` only: 1 (gray) or 3 (RGB); default from the first image's mode.

    Returns:
        An :class:`ImageData` with ``x`` of shape (N, C, H, W).

    Raises:
        ErrpropError: unknown name or split, or data that is missing or corrupted (the message
            says how to get it).
    """
    if name not in NAMES:
        raise ErrpropError(f"unknown image data set {name!r}; choose one of {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ErrpropError(f"unknown split {split!r} for {name}; choose 'train' or 'test'")
    if name != "folder" and (image_size is not None or channels is not None):
        raise ErrpropError(f"{name}: image_size and channels apply only to name='folder'")
    root = None if root is None else os.fspath(root)
    if name == "fashion-mnist":
        return _fashion_mnist(split, root)
    if name == "digits":
        return _digits(split)
    if name == "mnist":
        return _mnist(split, root)
    if name == "cifar10":
        return _cifar10(split, root)
    return _folder(split, root, image_size, channels)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of a batch (N, C, H, W) left-right with probability 1/2.

    The coin flips come from ``generator`` (on the CPU or on ``x``'s device); returns a new tensor.
    """
    device = generator.device if generator is not None else x.device
    flip = torch.rand(x.shape[0], generator=generator, device=device) < 0.5
    flip = flip.to(x.device).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(flip, x.flip(-1), x)
