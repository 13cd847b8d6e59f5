"""The ideal denoiser of a finite point set: an exact reference on image data
(docs/methods.md#ideal-denoiser).

For training points x_1..x_N the empirical distribution ``p̂ = (1/N) Σ_i δ(x − x_i)`` noised to σ is
the mixture ``(1/N) Σ_i N(x_i, σ² I)``, and its exact denoiser ``E[x0 | x̂]`` is the closed form EDM
derives for a finite training set (Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models", Appendix B.3, the ideal denoiser)::

    D*(x̂; σ) = Σ_i w_i x_i,   w = softmax_i(−‖x̂ − x_i‖² / 2σ²).

It needs no training and is exact for p̂, so every image diagnostic gets what a Gaussian mixture
gives: an oracle model that plugs into every sampler. It memorises at small σ (its samples are
training points), so it stands for the data distribution only where σ is large enough
(:func:`errprop.diagnostics.learned.memorisation` measures where).

Computation. ``‖x̂ − x_i‖² = ‖x̂‖² − 2 x̂·x_i + ‖x_i‖²`` and ‖x̂‖² is the same for every i, so it
cancels in the softmax: the logits are ``ℓ_i = (x̂·x_i − ‖x_i‖²/2)/σ²``. The training set is
streamed in chunks with a running log-sum-exp (running max m, Σ e^{ℓ−m}, Σ e^{ℓ−m} x_i, each
rescaled by e^{m_old − m_new} when the max grows), so memory is O(batch × chunk + batch × d)
whatever N. Everything is float64: the cancellation above loses ~7 digits at ‖x̂‖² ≈ 300, which in
float32 would put errors of ~10 nats into the logits at σ = 0.002 on 784-pixel images.

Columns whose weight is below e^{−80} ≈ 1.8·10⁻³⁵ of the running maximum are left out of the
weighted sum (the maximum only grows, so their final relative weight is smaller still: the result
changes by less than N·10⁻³⁵ relative, far below float64's 10⁻¹⁶). At small σ almost every column
is negligible and this skips most of the second matrix product.
"""

from __future__ import annotations

import math

import torch

from ..denoisers import as_sigma
from ..errors import ErrpropError
from ..noise import Noise

#: Weights below e^{−PRUNE} of the running maximum are left out of the weighted sum.
PRUNE = 80.0


