import numpy as np
import torch

from errprop.noise import Noise, stream_seed, stream_seeds


def test_rows_do_not_depend_on_batching():
    whole = Noise.from_seed(7, 10)
    a = torch.cat([whole.randn(3), whole.randn(3)], 1)
    parts = [Noise.from_seed(7, 4, start=0), Noise.from_seed(7, 6, start=4)]
    b = torch.cat([torch.cat([p.randn(3), p.randn(3)], 1) for p in parts])
    assert torch.equal(a, b)


def test_slices_share_streams_and_keys_separate():
    n = Noise.from_seed(0, 6)
    first = n[2:4].randn(2)
    fresh = Noise.from_seed(0, 6).randn(2)
    assert torch.equal(first, fresh[2:4])
    assert not np.array_equal(stream_seeds(0, [1, 2], 5), stream_seeds(0, [1, 2], 6))
    assert len(set(stream_seeds(0, np.arange(10000)).tolist())) == 10000


def test_draws_are_standard():
    x = Noise.from_seed(1, 2000).randn(50)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    u = Noise.from_seed(1, 2000).rand(10)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01


def test_streams_are_pinned_bit_for_bit():
    """The words and draws of today's streams (NUMERICS 1): a faster implementation must give
    these exact numbers, or it changes every cached result (bump errprop.train.NUMERICS)."""
    assert stream_seeds(0, [0, 1, 2**40], 5, 123).tolist() == [
        1429474849674035302, 13962960623976312799, 1194869216004755502]
    assert stream_seeds(2**64 - 1, [7]).tolist() == [1869568459174662326]
    for i in (0, 1, 2**40):
        assert stream_seed(0, i, 5, 123) == int(stream_seeds(0, [i], 5, 123)[0])
    n = Noise.from_seed(3, 5, start=10, key=(1, 2))
    assert n.rand(3)[0].tolist() == [0.36400431394577026, 0.10318547487258911, 0.58797287940979]
    z = n.randn(3, dtype=torch.float64)
    assert [v.hex() for v in z[0].tolist() + z[1, :3].tolist()] == [
        "-0x1.4cedf5860dd27p-1", "0x1.84997fd8ce183p-5", "-0x1.f429c1ba7f89cp-1",
        "-0x1.0b7e1eab30db2p-5", "0x1.0e6212b52401fp-1", "0x1.47c0e8f67a4c6p+1"]
    assert n.counters.tolist() == [7] * 5  # 3 words for rand(3), 4 for randn(3)


def test_odd_sizes_and_low_precision_draws_are_the_float64_draws_rounded():
    a, b = Noise.from_seed(9, 33), Noise.from_seed(9, 33)
    x64 = a.randn(3, 1, dtype=torch.float64)
    assert x64.shape == (33, 3, 1)
    assert torch.equal(b.randn(3, 1, dtype=torch.bfloat16), x64.to(torch.bfloat16))
    assert torch.equal(a.rand(5, dtype=torch.float16), b.rand(5, dtype=torch.float16))
    assert a.rand(2, dtype=torch.float16).max() < 1
