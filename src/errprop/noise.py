"""Per-sample random streams: a sample never depends on the batch it was drawn in.

Each row of a batch owns a counter-based stream named by ``(seed, *key, index)``: its k-th 64-bit
word is the SplitMix64 output ``mix(s + (k + 1)·γ)`` of the row's stream seed ``s`` (Steele, Lea
& Flood 2014), so any word of any stream is a pure function of (stream, counter) and a whole batch
is drawn with a few vectorised array operations instead of one generator per row. Every draw takes
row i's next words from stream i. The same streams serve sampling (initial and injected noise) and
training (noise levels and ε), so a sample, or a training step, is the same whatever the batch
size, the batch order or the number of DDP ranks that share the batch.

Draws are computed on the CPU in float64 and rounded once to the requested dtype (so a float32
draw is the float64 draw rounded), then moved to the target device: samples agree across devices
up to the network's numerics. Uniforms keep the dtype's mantissa bits of a word (never 1.0 after
rounding); normals are Box–Muller pairs from two words each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (the golden ratio in 64 bits)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + γ``: a bijective 64-bit mix (vectorised; uint64 wraps)."""
    with np.errstate(over="ignore"):
        x = x + _GAMMA  # the one copy: every later operation works in place (small batches are
        x ^= x >> np.uint64(30)  # bound by numpy's per-call cost, not by arithmetic)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return x


@lru_cache(maxsize=256)
def _key_hash(seed: int, key: tuple[int, ...]) -> np.uint64:
    """The hash of ``(seed, *key)`` that names a family of streams (cached: the training loop
    asks for the same few keys every step)."""
    h = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    for k in key:
        h = _splitmix64(h ^ np.uint64(k & 0xFFFFFFFFFFFFFFFF))
    return h[0]


def stream_seeds(seed: int, indices: Sequence[int] | np.ndarray, *key: int) -> np.ndarray:
    """64-bit seeds for the streams ``(seed, *key, i)`` for each i in ``indices``."""
    return _splitmix64(np.asarray(indices, dtype=np.uint64) ^ _key_hash(int(seed), tuple(map(int, key))))


def stream_words(seeds: np.ndarray, counters: np.ndarray, m: int) -> np.ndarray:
    """Words ``counters[i] .. counters[i] + m − 1`` of streams ``seeds``: (len(seeds), m) uint64."""
    k = counters[:, None] + np.arange(m, dtype=np.uint64)[None]
    with np.errstate(over="ignore"):
        return _splitmix64(seeds[:, None] + k * _GAMMA)


class Noise:
    """A batch of independent random streams, one per sample.

    >>> a = Noise.from_seed(0, 4).randn(2)                 # samples 0..3 of seed 0
    >>> b = Noise.from_seed(0, 2, start=2).randn(2)        # samples 2..3 alone
    >>> torch.equal(a[2:], b)
    True
    """

    def __init__(self, seeds: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
        self.device = torch.device(device)
        self.counters = np.zeros(len(self.seeds), dtype=np.uint64)  # words used so far, per stream

    @classmethod
    def from_seed(
        cls, seed: int, n: int, start: int = 0, key: Sequence[int] = (), device="cpu"
    ) -> Noise:
        """Streams for samples ``start .. start+n-1`` of run ``seed`` (``key`` separates uses)."""
        return cls(stream_seeds(seed, np.arange(start, start + n), *key), device)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, idx: slice) -> Noise:
        """The sub-batch of streams ``idx`` (a view: its draws advance this object's streams)."""
        if not isinstance(idx, slice):
            raise TypeError("Noise: index with a slice (a sub-batch shares its rows' stream state)")
        sub = Noise.__new__(Noise)
        sub.seeds, sub.device, sub.counters = self.seeds[idx], self.device, self.counters[idx]
        return sub

    def _words(self, m: int) -> np.ndarray:
        w = stream_words(self.seeds, self.counters, m)
        self.counters += np.uint64(m)  # in place: a slice's counters are a view of its parent's
        return w

    def _out(self, values: np.ndarray, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        t = torch.from_numpy(values.reshape(len(self.seeds), *shape)).to(dtype)
        return t.to(self.device, non_blocking=self.device.type == "cuda")

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal draws of shape (batch, *shape) (Box–Muller, 2 words per pair)."""
        m = math.prod(shape)
        pairs = (m + 1) // 2
        w = self._words(2 * pairs)
        scale = 2.0**-53
        u1 = ((w[:, 0::2] >> np.uint64(11)).astype(np.float64) + 1.0) * scale  # (0, 1]: log is finite
        u2 = (w[:, 1::2] >> np.uint64(11)).astype(np.float64) * scale
        r, a = np.sqrt(-2.0 * np.log(u1)), (2.0 * math.pi) * u2
        z = np.stack([r * np.cos(a), r * np.sin(a)], axis=-1).reshape(len(self.seeds), 2 * pairs)
        return self._out(z[:, :m], shape, dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) draws of shape (batch, *shape): the dtype's mantissa bits of one word each,
        so the value is exact in ``dtype`` and never rounds up to 1."""
        m = math.prod(shape)
        bits = min(round(-math.log2(torch.finfo(dtype).eps)) + 1, 53)  # float32: 24
        u = (self._words(m) >> np.uint64(64 - bits)).astype(np.float64) * 2.0**-bits
        return self._out(u, shape, dtype)
