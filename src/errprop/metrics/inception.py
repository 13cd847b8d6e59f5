"""Inception FID / IS / KID for RGB images, on torch-fidelity's InceptionV3 and a local weights file.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow FID Inception
ported to PyTorch, so values agree with the reference FID code); errprop only loads it, feeds it
and computes the metrics from its features:

- FID: :func:`~errprop.metrics.frechet.frechet_distance` on the 2048-d pool features;
- IS: ``exp E_x KL(p(y|x) ‖ p(y))`` on the softmax of the unbiased 1008-way logits, mean and
  standard deviation over ``splits`` consecutive chunks;
- KID: the unbiased MMD² with the cubic polynomial kernel ``k(a, b) = (a·b / d + 1)³`` on the
  2048-d features, mean and standard deviation over random subsets (Bińkowski et al., 2018).

Weights: pass ``inception_weights=PATH`` (CLI ``--inception-weights PATH``), a torch-fidelity
InceptionV3 state dict (``weights-inception-2015-12-05-6726825d.pth``). When a path is given
nothing is downloaded. Without one, the file is taken from torch hub's cache, or downloaded there
when the machine is online; offline, a clear :class:`~errprop.errors.ErrpropError` says what to do.

torch-fidelity's package ``__init__`` imports torchvision (for extractors errprop does not use);
its InceptionV3 module needs only torch, so errprop also works with ``pip install --no-deps
torch-fidelity`` where installing torchvision would replace the installed torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.images import download_timeout
from ..errors import ErrpropError
from .frechet import FeatureStats, frechet_distance

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
_HOW_TO_GET = (
    "Pass inception_weights=PATH (CLI: --inception-weights PATH) with torch-fidelity's InceptionV3 "
    f"weights, downloaded on a machine with internet from {INCEPTION_URL}"
)


def _inception_class() -> type[nn.Module]:
    """torch-fidelity's ``FeatureExtractorInceptionV3``, imported without torchvision if need be."""
    name = "torch_fidelity.feature_extractor_inceptionv3"
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ErrpropError(
            "Inception metrics need torch-fidelity: `pip install torch-fidelity` (or, to keep "
            "your torch, `pip install --no-deps torch-fidelity`)"
        )
    try:
        return importlib.import_module(name).FeatureExtractorInceptionV3
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise
    # Import the sub-module under a bare package object that skips torch_fidelity/__init__.py.
    spec = importlib.util.find_spec("torch_fidelity")
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = package
    try:
        return importlib.import_module(name).FeatureExtractorInceptionV3
    finally:
        del sys.modules["torch_fidelity"]  # a later `import torch_fidelity` tries the real one


def resolve_inception_weights(
    inception_weights: str | os.PathLike | None = None, allow_download: bool = True
) -> Path:
    """The weights file to use: the given path (never downloads), else torch hub's cached copy,
    else a fresh download into torch hub's cache when ``allow_download`` (failing fast offline).

    Raises:
        ErrpropError: the given file does not exist, or no file is cached and none can be
            downloaded (the message says how to get one).
    """
    if inception_weights is not None:
        path = Path(inception_weights).expanduser()
        if not path.is_file():
            raise ErrpropError(f"Inception weights file {path} does not exist. {_HOW_TO_GET}")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    if not allow_download:
        raise ErrpropError(f"no Inception weights given, none cached in {cached}, and downloads are "
                           "disabled. " + _HOW_TO_GET)  # fmt: skip
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with download_timeout():
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except Exception as e:  # urllib raises many kinds; offline machines land here
        raise ErrpropError(f"no Inception weights given, none cached in {cached}, and downloading "
                           f"them failed (offline? {e}). {_HOW_TO_GET}") from e
    return cached


