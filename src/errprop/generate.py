"""Draw samples from a denoiser: grid + step function + per-sample noise streams, in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm import tqdm

from .errors import ErrpropError
from .grids import make_grid
from .noise import Noise
from .process import Process
from .samplers import Callback, prior, sample, step_options


def run_chains(
    denoiser,
    process: Process,
    sigmas: torch.Tensor,
    n: int,
    shape: tuple[int, ...],
    *,
    seed: int = 0,
    step: str | Callable = "ddim",
    options: dict | None = None,
    record: Sequence[int] | None = None,
    start: torch.Tensor | None = None,
    batch_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
    progress: bool = False,
    desc: str = "sample",
) -> dict[int, torch.Tensor]:
    """Run ``n`` sampler chains over ``sigmas`` in batches and keep their states at the grid points
    ``record`` (default: all) — the one batched driver of :func:`errprop.samplers.sample`, behind
    :func:`generate` and the diagnostics' recorded chains.

    Chain i uses the per-sample stream ``(seed, i)`` (:class:`~errprop.noise.Noise`) for its start
    and its injected noise, so every state depends on (seed, i) only, never on batching or on
    ``record``. ``start``: x̂ at σ_0, (n, *shape); default the prior ``N(0, prior_std(σ_0)² I)``.
    ``options`` are the step function's own keyword options.

    Returns:
        ``{j: x̂_j}`` (state after j steps, 0 = the start), each (n, *shape) on the CPU, in x̂ space.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    keep = set(range(len(sigmas)) if record is None else record)
    if not keep or not all(0 <= j < len(sigmas) for j in keep):
        raise ErrpropError(f"chains: record {sorted(keep)} must be grid points in 0..{len(sigmas) - 1}")
    streams = Noise.from_seed(seed, n, device=device)
    bs = batch_size or n
    parts: dict[int, list[torch.Tensor]] = {j: [] for j in keep}
    for a in tqdm(range(0, n, bs), disable=not progress, desc=desc, unit="batch"):
        noise = streams[a:a + bs]
        if start is None:
            x = prior(process, float(sigmas[0]), noise, shape, dtype)
        else:
            x = start[a:a + bs].to(device=device, dtype=dtype)
        if 0 in keep:
            parts[0].append(x.cpu())

        def record_step(info, parts=parts):
            if info["i"] + 1 in keep:
                parts[info["i"] + 1].append(info["x_next"].cpu())
            if callback is not None:
                callback(info)

        sample(denoiser, x, sigmas, noise, step, record_step, **(options or {}))
    return {j: torch.cat(v) for j, v in sorted(parts.items())}


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
    last = len(sigmas) - 1
    return run_chains(denoiser, process, sigmas, n, shape, seed=seed, step=sampler, options=kwargs,
                      record=[last], batch_size=batch_size, device=device, callback=callback,
                      progress=progress, desc=f"sample {sampler}-{steps}")[last].float()
