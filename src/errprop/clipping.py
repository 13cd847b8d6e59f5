"""Clipping of the x̂0 estimate inside a sampler step, as diffusers does it.

``clip`` is diffusers' ``clip_sample`` (a range: x̂0 clamped to [−clip, clip]) or its
``thresholding`` (a :class:`DynamicThreshold`); None leaves x̂0 unchanged. Every step function of
:mod:`errprop.samplers` and :mod:`errprop.multistep` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DynamicThreshold:
    """Dynamic thresholding of x̂0 (Saharia et al. 2022, Imagen; diffusers' ``thresholding=True``).

    Per sample, s = the ``ratio`` quantile of |x̂0| clamped to [1, ``max_value``]; x̂0 is clamped to
    [−s, s] and divided by s (so values beyond the data range are pulled in, not cut off).
    """

    ratio: float = 0.995
    max_value: float = 1.0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        flat = x0.reshape(len(x0), -1)
        work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()  # quantile needs it
        s = torch.quantile(work.abs(), self.ratio, dim=1).clamp(1, self.max_value)[:, None]
        return (work.clamp(-s, s) / s).to(x0.dtype).reshape(x0.shape)


Clip = float | DynamicThreshold | None


def apply_clip(denoised: torch.Tensor, clip: Clip) -> torch.Tensor:
    """diffusers' ``clip_sample`` (a range: x̂0 clamped to [−clip, clip]) or ``thresholding`` (a
    :class:`DynamicThreshold`); None leaves x̂0 unchanged."""
    if clip is None:
        return denoised
    if isinstance(clip, DynamicThreshold):
        return clip(denoised)
    return denoised.clamp(-clip, clip)
