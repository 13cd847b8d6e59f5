"""Every random stream's key, in one table, and the data draws several modules share.

errprop draws all its randomness from per-sample streams (:mod:`errprop.noise`) named by a seed and
a key, so that one use never shifts another's draws: a sample never depends on its batch, and a
measurement never depends on which others ran. The values are fixed — changing one changes the
numbers of every existing seed. ``KEY_TRAIN_STEP`` and ``KEY_STEP`` share a number but never a
stream: the first is always hashed with the training step as a further key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .data.gmm import GaussianMixture
from .errors import ErrpropError
from .noise import Noise

# training (errprop.train, errprop.builders)
KEY_LOSS = 0x1055  # per-sample noise of the training loss (σ, ε, SA's windows, EP's rollouts)
KEY_TRAIN_STEP = 0x57E9  # the torch seed of training step k (dropout), with k as a further key
KEY_INIT = 0x1417  # the initial weights
KEY_BATCH = 0xDA7A  # x0 of training sample j drawn from a mixture
KEY_PERM = 0x9E4B  # the epoch permutation of an image data set
KEY_FLIP = 0xF119  # random horizontal flips
# data
KEY_MIXTURE = 0x6D6D  # GaussianMixture.sample_n
# measurements (errprop.diagnostics, errprop.analytic_dpm, errprop.optimal_grid, errprop.study)
KEY_DATA = 0xD1A6  # x0 draws of the reference data
KEY_DATA_NOISE = 0xD1A7  # the noise that takes reference data to σ
KEY_FLOOR = 0xF100  # the independent second data set behind every floor
KEY_FLOOR_NOISE = 0xF101
KEY_STEP = 0x57E9  # draws from p_θ(x̂'|x̂) in the modular error
KEY_START = 0x5EED  # the standard normal w of the budget's chain starts
KEY_START_DATA = 0x5EEE  # the x0 of the budget's exact start x0 + σ_max w
KEY_GAMMA = 0x6A3A  # Analytic-DPM's Γ estimate
# a mixture's reference set and the floor's second data set (evaluate, study, optimal_grid) are
# GaussianMixture.sample_n(n, seed + offset)
REF_OFFSET, FLOOR_OFFSET = 10_000, 20_000


def reference_sets(mixture: GaussianMixture, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference data set that samples are scored against and an independent second one that
    gives the floor (the same score between two data sets at the same n)."""
    return mixture.sample_n(n, seed=seed + REF_OFFSET), mixture.sample_n(n, seed=seed + FLOOR_OFFSET)


def default_dtype(denoiser) -> torch.dtype:
    """float64 for the exact mixture denoiser (its internals are float64), float32 otherwise."""
    return torch.float64 if isinstance(denoiser, GaussianMixture) else torch.float32


def draw_data(data: GaussianMixture | torch.Tensor, n: int, seed: int, key: int,
              dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """``n`` data samples x0: exact draws from a mixture, or a seeded subset of a data tensor.

    For a tensor, the ``key`` selects a disjoint block of one seeded permutation (the reference
    set and the floor set never share a sample); raises if the tensor holds too few samples.
    """
    if isinstance(data, GaussianMixture):
        return data.sample(Noise.from_seed(seed, n, key=(key,))).to(device=device, dtype=dtype)
    if not torch.is_tensor(data) or data.ndim < 2:
        raise ErrpropError("diagnostics: data must be a GaussianMixture or a tensor (N, ...) of x0")
    block = {KEY_DATA: 0, KEY_FLOOR: 1}.get(key, 0)
    if len(data) < (block + 1) * n:
        raise ErrpropError(
            f"diagnostics: need {(block + 1) * n} data samples (n = {n} per set"
            f"{' and a disjoint floor set' if block else ''}), the data holds {len(data)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[block * n:(block + 1) * n]
    return data[idx].to(device=device, dtype=dtype)


def batched(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int | None) -> torch.Tensor:
    """``cat(fn(slice))`` over consecutive slices of ``range(n)`` of at most ``batch_size``."""
    bs = n if not batch_size else batch_size
    return torch.cat([fn(slice(a, min(a + bs, n))) for a in range(0, n, bs)])
