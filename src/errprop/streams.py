"""The data draws several measurements share: reference sets, floors, seeded subsets of a tensor.

Their streams' keys are in :mod:`errprop.keys`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .data.gmm import GaussianMixture
from .errors import ErrpropError
from .keys import FLOOR_OFFSET, KEY_DATA, KEY_FLOOR, REF_OFFSET
from .noise import Noise


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
