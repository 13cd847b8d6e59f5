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
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _finalize(x: np.ndarray) -> np.ndarray:
    """SplitMix64's bijective 64-bit mix of ``x``, in place (uint64 arrays wrap without a warning)."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + γ``: a bijective 64-bit mix (vectorised; uint64 wraps)."""
    with np.errstate(over="ignore"):  # a 0-d array computes in numpy scalars, which would warn
        return _finalize(x + _GAMMA)  # the one copy: small batches are bound by numpy's per-call cost


def _mix(x: int) -> int:
    """:func:`_splitmix64` of one Python int (no array round trip: the per-step seed of training)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _hash(seed: int, key: tuple[int, ...]) -> int:
    h = _mix(seed & 0xFFFFFFFFFFFFFFFF)
    for k in key:
        h = _mix(h ^ (k & 0xFFFFFFFFFFFFFFFF))
    return h


@lru_cache(maxsize=256)
def _key_hash(seed: int, key: tuple[int, ...]) -> np.uint64:
    """The hash of ``(seed, *key)`` that names a family of streams (cached: the training loop
    asks for the same few keys every step)."""
    return np.uint64(_hash(seed, key))


def stream_seeds(seed: int, indices: Sequence[int] | np.ndarray, *key: int) -> np.ndarray:
    """64-bit seeds for the streams ``(seed, *key, i)`` for each i in ``indices``."""
    return _splitmix64(np.asarray(indices, dtype=np.uint64) ^ _key_hash(int(seed), tuple(map(int, key))))


def stream_seed(seed: int, index: int, *key: int) -> int:
    """The seed of the one stream ``(seed, *key, index)``: ``stream_seeds(seed, [index], *key)[0]``
    as a Python int, computed without arrays (or the cache: a key that changes every call)."""
    return _mix((int(index) & 0xFFFFFFFFFFFFFFFF) ^ _hash(int(seed), tuple(map(int, key))))


@lru_cache(maxsize=64)
def _offsets(m: int) -> np.ndarray:
    """(1 … m)·γ: the counter offsets of the next m words (read-only, shared)."""
    with np.errstate(over="ignore"):
        off = np.arange(1, m + 1, dtype=np.uint64) * _GAMMA
    off.flags.writeable = False
    return off


def stream_words(seeds: np.ndarray, counters: np.ndarray, m: int) -> np.ndarray:
    """Words ``counters[i] .. counters[i] + m − 1`` of streams ``seeds``: (len(seeds), m) uint64."""
    # word k of stream s is mix(s + (k + 1)·γ) (γ added by the SplitMix finaliser): here as
    # (s + counter·γ) + (j + 1)·γ, the same sum mod 2⁶⁴ with one (n, m) array and in-place mixing
    base = counters * _GAMMA
    base += seeds
    return _finalize(base[:, None] + _offsets(m)[None])


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
        if self.device.type == "cpu":
            return t
        return t.to(self.device, non_blocking=self.device.type == "cuda")

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal draws of shape (batch, *shape) (Box–Muller, 2 words per pair)."""
        m = math.prod(shape)
        pairs = (m + 1) // 2
        w = self._words(2 * pairs)
        w >>= _S11
        u = w.astype(np.float64)
        u *= 2.0**-53  # exact (a power of two): u1 = u + 2⁻⁵³ ∈ (0, 1] (log is finite), u2 = u
        u1, a = u[:, 0::2] + 2.0**-53, u[:, 1::2] * (2.0 * math.pi)
        r = -2.0 * np.log(u1)  # log, cos, sin of whole contiguous arrays (a strided one may round otherwise)
        np.sqrt(r, out=r)
        z = np.empty((len(self.seeds), pairs, 2))
        np.multiply(r, np.cos(a), out=z[..., 0])
        np.multiply(r, np.sin(a), out=z[..., 1])
        z = z.reshape(len(self.seeds), 2 * pairs)
        return self._out(z if m == 2 * pairs else z[:, :m], shape, dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) draws of shape (batch, *shape): the dtype's mantissa bits of one word each,
        so the value is exact in ``dtype`` and never rounds up to 1."""
        m = math.prod(shape)
        bits = _mantissa_bits(dtype)
        w = self._words(m)
        w >>= np.uint64(64 - bits)
        u = w.astype(np.float64)
        u *= 2.0**-bits
        return self._out(u, shape, dtype)


@lru_cache(maxsize=16)
def _mantissa_bits(dtype: torch.dtype) -> int:
    """The significand bits of ``dtype`` a uniform keeps (float32: 24), at most float64's 53."""
    return min(round(-math.log2(torch.finfo(dtype).eps)) + 1, 53)
