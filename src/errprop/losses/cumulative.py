"""EP: the cumulative-error regularizer of Li & van der Schaar (ICLR 2024), docs/methods.md#ep-regularizer.

As the released code runs it (``p_losses`` with ``bootstrap_steps``): each training step draws a
head h ~ U{1..T−1} and a length ℓ ~ U{1..L}; the tail is τ = max(h − ℓ, 0). Half *a* of the batch
is noised to h and taken h → h−1 → … → τ by the model's **own sampler steps** (the step functions
of :mod:`errprop.samplers`: ``ddpm_step`` for ``ancestral``, ``ddim_step`` with η = 0 for
``ddim``), with gradient through every step (``backprop="full"``) or through the last only
(``"last"``: x is detached before it); half *b* is noised to τ directly. ``R = MMD²(a, b)``
(biased, multi-bandwidth, bandwidth without gradient; :func:`errprop.metrics.mmd.mmd2`) measures
how far the model's own chain has drifted from the true marginal q(x_τ) — a cumulative error — and
the loss is ``base + λ R``.

Indexing. h and τ are errprop's 0-based step indices on ``process.sigmas``, exactly as in the
released code, whose steps are 0-based too: index 0 is the *first noise level* σ_0 (paper step 1),
not clean data. So the tail is always a noisy marginal (σ_τ ≥ σ_0 > 0), every rollout step adds
its noise (the code never runs its noise-free t = 0 step here), and half b is x0 + σ_τ n. In the
paper's 1-based notation the head is step h + 1 ∈ {2..T} and the tail step τ + 1 ≥ 1.

MMD is invariant to a common scale (the bandwidth is the mean pairwise distance), so comparing in
x̂ = x_t/s or in x_t space gives the same R. Under DDP each rank computes R over its own local
half-batches.

Scale of λ. Our base losses sum squared errors over data dimensions (D of them); the released code
averages them. Its ``loss = mse_mean + 1·R`` is therefore ``loss = mse_sum + D·R`` here: to keep
the code's balance between the two terms use ``lam = D`` (784 for 28×28 grey images, 3072 for
CIFAR-10); ``lam = 1`` makes R D times weaker relative to the base than in the code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import ErrpropError
from ..metrics.mmd import MULTIPLIERS, mmd2
from ..noise import Noise
from ..process import Process, VPProcess
from ..samplers import sample
from .simple import SimpleLoss

BaseLoss = Callable[..., dict]
#: The rollout samplers, by config name (``loss.ep.sampler``; ``ancestral`` is the EP code's name),
#: and the step of :mod:`errprop.samplers` each runs.
ROLLOUT_STEPS = {"ancestral": "ddpm", "ddim": "ddim"}
#: Where the rollout's gradient flows (``loss.ep.backprop``): every step, or the last only.
BACKPROPS = ("full", "last")
#: The smallest batch (per rank) EP takes: R compares two half-batches of ≥ 2 samples.
MIN_BATCH = 4


def check_batch(batch_size: int, ranks: int = 1) -> None:
    """Raise unless a batch of ``batch_size`` (split over ``ranks`` DDP ranks) gives every rank two
    half-batches of ≥ 2 samples — the one check of EP's batch, made by the config, the trainer
    (per rank) and the loss itself."""
    local = batch_size // ranks
    if local < MIN_BATCH:
        split = f" per rank (train.batch_size {batch_size} over {ranks} ranks)" if ranks > 1 else ""
        raise ErrpropError(f"loss 'ep' needs a batch of ≥ {MIN_BATCH} (two half-batches of ≥ 2; "
                           f"train.batch_size), got {local}{split}")


def _draw_int(noise: Noise, low: int, high: int) -> int:
    """One integer uniform on [low, high] from the batch's first stream (one draw per call)."""
    u = float(noise[:1].rand(1)[0, 0])
    return low + min(int(u * (high - low + 1)), high - low)


