"""Small helpers shared by the diagnostics: grids as JSON, spaces, data draws, JSON conversion.

Stream keys: every random use in the diagnostics draws from its own :class:`~errprop.noise.Noise`
streams, ``Noise.from_seed(seed, n, key=(KEY_…,))``, so that one measurement never shifts the
randomness of another. The model chain itself uses ``Noise.from_seed(seed, n)`` (no key), the
streams :func:`errprop.generate.generate` uses: the chain's final samples are the samples that
``errprop sample`` would draw with the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..noise import Noise
from ..process import Process, VPProcess

KEY_DATA = 0xD1A6  # x0 draws of the reference data
KEY_DATA_NOISE = 0xD1A7  # the noise that takes reference data to σ
KEY_FLOOR = 0xF100  # the independent second data set behind every floor
KEY_FLOOR_NOISE = 0xF101
KEY_STEP = 0x57E9  # draws from p_θ(x̂'|x̂) in the modular error
KEY_START = 0x5EED  # the standard normal w of the budget's chain starts
KEY_START_DATA = 0x5EEE  # the x0 of the budget's exact start x0 + σ_max w


def grid_fields(process: Process, sigmas: Sequence[float] | torch.Tensor) -> dict:
    """``{"sigma": [...], "t": [...] | None}`` for a list of σ levels.

    ``t`` is given for a discrete VP process only: the process's (fractional) timestep index
    ``t = 0..T−1`` (paper step ``t + 1``), and −1 at σ = 0 (the data, paper step 0).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    out: dict = {"sigma": [float(v) for v in s]}
    if isinstance(process, VPProcess):
        pos = s > 0
        t = torch.full_like(s, -1.0)
        if pos.any():
            t[pos] = process.t(s[pos])
        out["t"] = [float(v) for v in t]
    else:
        out["t"] = None
    return out


SPACES = ("scaled", "unscaled")


def to_space(process: Process, x: torch.Tensor, sigma: float, space: str) -> torch.Tensor:
    """x̂ as it is compared: ``scaled`` is ``x_t = s(σ) x̂`` (the model's input space, where the VP
    prior is N(0, I)); ``unscaled`` is x̂ itself. The two agree for VE processes and at σ = 0."""
    if space == "unscaled":
        return x
    if space == "scaled":
        return x * float(process.scale(torch.tensor(sigma, dtype=torch.float64)))
    raise ErrpropError(f"diagnostics: unknown space {space!r}; choose one of {SPACES}")


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


def data_dim(data: GaussianMixture | torch.Tensor) -> tuple[int, ...]:
    """The shape of one sample x0."""
    return (data.dim,) if isinstance(data, GaussianMixture) else tuple(data.shape[1:])


def batched(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int | None) -> torch.Tensor:
    """``cat(fn(slice))`` over consecutive slices of ``range(n)`` of at most ``batch_size``."""
    bs = n if not batch_size else batch_size
    return torch.cat([fn(slice(a, min(a + bs, n))) for a in range(0, n, bs)])


def to_jsonable(obj):
    """Tensors and arrays → lists, numpy scalars → floats, non-finite floats → None (strict
    JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if torch.is_tensor(obj):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
