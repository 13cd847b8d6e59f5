"""Fréchet distance between Gaussians fitted to features, and a streaming feature accumulator.

``FD = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}`` (Fréchet / 2-Wasserstein distance between
N(μ1, Σ1) and N(μ2, Σ2); FID when the features are Inception's). The trace term is computed from
the symmetric form: with R = Σ1^{1/2}, ``(Σ1 Σ2)^{1/2}`` is similar to ``(R Σ2 R)^{1/2}``, so
``tr (Σ1 Σ2)^{1/2} = Σ_i √λ_i(R Σ2 R)``; both steps are symmetric eigen-decompositions whose
eigenvalues below rounding level (d·eps·λ_max) are set to 0, and the second one is restricted to
the range of Σ1 (cheap when Σ1 has low rank). This stays real and stable for singular or
near-singular covariances (fewer samples than feature dimensions), where
``scipy.linalg.sqrtm(Σ1 @ Σ2)`` returns complex values and needs an ad-hoc diagonal offset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ErrpropError


def _psd_eigvals(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding noise removed: values below d·eps·λ_max -> 0.

    √λ amplifies noise near 0 (an error ε becomes √ε), so noise-level eigenvalues of a singular
    matrix would otherwise add O(√eps) each to the trace term.
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Args:
        mu1, mu2: (d,) means.
        sigma1, sigma2: (d, d) covariances (symmetric positive semi-definite; symmetrised here).

    Returns:
        ``‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}`` as a Python float, clipped at 0
        (rounding can otherwise give tiny negative values for identical inputs).

    Raises:
        ErrpropError: shapes disagree or an input is not finite.
    """
    arrays = []
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ErrpropError(f"frechet_distance: {name} has non-finite values (NaN or inf)")
        arrays.append(a)
    m1, s1, m2, s2 = arrays
    d = m1.shape[0] if m1.ndim == 1 else -1
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ErrpropError(
            "frechet_distance: expected means (d,) and covariances (d, d) of one d; got "
            f"mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}"
        )
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    # Σ1 = V diag(w) V^T, so R Σ2 R has the eigenvalues of B^T Σ2 B with B = V diag(√w), whose
    # zero columns (the null space of Σ1) can be dropped: (k, k) with k = rank Σ1.
    w, v = np.linalg.eigh(s1)
    w = _psd_eigvals(w)
    b = v[:, w > 0] * np.sqrt(w[w > 0])
    m = b.T @ s2 @ b
    eig = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(np.sqrt(_psd_eigvals(eig)).sum())
    diff = m1 - m2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


class FeatureStats:
    """Streaming mean and covariance of feature vectors, accumulated in float64.

    Keeps the count, the sum and the sum of outer products of ``f − c``, where the shift ``c`` is
    the first feature vector ever seen (this avoids cancellation when the mean is large against the
    spread). The result does not depend on how the features were split into batches, up to
    float64 rounding of the sums (≈1e-15 relative).

    >>> stats = FeatureStats()
    >>> for batch in loader:                       # doctest: +SKIP
    ...     stats.update(classifier.features(batch))
    >>> stats.mean, stats.cov, stats.n             # doctest: +SKIP

    Args:
        meta: free-form JSON-serialisable description (feature extractor, data set, split, …),
            saved with the statistics.
    """

    def __init__(self, meta: dict | None = None) -> None:
        self.meta: dict = dict(meta or {})
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    @property
    def dim(self) -> int | None:
        """Feature dimension d (``None`` before the first update)."""
        return None if self._shift is None else self._shift.shape[0]

    def update(self, feats: np.ndarray | torch.Tensor) -> FeatureStats:
        """Add a batch of features (n, d) (any float dtype; converted to float64). Returns self."""
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().numpy()
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2:
            raise ErrpropError(f"FeatureStats.update: expected features (n, d), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ErrpropError("FeatureStats.update: features contain NaN or inf")
        if f.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = f[0].copy()
            self._sum = np.zeros_like(self._shift)
            self._outer = np.zeros((f.shape[1], f.shape[1]))
        elif f.shape[1] != self.dim:
            raise ErrpropError(
                f"FeatureStats.update: features of dimension {f.shape[1]}, expected {self.dim}"
            )
        g = f - self._shift
        self._sum += g.sum(axis=0)
        self._outer += g.T @ g
        self.n += f.shape[0]
        return self

    def _check(self, need: int) -> None:
        if self.n < need:
            raise ErrpropError(
                f"FeatureStats: {self.n} feature vector(s) seen, need at least {need}"
            )

    @property
    def mean(self) -> np.ndarray:
        """(d,) float64 mean."""
        self._check(1)
        return self._shift + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """(d, d) float64 unbiased covariance (divides by n − 1, as ``numpy.cov``)."""
        self._check(2)
        m = self._sum / self.n
        cov = (self._outer - self.n * np.outer(m, m)) / (self.n - 1)
        return 0.5 * (cov + cov.T)

    def save(self, path: str | os.PathLike) -> None:
        """Write the accumulator (it can keep accumulating after :meth:`load`) to a ``.npz``."""
        self._check(1)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            n=np.int64(self.n),
            shift=self._shift,
            sum=self._sum,
            outer=self._outer,
            mean=self.mean,
            meta=np.array(json.dumps(self.meta)),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        """Read statistics written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                stats = cls(json.loads(str(z["meta"])))
                stats.n = int(z["n"])
                stats._shift, stats._sum, stats._outer = z["shift"], z["sum"], z["outer"]
        except (OSError, KeyError, ValueError) as e:
            raise ErrpropError(
                f"cannot read feature statistics {path} ({e}); delete the file to recompute it"
            ) from e
        d = stats._shift.shape
        if len(d) != 1 or stats._sum.shape != d or stats._outer.shape != d * 2 or stats.n < 1:
            raise ErrpropError(f"{path}: inconsistent feature statistics; delete it to recompute")
        return stats

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, meta={self.meta})"