@dataclass
class CumulativeErrorLoss:
    """``base + λ MMD²(rollout of half a, forward-noised half b)``; call as ``loss(denoiser, x0, noise)``.

    Fields: ``process`` a discrete VP process; ``base`` the base loss, any callable
    ``base(denoiser, x0, noise) -> {"loss", "loss_simple", ...}`` seeing the whole batch — default
    ``SimpleLoss(process)``, DDPM's ε-loss ‖ε̂ − ε‖², which is what the released code's base amounts
    to whatever the network predicts (its per-objective weights 1, SNR, SNR/(SNR+1) for ε, x0, v
    all equal the ε-loss); the config passes the run's own base loss instead, so that EP is
    "the baseline + λ R". ``L`` the longest rollout (≥ 1, code: 5); ``lam`` λ ≥ 0 (code: 1, but
    see the module note on its scale); ``sampler`` ``ancestral`` (code) or ``ddim``;
    ``backprop`` ``full`` (code) or ``last``; ``multipliers`` the kernel's bandwidth multipliers
    (code: 2^−2..2^2).

    Returns ``{"loss", "loss_simple", "loss_ep"}`` (``loss_ep`` = R, detached). h and ℓ are drawn
    from stream 0 of ``noise`` after the base loss's draws; half a takes streams 0..B/2−1, half b
    the next B/2 (an odd batch's last sample is left out of R). Needs B ≥ 4.
    """

    process: Process
    base: BaseLoss | None = None
    L: int = 5
    lam: float = 1.0
    sampler: str = "ancestral"
    backprop: str = "full"
    multipliers: Sequence[float] = field(default_factory=lambda: list(MULTIPLIERS))

    def __post_init__(self) -> None:
        if not isinstance(self.process, VPProcess):
            raise ErrpropError("loss.name 'ep' needs a discrete VP process (process.kind: vp)")
        if not isinstance(self.L, int) or self.L < 1:
            raise ErrpropError(f"loss.ep.L must be an integer ≥ 1, got {self.L!r}")
        if not self.lam >= 0:
            raise ErrpropError(f"loss.ep.lam must be ≥ 0, got {self.lam}")
        if self.sampler not in ROLLOUT_STEPS:
            raise ErrpropError(f"loss.ep.sampler: unknown {self.sampler!r}; choose 'ancestral' or 'ddim'")
        if self.backprop not in BACKPROPS:
            raise ErrpropError(f"loss.ep.backprop: unknown {self.backprop!r}; choose 'full' or 'last'")
        if not self.multipliers or any(m <= 0 for m in self.multipliers):
            raise ErrpropError(f"loss.ep.multipliers must be positive numbers, got {list(self.multipliers)}")
        if self.base is None:
            self.base = SimpleLoss(self.process)

    def draw_steps(self, noise: Noise) -> tuple[int, int]:
        """This step's head h ~ U{1..T−1} and tail τ = max(h − ℓ, 0), ℓ ~ U{1..L} (stream 0)."""
        h = _draw_int(noise, 1, self.process.T - 1)
        return h, max(h - _draw_int(noise, 1, self.L), 0)

    def rollout(self, denoiser, x: torch.Tensor, h: int, tail: int, noise: Noise) -> torch.Tensor:
        """The model's own steps h → h−1 → … → tail from x̂ (n, ...) at σ_h; returns x̂ at σ_tail.

        Gradient flows through every step (``full``) or only the last (``last``).
        """
        levels = self.process.sigmas[tail:h + 1].flip(0)  # σ_h, σ_{h−1}, …, σ_tail
        step = ROLLOUT_STEPS[self.sampler]
        if self.backprop == "last":  # the steps before the last carry no gradient
            x = sample(denoiser, x, levels[:-1], noise, step).detach()
            levels = levels[-2:]
        return sample(denoiser, x, levels, noise, step, grad=True)

    def __call__(self, denoiser, x0: torch.Tensor, noise: Noise) -> dict[str, torch.Tensor]:
        B = x0.shape[0]
        check_batch(B)
        base = self.base(denoiser, x0, noise)
        h, tail = self.draw_steps(noise)
        half = B // 2
        a, b = noise[:half], noise[half:2 * half]
        sig = self.process.sigmas
        x_a = x0[:half] + float(sig[h]) * a.randn(*x0.shape[1:]).to(x0)
        x_b = x0[half:2 * half] + float(sig[tail]) * b.randn(*x0.shape[1:]).to(x0)
        r = mmd2(self.rollout(denoiser, x_a, h, tail, a), x_b, multipliers=self.multipliers)
        return {"loss": base["loss"] + self.lam * r, "loss_simple": base["loss_simple"],
                "loss_ep": r.detach()}
