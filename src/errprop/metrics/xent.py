"""Excess cross-entropy of samples under an exact density, with its robust companions.

``excess = E_samples[−log p] − E_data[−log p]`` (nats) is 0 for a perfect sampler up to sampling
noise. Its mean is dominated by a few far-off samples — on the ring of 8, 98 % of the DDIM-100
excess came from 1 % of the samples and three sample seeds of one checkpoint gave 89 / 35 / 457
nats — so every report carries the median excess, the 1 %-trimmed mean and the fraction of
samples less likely than every reference point beside it.
"""

from __future__ import annotations

import torch

TRIM = 0.01


def excess_cross_entropy(nll: torch.Tensor, ref_nll: torch.Tensor) -> dict[str, float]:
    """Summaries of ``nll`` (−log p of samples) against ``ref_nll`` (of data from p), in nats.

    ``mean`` and ``median`` are differences of means and of medians; ``trimmed`` drops the
    ``TRIM`` largest values of each side first; ``outliers`` is the fraction of samples with
    −log p above the largest of the reference set.
    """
    nll, ref_nll = nll.double().flatten(), ref_nll.double().flatten()

    def trimmed(v: torch.Tensor) -> torch.Tensor:
        keep = max(1, int(len(v) * (1 - TRIM)))
        return v.sort().values[:keep].mean()

    return {"mean": float(nll.mean() - ref_nll.mean()),
            "median": float(nll.median() - ref_nll.median()),
            "trimmed": float(trimmed(nll) - trimmed(ref_nll)),
            "outliers": float((nll > ref_nll.max()).double().mean())}
