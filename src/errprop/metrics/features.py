"""A small CNN classifier whose penultimate features define errprop's practical "FID".

For Fashion-MNIST and digits there is no standard feature network, so errprop trains one on the
same data set, deterministically, and caches it (safetensors weights + JSON with the settings and
the test accuracy) under :func:`cache_dir`. The Fréchet distance on its features is reported with
its floor: train vs held-out test at the same n (:func:`reference_stats` gives both sides).

>>> model, acc = load_or_train_classifier("fashion-mnist")        # doctest: +SKIP
>>> ref = reference_stats("fashion-mnist", "test")                  # doctest: +SKIP
>>> gen = compute_stats(model, samples)                             # doctest: +SKIP
>>> frechet_distance(gen.mean, gen.cov, ref.mean, ref.cov)          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..data.images import ImageData, load_images, random_hflip
from ..errors import ErrpropError
from ..files import cache_dir
from .frechet import FeatureStats

__all__ = [
    "Classifier",
    "TrainSettings",
    "cache_dir",
    "classifier_dir",
    "compute_stats",
    "fit_classifier",
    "load_or_train_classifier",
    "reference_stats",
    "train_classifier",
]

ARCH_VERSION = 1  # bump when Classifier changes: cached weights of other versions are not reused


class Classifier(nn.Module):
    """Three conv-BN-ReLU layers (5×5 stride 2, 3×3 stride 2, 3×3), a 2×2 max-pool, and a 128-d
    feature layer: about 5 M multiply-adds per 28×28 image, cheap enough to train on a CPU.

    Works for any square size ≥ 8 (28×28 Fashion-MNIST: 28→14→7→3; 8×8 digits: 8→4→2→1).

    Args:
        in_channels: image channels (1 or 3).
        image_size: image height = width.
        num_classes: number of output classes.
        feature_dim: size of the penultimate layer returned by :meth:`features`.
    """

    def __init__(
        self, in_channels: int, image_size: int, num_classes: int, feature_dim: int = 128
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise ErrpropError(f"Classifier: images must be at least 8×8, got {image_size}")
        self.config = {
            "in_channels": in_channels,
            "image_size": image_size,
            "num_classes": num_classes,
            "feature_dim": feature_dim,
        }

        def block(c_in: int, c_out: int, **conv) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, bias=False, **conv), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, 32, kernel_size=5, stride=2, padding=2),
            *block(32, 64, kernel_size=3, stride=2, padding=1),
            *block(64, 128, kernel_size=3, padding=1),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        s = (((image_size + 1) // 2 + 1) // 2) // 2
        self.head = nn.Sequential(nn.Linear(128 * s * s, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim) of images (N, C, H, W) in [-1, 1]."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes)."""
        return self.out(self.dropout(self.features(x)))


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a trained classifier (its cache key).

    ``epochs=None`` picks a per-data-set default; ``hflip`` flips training images at random
    (only for data sets whose classes are left-right symmetric, such as Fashion-MNIST).
    """

    name: str
    root: str | None = None
    seed: int = 0
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    hflip: bool | None = None
    bf16: bool = False

    def resolved(self) -> TrainSettings:
        """The same settings with the per-data-set defaults filled in."""
        epochs = self.epochs if self.epochs is not None else DEFAULT_EPOCHS.get(self.name, 10)
        hflip = self.hflip if self.hflip is not None else self.name == "fashion-mnist"
        root = None if self.root is None else str(Path(self.root).expanduser().resolve())
        d = asdict(self) | {"epochs": epochs, "hflip": hflip, "root": root}
        return TrainSettings(**d)


DEFAULT_EPOCHS = {"fashion-mnist": 6, "mnist": 4, "digits": 40, "cifar10": 20}


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return order.split(batch_size)


@torch.no_grad()
def _accuracy(model: Classifier, data: ImageData, device: str, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for idx in _batches(len(data), batch_size, None):
        logits = model(data.x[idx].to(device))
        correct += int((logits.argmax(1).cpu() == data.y[idx]).sum())
    return correct / len(data)


def fit_classifier(
    train: ImageData,
    test: ImageData,
    settings: TrainSettings,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[Classifier, float]:
    """Train a :class:`Classifier` on ``train`` deterministically; return it with its test accuracy.

    AdamW with a one-cycle learning rate, label smoothing, a fixed data order drawn from a
    generator seeded with ``settings.seed``; the global RNG is seeded inside a forked RNG state,
    so the caller's random state is left untouched. ``settings.bf16`` trains under bf16 autocast
    (off by default: on CPUs without AMX it does not speed this small network up); accuracy and
    features are always computed in float32.
    """
    s = settings.resolved()
    if train.y is None or test.y is None or train.num_classes < 2:
        raise ErrpropError(f"{train.name}: the fd metric trains a classifier, which needs class labels "
                           "(one sub-folder per class under train/ and test/); for unlabelled images use "
                           "--metric fid --inception-weights PATH, or mmd / swd")
    _, c, h, w = train.x.shape
    if h != w:
        raise ErrpropError(f"{train.name}: the classifier needs square images, got {h}×{w}")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(s.seed)
    steps = s.epochs * math.ceil(len(train) / s.batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        model = Classifier(c, h, train.num_classes).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=steps)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
        bar = tqdm(total=steps, desc=f"classifier {s.name}", unit="step", disable=not progress)
        for _ in range(s.epochs):
            model.train()
            for idx in _batches(len(train), s.batch_size, gen):
                x, y = train.x[idx], train.y[idx]
                if s.hflip:
                    x = random_hflip(x, gen)
                x, y = x.to(device), y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.bf16):
                    loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                if bar.n % 50 == 0:  # .item() waits for the device: not every step
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
    model.eval()
    return model, _accuracy(model, test, str(device))


def train_classifier(
    name: str,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    epochs: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[Classifier, float]:
    """Train the feature classifier of a named data set (no caching; see
    :func:`load_or_train_classifier`).

    Args:
        name: a labelled data set of :func:`errprop.data.images.load_images` with square images.
        root: where the data lives (``None``: the data set's default).
        seed: seed of the initialisation, the data order and dropout.
        epochs: passes over the training split (default per data set: Fashion-MNIST 6,
            digits 40).
        device: where to train.
        progress: show a progress bar.

    Returns:
        The trained model (eval mode) and its accuracy on the test split.
    """
    s = TrainSettings(name=name, root=None if root is None else os.fspath(root), seed=seed,
                      epochs=epochs)  # fmt: skip
    train = load_images(name, "train", s.root)
    test = load_images(name, "test", s.root)
    return fit_classifier(train, test, s, device=device, progress=progress)


def _key(settings: TrainSettings) -> str:
    blob = json.dumps(asdict(settings) | {"arch": ARCH_VERSION}, sort_keys=True)
    return f"{settings.name}-seed{settings.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def classifier_dir(settings: TrainSettings) -> Path:
    """The cache folder of the classifier trained with ``settings``."""
    return cache_dir() / "classifiers" / _key(settings.resolved())


def _load_cached(folder: Path) -> tuple[Classifier, dict]:
    try:
        info = json.loads((folder / "classifier.json").read_text())
        model = Classifier(**info["model"])
        model.load_state_dict(load_file(folder / "classifier.safetensors"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise ErrpropError(
            f"the cached classifier in {folder} is unreadable ({e}); delete that folder to "
            "retrain it"
        ) from e
    return model.eval(), info


def load_or_train_classifier(
    name: str,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    epochs: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[Classifier, float]:
    """The cached classifier for (name, root, seed, epochs), trained and saved on first use.

    Saves ``classifier.safetensors`` and ``classifier.json`` (test accuracy, training settings,
    time, torch version) in :func:`classifier_dir`. Same arguments as :func:`train_classifier`.
    Returns the model (eval mode, on ``device``) and its test accuracy.
    """
    s = TrainSettings(name=name, root=None if root is None else os.fspath(root), seed=seed,
                      epochs=epochs).resolved()  # fmt: skip
    folder = classifier_dir(s)
    if (folder / "classifier.json").is_file():
        model, info = _load_cached(folder)
        return model.to(device), float(info["test_accuracy"])
    t0 = time.perf_counter()
    train = load_images(name, "train", s.root)
    test = load_images(name, "test", s.root)
    model, acc = fit_classifier(train, test, s, device=device, progress=progress)
    info = {
        "test_accuracy": acc,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "settings": asdict(s),
        "model": model.config,
        "arch_version": ARCH_VERSION,
        "torch": torch.__version__,
        "n_train": len(train),
        "n_test": len(test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, folder / "classifier.safetensors.tmp")
    os.replace(folder / "classifier.safetensors.tmp", folder / "classifier.safetensors")
    (folder / "classifier.json.tmp").write_text(json.dumps(info, indent=2))
    os.replace(folder / "classifier.json.tmp", folder / "classifier.json")  # written last
    return model, acc


@torch.no_grad()
def compute_stats(
    model: Classifier,
    x: torch.Tensor,
    batch_size: int = 500,
    progress: bool = False,
    meta: dict | None = None,
) -> FeatureStats:
    """:class:`FeatureStats` of the classifier features of images x (N, C, H, W) in [-1, 1].

    Features are computed in float32 on the model's device, in eval mode; ``batch_size`` changes
    the result only through the float32 rounding of the convolutions.
    """
    if x.dim() != 4 or tuple(x.shape[1:]) != (
        model.config["in_channels"], model.config["image_size"], model.config["image_size"]
    ):  # fmt: skip
        raise ErrpropError(
            f"compute_stats: images of shape {tuple(x.shape)} do not fit the classifier, which "
            f"takes (N, {model.config['in_channels']}, {model.config['image_size']}, "
            f"{model.config['image_size']})"
        )
    device = next(model.parameters()).device
    model.eval()
    stats = FeatureStats(meta)
    for idx in tqdm(_batches(x.shape[0], batch_size, None), desc="features", disable=not progress):
        stats.update(model.features(x[idx].to(device, torch.float32)).double())
    return stats


def reference_stats(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    epochs: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FeatureStats:
    """Cached feature statistics of a data split under the data set's classifier (seed ``seed``).

    Args:
        name, root, seed, epochs: pick the classifier, as in :func:`load_or_train_classifier`
            (trained on first use).
        split: ``"train"`` or ``"test"``.
        device: where to compute features.
        progress: show progress bars.

    Returns:
        The :class:`FeatureStats`, also saved as ``.npz`` next to the cached classifier.
    """
    s = TrainSettings(name=name, root=None if root is None else os.fspath(root), seed=seed,
                      epochs=epochs).resolved()  # fmt: skip
    path = classifier_dir(s) / "stats" / f"{split}-all.npz"
    if path.is_file():
        return FeatureStats.load(path)
    model, _ = load_or_train_classifier(name, root, seed, epochs, device=device, progress=progress)
    data = load_images(name, split, s.root)
    x = data.x
    meta = {"data": name, "split": split, "n": x.shape[0], "classifier": _key(s)}
    stats = compute_stats(model, x, progress=progress, meta=meta)
    stats.save(path)
    return stats
