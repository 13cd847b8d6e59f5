"""The data draws measurements share: a mixture's moments, per-sample streams (a draw never depends
on how many are drawn), disjoint data blocks for reference and floor, and batching."""

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.keys import FLOOR_OFFSET, KEY_DATA, KEY_FLOOR, KEY_START, REF_OFFSET
from errprop.noise import Noise
from errprop.streams import batched, default_dtype, draw_data, reference_sets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ring():
    return GaussianMixture.ring8()  # radius 1, component std 0.05, equal weights


def test_reference_sets_have_the_mixtures_moments(ring):
    """Ring of 8 (unit radius, σ = 0.05): mean 0 and covariance (1/2 + σ²) I in closed form."""
    n = 20_000
    ref, floor = reference_sets(ring, n, seed=3)
    assert ref.shape == floor.shape == (n, 2) and ref.dtype == torch.float32
    for x in (ref, floor):
        x = x.double()
        assert x.mean(0).abs().max() < 0.025  # 5 standard errors (√(0.5025/n) = 0.005)
        cov = torch.cov(x.T)
        assert torch.allclose(cov, 0.5025 * torch.eye(2, dtype=torch.float64), atol=0.015)
    # every point lies on one component: within a few σ of the unit circle
    assert (ref.norm(dim=1) - 1).abs().max() < 6 * 0.05


def test_reference_and_floor_sets_are_the_documented_independent_draws(ring):
    ref, floor = reference_sets(ring, 500, seed=7)
    assert torch.equal(ref, ring.sample_n(500, seed=7 + REF_OFFSET))
    assert torch.equal(floor, ring.sample_n(500, seed=7 + FLOOR_OFFSET))
    assert not torch.isclose(ref, floor).all(dim=1).any()  # no sample shared
    again = reference_sets(ring, 500, seed=7)
    assert torch.equal(again[0], ref) and torch.equal(again[1], floor)
    assert not torch.equal(reference_sets(ring, 500, seed=8)[0], ref)


def test_a_sample_does_not_depend_on_how_many_are_drawn(ring):
    """Sample i is a function of (seed, key, i) alone: the first 100 of 1000 are the 100."""
    small, big = reference_sets(ring, 100, seed=1), reference_sets(ring, 1000, seed=1)
    assert torch.equal(small[0], big[0][:100]) and torch.equal(small[1], big[1][:100])
    a = draw_data(ring, 64, seed=2, key=KEY_DATA)
    b = draw_data(ring, 256, seed=2, key=KEY_DATA)
    assert torch.equal(a, b[:64])


def test_mixture_draws_follow_their_key_seed_and_dtype(ring):
    x = draw_data(ring, 32, seed=5, key=KEY_DATA, dtype=torch.float64)
    assert x.dtype == torch.float64 and x.shape == (32, 2)
    assert torch.equal(x, ring.sample(Noise.from_seed(5, 32, key=(KEY_DATA,))).double())
    assert not torch.equal(x, draw_data(ring, 32, seed=5, key=KEY_FLOOR, dtype=torch.float64))
    assert not torch.equal(x, draw_data(ring, 32, seed=6, key=KEY_DATA, dtype=torch.float64))


def test_tensor_draws_are_disjoint_seeded_blocks_of_the_data():
    data = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i
    ref = draw_data(data, 30, seed=0, key=KEY_DATA)
    floor = draw_data(data, 30, seed=0, key=KEY_FLOOR)
    ids_ref, ids_floor = ref[:, 0].long().tolist(), floor[:, 0].long().tolist()
    assert len(set(ids_ref)) == 30 and len(set(ids_floor)) == 30  # no row twice
    assert not set(ids_ref) & set(ids_floor)  # the floor never reuses a reference sample
    assert torch.equal(ref, data[ref[:, 0].long()])  # whole rows of the data
    assert torch.equal(ref, draw_data(data, 30, seed=0, key=KEY_DATA))  # a function of the seed
    assert not torch.equal(ref, draw_data(data, 30, seed=1, key=KEY_DATA))
    # any other key reads the first block, like the reference set
    assert torch.equal(draw_data(data, 30, seed=0, key=KEY_START), ref)
    assert draw_data(data, 30, seed=0, key=KEY_DATA, dtype=torch.float64).dtype == torch.float64


def test_tensor_draws_refuse_too_little_data_and_other_inputs():
    data = torch.zeros(50, 2)
    assert draw_data(data, 50, seed=0, key=KEY_DATA).shape == (50, 2)
    with pytest.raises(ErrpropError, match="need 100 data samples.*disjoint floor set.*holds 50"):
        draw_data(data, 50, seed=0, key=KEY_FLOOR)
    with pytest.raises(ErrpropError, match="need 51 data samples"):
        draw_data(data, 51, seed=0, key=KEY_DATA)
    with pytest.raises(ErrpropError, match="GaussianMixture or a tensor"):
        draw_data(torch.zeros(50), 10, seed=0, key=KEY_DATA)
    with pytest.raises(ErrpropError, match="GaussianMixture or a tensor"):
        draw_data([[0.0, 1.0]], 1, seed=0, key=KEY_DATA)


def test_default_dtype_is_float64_only_for_the_exact_mixture(ring):
    assert default_dtype(ring) == torch.float64
    assert default_dtype(torch.nn.Identity()) == torch.float32


@pytest.mark.parametrize("n, batch_size, calls", [(10, 3, [(0, 3), (3, 6), (6, 9), (9, 10)]),
                                                  (10, None, [(0, 10)]), (10, 0, [(0, 10)]),
                                                  (4, 100, [(0, 4)])])
def test_batched_covers_the_range_once_in_order(n, batch_size, calls):
    seen = []

    def fn(s: slice) -> torch.Tensor:
        seen.append((s.start, s.stop))
        return torch.arange(s.start, s.stop)

    out = batched(fn, n, batch_size)
    assert seen == calls and torch.equal(out, torch.arange(n))
