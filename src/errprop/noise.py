"""Per-sample random streams: a sample never depends on the batch it was drawn in.

Each row of a batch owns a CPU ``torch.Generator`` seeded from ``(seed, *key, index)``; every draw
takes row i from stream i. The same streams serve sampling (initial and injected noise) and
training (noise levels and ε), so a sample, or a training step, is the same whatever the batch
size, the batch order or the number of DDP ranks that share the batch. Draws happen on the CPU and
are moved to the target device, so samples agree across devices up to the network's numerics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective 64-bit mix (vectorised; numpy wraps uint64 overflow)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def stream_seeds(seed: int, indices: Sequence[int] | np.ndarray, *key: int) -> np.ndarray:
    """64-bit seeds for the streams ``(seed, *key, i)`` for each i in ``indices``."""
    h = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    for k in key:
        h = _splitmix64(h ^ np.uint64(k & 0xFFFFFFFFFFFFFFFF))
    return _splitmix64(h ^ np.asarray(indices, dtype=np.uint64))


class Noise:
    """A batch of independent random streams, one per sample.

    >>> a = Noise.from_seed(0, 4).randn(2)                 # samples 0..3 of seed 0
    >>> b = Noise.from_seed(0, 2, start=2).randn(2)        # samples 2..3 alone
    >>> torch.equal(a[2:], b)
    True
    """

    def __init__(self, seeds: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.seeds = np.asarray(seeds, dtype=np.uint64)
        self.device = torch.device(device)
        self._gens = [torch.Generator().manual_seed(int(s)) for s in self.seeds]

    @classmethod
    def from_seed(
        cls, seed: int, n: int, start: int = 0, key: Sequence[int] = (), device="cpu"
    ) -> Noise:
        """Streams for samples ``start .. start+n-1`` of run ``seed`` (``key`` separates uses)."""
        return cls(stream_seeds(seed, np.arange(start, start + n), *key), device)

    def __len__(self) -> int:
        return len(self._gens)

    def __getitem__(self, idx: slice) -> Noise:
        """The sub-batch of streams ``idx`` (they share state with this object's streams)."""
        sub = Noise.__new__(Noise)
        sub.seeds, sub.device, sub._gens = self.seeds[idx], self.device, self._gens[idx]
        return sub

    def _draw(self, fill, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        # In-place fills of the rows (what torch.randn/rand(out=...) run, minus their per-call
        # argument handling); pinned host memory lets the copy to a GPU run without waiting for
        # the work already queued there.
        pin = self.device.type == "cuda"
        out = torch.empty((len(self._gens), *shape), dtype=dtype, pin_memory=pin)
        for row, g in zip(out.unbind(0), self._gens):
            fill(row, generator=g)
        return out.to(self.device, non_blocking=pin)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal draws of shape (batch, *shape)."""
        return self._draw(torch.Tensor.normal_, shape, dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) draws of shape (batch, *shape)."""
        return self._draw(torch.Tensor.uniform_, shape, dtype)