class EmpiricalDenoiser:
    """``D*(x̂, σ)`` of the empirical distribution of ``points`` (module docstring).

    A :data:`~errprop.samplers.Denoise`: ``den(x, sigma)`` with x of shape (n, *shape) and σ a
    float or a (n,) tensor; returns a tensor shaped like x in x's dtype. σ = 0 gives the nearest
    training point (the limit σ → 0).

    Args:
        points: (N, *shape) training samples (e.g. images in [−1, 1]); kept as given (float32 is
            exact for 8-bit images), cast to float64 chunk by chunk.
        chunk: training points per chunk of the streaming log-sum-exp.
        query_batch: queries per pass (bounds memory at query_batch × chunk float64 logits).
    """

    def __init__(self, points: torch.Tensor, chunk: int = 4096, query_batch: int = 512) -> None:
        if not torch.is_tensor(points) or points.ndim < 2 or len(points) < 1:
            raise ErrpropError("EmpiricalDenoiser: points must be a tensor (N, ...) with N ≥ 1")
        if chunk < 1 or query_batch < 1:
            raise ErrpropError("EmpiricalDenoiser: chunk and query_batch must be ≥ 1")
        self.points = points
        self.shape = tuple(points.shape[1:])
        self.chunk, self.query_batch = int(chunk), int(query_batch)
        self._flat = points.reshape(len(points), -1)
        self._half_sq = 0.5 * self._flat.double().pow(2).sum(1)  # ‖x_i‖²/2, float64

    def __len__(self) -> int:
        return len(self.points)

    @property
    def dim(self) -> int:
        return self._flat.shape[1]

    def to(self, device) -> EmpiricalDenoiser:
        """The same denoiser with its points on ``device``."""
        return EmpiricalDenoiser(self.points.to(device), self.chunk, self.query_batch)

    # ----------------------------------------------------------------------------- draws
    def sample(self, noise: Noise) -> torch.Tensor:
        """One uniform draw from the points per stream of ``noise`` (the empirical distribution)."""
        u = noise.rand(1, dtype=torch.float64)[:, 0].cpu()
        idx = (u * len(self)).long().clamp(max=len(self) - 1)
        return self.points[idx.to(self.points.device)]

    # ----------------------------------------------------------------------------- the denoiser
    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return self.denoise(x, sigma)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``D*(x̂, σ)``, shaped like ``x``, in x's dtype."""
        return self.denoise_with_weights(x, sigma)[0]

    @torch.no_grad()
    def denoise_with_weights(self, x: torch.Tensor, sigma: float | torch.Tensor
                             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``D*(x̂, σ)`` and, per query, ``w_max`` (the largest weight: 1 when D* returns a single
        training point) and ``ess = 1/Σ w_i²`` (the effective number of points averaged)."""
        if tuple(x.shape[1:]) != self.shape:
            raise ErrpropError(
                f"EmpiricalDenoiser: queries of shape {tuple(x.shape[1:])}, points {self.shape}")
        s = as_sigma(sigma, x).to(torch.float64)
        q = x.reshape(len(x), -1).to(device=self._flat.device, dtype=torch.float64)
        out = torch.empty_like(q)
        w_max = torch.ones(len(q), dtype=torch.float64, device=q.device)
        ess = torch.ones(len(q), dtype=torch.float64, device=q.device)
        s = s.to(q.device)
        zero = s == 0
        if zero.any():  # the σ → 0 limit: the nearest point, with all the weight
            out[zero] = self._flat.double()[self.nearest(q[zero])[1]]
        for a in range(0, len(q), self.query_batch):
            rows = torch.arange(a, min(a + self.query_batch, len(q)), device=q.device)
            rows = rows[~zero[rows]]
            if len(rows):
                out[rows], w_max[rows], ess[rows] = self._stream(q[rows], s[rows])
        stats = {"w_max": w_max, "ess": ess}
        return out.to(device=x.device, dtype=x.dtype).reshape(x.shape), stats

    def _stream(self, q: torch.Tensor, s: torch.Tensor):
        """The streaming log-sum-exp over chunks of the points for queries q (b, d), σ s (b,)."""
        inv = (1.0 / s**2)[:, None]
        m = torch.full((len(q), 1), -math.inf, dtype=torch.float64, device=q.device)
        tot = torch.zeros_like(m)  # Σ e^{ℓ − m}
        tot2 = torch.zeros_like(m)  # Σ e^{2(ℓ − m)}, for the effective number of points
        acc = torch.zeros_like(q)  # Σ e^{ℓ − m} x_i
        for c in range(0, len(self._flat), self.chunk):
            xc = self._flat[c:c + self.chunk].to(torch.float64)
            logits = (q @ xc.T - self._half_sq[c:c + self.chunk]) * inv
            m_new = torch.maximum(m, logits.max(1, keepdim=True).values)
            scale = torch.exp(m - m_new)  # e^{−inf} = 0 on the first chunk
            p = torch.exp(logits - m_new)
            tot = tot * scale + p.sum(1, keepdim=True)
            tot2 = tot2 * scale**2 + (p * p).sum(1, keepdim=True)
            keep = (p > math.exp(-PRUNE)).any(0)
            if int(keep.sum()) * 2 < len(keep):  # most columns negligible: a narrower product
                acc = acc * scale + p[:, keep] @ xc[keep]
            else:
                acc = acc * scale + p @ xc
            m = m_new
        return acc / tot, (1.0 / tot)[:, 0], (tot**2 / tot2)[:, 0]

    # ----------------------------------------------------------------------------- neighbours
    @torch.no_grad()
    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Euclidean distance (float64) to the nearest point and its index, per query (n,)."""
        q = x.reshape(len(x), -1).to(device=self._flat.device, dtype=torch.float64)
        best = torch.full((len(q),), math.inf, dtype=torch.float64, device=q.device)
        idx = torch.zeros(len(q), dtype=torch.long, device=q.device)
        half_q = 0.5 * q.pow(2).sum(1)
        for c in range(0, len(self._flat), self.chunk):
            xc = self._flat[c:c + self.chunk].to(torch.float64)
            d2 = 2 * (half_q[:, None] - q @ xc.T + self._half_sq[c:c + self.chunk])
            v, i = d2.min(1)
            better = v < best
            best, idx = torch.where(better, v, best), torch.where(better, i + c, idx)
        return best.clamp_min(0).sqrt().to(x.device), idx.to(x.device)
