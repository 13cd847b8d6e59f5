"""MMD² between named sample sets from one kernel matrix, with a bootstrap over samples.

The chains' split (:mod:`errprop.diagnostics.learned`) compares four sets at every grid point —
the model chain C, the exact-denoiser chain A, data q and a second data set q' (the floor) — and
needs intervals over chains. Building the kernel matrix of the union once makes each MMD² (and
each bootstrap resample of it) a few block means instead of a new kernel evaluation.

The kernel is :func:`errprop.metrics.mmd.mmd2`'s multi-bandwidth Gaussian with one base bandwidth
for every pair (the data set's mean off-diagonal squared distance, as the error budget uses), so
that √MMD² estimates a metric between the distributions.

Two estimators: the biased V-statistic of :func:`~errprop.metrics.mmd.mmd2` (``unbiased=False``,
what the cumulative error reports, with its floor), and the unbiased U-statistic, which leaves out
the pairs of a sample with itself — by *original* index, so that a bootstrap resample, which
repeats samples, is not pushed up by the k(x, x) of its repeats (the biased estimator would put a
bootstrap interval above its own point estimate).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..metrics.mmd import MULTIPLIERS


def mean_sq_distance(y: torch.Tensor) -> float:
    """The mean off-diagonal squared distance of a set (the kernel's base bandwidth)."""
    y = y.flatten(1).double()
    d2 = torch.cdist(y, y) ** 2
    n = len(y)
    return float(d2.sum() / (n * (n - 1)))


class KernelSets:
    """The kernel matrix of the union of named sets (each (n_k, ...)), float64.

    Args:
        sets: ``{name: samples}``.
        bandwidth: the base bandwidth β of ``k(a, b) = Σ_m exp(−‖a − b‖²/(β m))``.
    """

    def __init__(self, sets: Mapping[str, torch.Tensor], bandwidth: float) -> None:
        z = torch.cat([s.flatten(1).double() for s in sets.values()])
        sq = (z * z).sum(1)
        d2 = (sq[:, None] + sq[None] - 2 * z @ z.T).clamp_min(0)
        self.k = sum(torch.exp(-d2 / (bandwidth * m)) for m in MULTIPLIERS).numpy()
        self.offset, start = {}, 0
        for name, s in sets.items():
            self.offset[name] = (start, len(s))
            start += len(s)

    def _rows(self, name: str, idx: np.ndarray | None) -> np.ndarray:
        start, n = self.offset[name]
        return start + (np.arange(n) if idx is None else idx)

    def mmd2(self, a: str, b: str, ia: np.ndarray | None = None,
             ib: np.ndarray | None = None, unbiased: bool = False, paired: bool = False) -> float:
        """MMD² between sets a and b (optionally resampled: row indices ia, ib into each set).

        ``paired``: sample i of a and sample i of b are dependent (two chains sharing their start
        and noise); the unbiased estimate then also leaves out the cross pairs (a_i, b_i), whose
        kernel is high because they are paired, not because the distributions agree.
        """
        ra, rb = self._rows(a, ia), self._rows(b, ib)
        cross = self.k[np.ix_(ra, rb)]
        if unbiased and paired:
            ia_, ib_ = ra - self.offset[a][0], rb - self.offset[b][0]
            cross_mean = float(cross[ia_[:, None] != ib_[None, :]].mean())
        else:
            cross_mean = float(cross.mean())
        return float(self._within(ra, unbiased) - 2 * cross_mean + self._within(rb, unbiased))

    def _within(self, rows: np.ndarray, unbiased: bool) -> float:
        block = self.k[np.ix_(rows, rows)]
        if not unbiased:
            return float(block.mean())
        other = rows[:, None] != rows[None, :]  # pairs of two different original samples
        return float(block[other].mean())

    def size(self, name: str) -> int:
        return self.offset[name][1]