def load_inception(
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = True,
) -> nn.Module:
    """torch-fidelity's InceptionV3 (eval mode, no gradients) with weights from a local file.

    Args:
        inception_weights: path of the weights; see :func:`resolve_inception_weights`.
        device: where to put the network.
        allow_download: when no path is given and nothing is cached, download if online.

    Returns:
        A module mapping uint8 images (N, 3, H, W) to ``(pool features (N, 2048),
        unbiased logits (N, 1008))``.

    Raises:
        ErrpropError: torch-fidelity is missing, or the file is not an InceptionV3 state dict.
    """
    path = resolve_inception_weights(inception_weights, allow_download)
    cls = _inception_class()
    try:  # safe load first: a plain state dict of tensors, nothing executable
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise ErrpropError(
            f"{path} is not a readable PyTorch weights file ({type(e).__name__}). {_HOW_TO_GET}"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ErrpropError(f"{path} does not hold a state dict of tensors. {_HOW_TO_GET}")
    try:
        model = cls("inception-v3-compat", ["2048", "logits_unbiased"],
                    feature_extractor_weights_path=str(path))  # fmt: skip
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shapes
        raise ErrpropError(
            f"{path} is not torch-fidelity InceptionV3 weights ({str(e).splitlines()[0]}). "
            + _HOW_TO_GET
        ) from e
    return model.to(device).eval()


def to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] with C = 1 or 3 -> uint8 (N, 3, H, W) in 0..255."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ErrpropError(
            f"Inception metrics take images (N, 1 or 3, H, W) in [-1, 1], got {tuple(x.shape)}"
        )
    u8 = ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8


@torch.no_grad()
def inception_features(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 50,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool features (N, 2048) and unbiased logits (N, 1008), float32 on the CPU, of images x
    (N, 1 or 3, H, W) in [-1, 1] (quantised to uint8 and resized to 299×299 inside)."""
    device = next(model.parameters()).device
    feats, logits = [], []
    for chunk in tqdm(x.split(batch_size), desc="inception", disable=not progress):
        f, lg = model(to_uint8_rgb(chunk).to(device))
        feats.append(f.float().cpu())
        logits.append(lg.float().cpu())
    return torch.cat(feats), torch.cat(logits)


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp E_x KL(p(y|x) ‖ p(y))``: mean and std over ``splits`` consecutive
    chunks of the logits (N, K) (shuffle beforehand if the order is not random)."""
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ErrpropError(f"inception_score: splits must lie in 1..{n} (the sample count)")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in log_p.tensor_split(splits):
        log_py = torch.logsumexp(chunk, dim=0) - np.log(chunk.shape[0])  # log of the mean p(y|x)
        kl = (chunk.exp() * (chunk - log_py)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    feats1: torch.Tensor | np.ndarray,
    feats2: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD² with the kernel ``(a·b/d + 1)³``, mean and std over ``subsets`` pairs of
    random subsets of ``min(subset_size, n1, n2)`` features each (float64)."""
    a = np.asarray(feats1, dtype=np.float64)
    b = np.asarray(feats2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ErrpropError(f"KID: features must be (n, d) of one d, got {a.shape} and {b.shape}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ErrpropError("KID: need at least 2 feature vectors on each side")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        off = m * (m - 1)
        values.append(
            (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
            - 2.0 * kxy.mean()
        )  # fmt: skip
    return float(np.mean(values)), float(np.std(values))


def inception_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = False,
    model: nn.Module | None = None,
) -> dict[str, float]:
    """FID, IS and KID of ``samples`` against ``reference`` images (N, 1 or 3, H, W) in [-1, 1].

    Args:
        samples, reference: image tensors; IS is computed on ``samples``.
        inception_weights: local weights file (see :func:`load_inception`); ignored if ``model``.
        device, batch_size, progress: feature extraction settings.
        is_splits, kid_subsets, kid_subset_size: IS and KID settings.
        model: an already loaded :func:`load_inception` network, to reuse it.

    Returns:
        ``{"fid", "is_mean", "is_std", "kid_mean", "kid_std", "n_samples", "n_reference"}``.
    """
    if model is None:
        model = load_inception(inception_weights, device)
    f_s, logits = inception_features(model, samples, batch_size, progress)
    f_r, _ = inception_features(model, reference, batch_size, progress)
    st_s, st_r = FeatureStats().update(f_s), FeatureStats().update(f_r)
    is_mean, is_std = inception_score(logits, min(is_splits, len(logits)))
    kid_mean, kid_std = kernel_inception_distance(f_s, f_r, kid_subsets, kid_subset_size)
    return {
        "fid": frechet_distance(st_s.mean, st_s.cov, st_r.mean, st_r.cov),
        "is_mean": is_mean,
        "is_std": is_std,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n_samples": f_s.shape[0],
        "n_reference": f_r.shape[0],
    }
