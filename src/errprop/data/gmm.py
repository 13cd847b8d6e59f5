"""Gaussian mixtures with exact ground truth at every noise level (docs/methods.md#gaussian-mixtures).

For ``p_data = Σ_k π_k N(μ_k, Σ_k)`` the noised variable ``x̂ = x0 + σ n`` is the mixture
``Σ_k π_k N(μ_k, Σ_k + σ² I)`` (VP: ``x_t = s x̂``, so ``log q_t(x_t) = log p_σ(x_t/s) − d log s``).
Everything below is closed form: density, score, the exact denoiser ``E[x0 | x̂]`` (which makes the
mixture an oracle *model* that plugs into every sampler), and the posterior of x0 given x̂, which
gives the exact one-step reverse transition q(x̂' | x̂) used by the diagnostics.
Internals run in float64; results come back in the input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..denoisers import as_sigma
from ..errors import ErrpropError
from ..keys import KEY_MIXTURE
from ..noise import Noise

PRESETS = ("ring8", "grid25", "random")


@dataclass
class Posterior:
    """x0 | x̂ ~ Σ_k r_k N(m_k, V_k): responsibilities (n, K), means (n, K, d), and the covariances
    V_k = Q_k diag(v) Q_kᵀ kept factored — eigenvectors ``basis`` (K, d, d), eigenvalues ``eig``
    (n, K, d) — so that high dimensions never hold n·K·d² numbers unless ``covs`` is asked for."""

    resp: torch.Tensor
    means: torch.Tensor
    basis: torch.Tensor
    eig: torch.Tensor

    @property
    def covs(self) -> torch.Tensor:
        """V_k per sample (n, K, d, d)."""
        Q = self.basis[None]
        return (Q * self.eig[:, :, None, :]) @ Q.transpose(-1, -2)


def off_mode_radius(dim: int) -> float:
    """The Mahalanobis radius an exact draw of a D-dimensional Gaussian exceeds with probability e⁻⁸:
    √(χ²_D quantile at 1 − e⁻⁸); exactly 4 at D = 2 (χ²_2 is exponential with mean 2)."""
    from scipy.stats import chi2

    return 4.0 if dim == 2 else math.sqrt(float(chi2.isf(math.exp(-8), dim)))


class GaussianMixture:
    """A d-dimensional Gaussian mixture ``Σ_k π_k N(μ_k, Σ_k)`` with exact noised marginals.

    Args:
        weights: (K,) mixture weights π (normalised here).
        means: (K, d) component means μ.
        covs: (K, d, d) component covariances Σ (symmetric positive definite).
    """

    def __init__(self, weights, means, covs) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = self.weights / self.weights.sum()
        self._cum_weights = self.weights.cumsum(0)  # the component of a uniform draw (sample)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        K, d = self.means.shape
        if self.weights.shape != (K,) or self.covs.shape != (K, d, d):
            raise ErrpropError(
                f"GaussianMixture: shapes disagree: weights {tuple(self.weights.shape)}, "
                f"means {(K, d)}, covs {tuple(self.covs.shape)}"
            )
        self._chol = torch.linalg.cholesky(self.covs)
        self._mean_rows, self._chol_t = list(self.means), list(self._chol.transpose(1, 2))  # for sample
        self._shared_chol_t = self._chol_t[0] if bool((self._chol == self._chol[0]).all()) else None
        # Σ_k = Q_k diag(λ_k) Q_kᵀ: every noised covariance Σ_k + σ² I shares Q_k, so the closed forms
        # below cost O(n·K·d²) time and O(n·K·d) memory at any σ per sample (no per-sample d×d solves).
        self._lam, self._Q = torch.linalg.eigh((self.covs + self.covs.transpose(1, 2)) / 2)
        if (self._lam <= 0).any():
            raise ErrpropError("GaussianMixture: a component covariance is not positive definite")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def ring8(cls, radius: float = 1.0, std: float = 0.05) -> GaussianMixture:
        """8 equal isotropic components on a circle (the usual 2-D mode-coverage test)."""
        a = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = radius * torch.stack([a.cos(), a.sin()], 1)
        return cls(torch.ones(8), means, std**2 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2))

    @classmethod
    def grid25(cls, spacing: float = 0.5, std: float = 0.05) -> GaussianMixture:
        """A 5×5 grid of equal isotropic components centred at 0."""
        g = (torch.arange(5, dtype=torch.float64) - 2) * spacing
        means = torch.cartesian_prod(g, g)
        return cls(torch.ones(25), means, std**2 * torch.eye(2, dtype=torch.float64).expand(25, 2, 2))

    @classmethod
    def random(cls, dim: int, components: int = 8, seed: int = 0, scale: float = 1.0) -> GaussianMixture:
        """A random mixture in ``dim`` dimensions: means ~ N(0, scale²/dim · I)·√dim-ish spread,
        random anisotropic covariances with eigenvalues in [0.01, 0.1]·scale², Dirichlet-free
        weights in [0.5, 1.5] (normalised). Deterministic in ``seed``."""
        g = torch.Generator().manual_seed(seed)
        means = scale * torch.randn(components, dim, generator=g, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(components, dim, dim, generator=g, dtype=torch.float64))
        eig = scale**2 * (0.01 + 0.09 * torch.rand(components, dim, generator=g, dtype=torch.float64))
        covs = q @ torch.diag_embed(eig) @ q.transpose(1, 2)
        weights = 0.5 + torch.rand(components, generator=g, dtype=torch.float64)
        return cls(weights, means, (covs + covs.transpose(1, 2)) / 2)

    @classmethod
    def preset(cls, name: str, dim: int = 2, components: int = 8, seed: int = 0) -> GaussianMixture:
        """``ring8``, ``grid25`` or ``random`` (with ``dim``, ``components``, ``seed``)."""
        if name == "ring8":
            return cls.ring8()
        if name == "grid25":
            return cls.grid25()
        if name == "random":
            return cls.random(dim, components, seed)
        raise ErrpropError(f"data.name: unknown mixture {name!r}; choose one of {PRESETS}")

    # ----------------------------------------------------------------------------- sampling
    def sample(self, noise: Noise) -> torch.Tensor:
        """One exact draw per stream of ``noise``: (len(noise), d) float32."""
        u = noise.rand(1, dtype=torch.float64)[:, 0].cpu()
        K = len(self.weights)
        k = torch.searchsorted(self._cum_weights, u.contiguous()).clamp(max=K - 1)
        z = noise.randn(self.dim, dtype=torch.float64).cpu()
        if self._shared_chol_t is not None:  # one factor for all components (ring8, grid25)
            return (self.means[k] + z @ self._shared_chol_t).float().to(noise.device)
        # component by component (gathering a d×d factor per sample would hold n·d² numbers): the
        # rows of each component, in their order, as consecutive blocks of one stable sort
        order = torch.argsort(k, stable=True)
        counts = torch.bincount(k, minlength=K).tolist()
        blocks = z[order].split(counts)
        parts = [self._mean_rows[j] + blocks[j] @ self._chol_t[j] for j in range(K) if counts[j]]
        x = torch.empty_like(z)
        if parts:  # none for an empty batch
            x[order] = torch.cat(parts)
        return x.float().to(noise.device)

    def sample_n(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` exact draws from streams ``seed`` (float32, CPU)."""
        return self.sample(Noise.from_seed(seed, n, key=(KEY_MIXTURE,)))

    def mode_counts(self, x: torch.Tensor, radius: float | None = None) -> tuple[torch.Tensor, int]:
        """Samples per component (most responsible one) and the number of off-mode samples, those
        whose Mahalanobis distance to that component exceeds ``radius``.

        ``None``: the radius an exact draw exceeds with probability e⁻⁸ (≈ 3e-4) in this dimension —
        the χ_D quantile, which is 4 at D = 2. A fixed radius would not do: the Mahalanobis norm of
        an exact draw grows like √D, so in 16-D radius 4 calls half of the data off-mode."""
        if radius is None:
            radius = off_mode_radius(self.dim)
        post = self.posterior(x, 0.0)
        k = post.resp.argmax(1)
        diff = x.to(torch.float64) - self.means[k]
        maha = torch.zeros(len(k), dtype=torch.float64)
        for j in k.unique().tolist():  # component by component (no d×d factor per sample)
            rows = (k == j).nonzero().squeeze(1)
            maha[rows] = ((diff[rows] @ self._Q[j]) ** 2 / self._lam[j]).sum(1).sqrt()
        on = maha <= radius
        return torch.bincount(k[on], minlength=len(self.weights)), int((~on).sum())

    # ----------------------------------------------------------------------------- closed forms
    def _component_log_probs(self, x: torch.Tensor, sigma: torch.Tensor):
        """log π_k N(x̂; μ_k, C_k) (n, K) with C_k = Σ_k + σ² I, the coordinates of x̂ − μ_k in Σ_k's
        eigenbasis (n, K, d), and C_k's eigenvalues λ_k + σ² (n, K, d)."""
        dev = x.device
        diff = x[:, None, :] - self.means.to(dev)[None]
        proj = torch.einsum("nkd,kde->nke", diff, self._Q.to(dev))
        v = self._lam.to(dev)[None] + (sigma**2)[:, None, None]
        logp = -0.5 * (proj**2 / v).sum(-1) - 0.5 * v.log().sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return logp + self.weights.to(dev).log()[None], proj, v

    def _prep(self, x, sigma):
        x64 = x.to(torch.float64).reshape(x.shape[0], -1)
        return x64, as_sigma(sigma, x64)

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """log p_σ(x̂), the density of x̂ = x0 + σ n, per sample (n,)."""
        x64, s = self._prep(x, sigma)
        return torch.logsumexp(self._component_log_probs(x64, s)[0], 1).to(x.dtype)

    def posterior(self, x: torch.Tensor, sigma: float | torch.Tensor) -> Posterior:
        """The exact posterior of x0 given x̂ at σ (float64)."""
        x64, s = self._prep(x, sigma)
        logp, proj, v = self._component_log_probs(x64, s)
        resp = torch.softmax(logp, 1)
        lam, Q = self._lam.to(x64.device)[None], self._Q.to(x64.device)
        # Within component k, x0 | x̂ is Gaussian: mean μ_k + Σ_k C_k⁻¹ (x̂ − μ_k), covariance
        # Σ_k − Σ_k C_k⁻¹ Σ_k; in Σ_k's eigenbasis both are diagonal (gains λ/(λ+σ²), λσ²/(λ+σ²)).
        means = self.means.to(x64.device)[None] + torch.einsum("nke,kde->nkd", proj * lam / v, Q)
        return Posterior(resp, means, Q, lam * (v - lam) / v)

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """The exact denoiser E[x0 | x̂] (EDM's D), shaped like ``x``."""
        post = self.posterior(x, sigma)
        return (post.resp.unsqueeze(-1) * post.means).sum(1).to(x.dtype).reshape(x.shape)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """∇ log p_σ(x̂) = (E[x0|x̂] − x̂)/σ² (Tweedie), shaped like ``x``."""
        s = as_sigma(sigma, x).reshape(-1, *([1] * (x.ndim - 1)))
        return (self.denoise(x, sigma) - x) / s**2
