import numpy as np
import torch

from errprop.noise import Noise, stream_seeds


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
