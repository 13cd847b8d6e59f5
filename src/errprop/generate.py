"""Draw samples from a denoiser: grid + step function + per-sample noise streams, in batches."""

from __future__ import annotations

import torch
from tqdm import tqdm

from .grids import make_grid
from .noise import Noise
from .process import Process
from .samplers import Callback, prior, sample, step_options


def generate(
    denoiser,
    process: Process,
    shape: tuple[int, ...],
    n: int,
    *,
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 50,
    grid: str = "uniform",
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
    progress: bool = False,
    grid_options: dict | None = None,
    **options,
) -> torch.Tensor:
    """``n`` samples (n, *shape) on the CPU; sample i depends only on (seed, i), never on batching.

    ``options`` are user-level sampler settings (``eta``, ``variance``, ``s_churn``);
    ``grid_options`` go to :func:`errprop.grids.make_grid` (``rho``, ``spacing``, ``sigmas``).
    """
    sigmas = make_grid(grid, process, steps, **(grid_options or {}))
    kwargs = step_options(sampler, len(sigmas) - 1, process, **options)
    streams = Noise.from_seed(seed, n, device=device)
    out = []
    for a in tqdm(range(0, n, batch_size), disable=not progress, desc=f"sample {sampler}-{steps}",
                  unit="batch"):
        noise = streams[a:a + batch_size]
        x = prior(process, float(sigmas[0]), noise, shape)
        out.append(sample(denoiser, x, sigmas, noise, sampler, callback, **kwargs).float().cpu())
    return torch.cat(out)
