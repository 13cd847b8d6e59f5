"""Small helpers shared by the diagnostics: grids as JSON, spaces, data draws, JSON conversion.

Stream keys: every random use in the diagnostics draws from its own :class:`~errprop.noise.Noise`
streams, ``Noise.from_seed(seed, n, key=(KEY_…,))``, so that one measurement never shifts the
randomness of another. The model chain itself uses ``Noise.from_seed(seed, n)`` (no key), the
streams :func:`errprop.generate.generate` uses: the chain's final samples are the samples that
``errprop sample`` would draw with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..process import Process, VPProcess


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


def data_dim(data: GaussianMixture | torch.Tensor) -> tuple[int, ...]:
    """The shape of one sample x0."""
    return (data.dim,) if isinstance(data, GaussianMixture) else tuple(data.shape[1:])
