"""``generate``: samples depend on (seed, index) only; the grid and options reach the sampler."""

import pytest
import torch

from errprop.data.gmm import GaussianMixture
from errprop.errors import ErrpropError
from errprop.generate import generate
from errprop.process import VPProcess


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "heun"])
def test_a_sample_depends_on_its_seed_and_index_only(sampler):
    mix, process = GaussianMixture.ring8(), VPProcess()
    kw = dict(sampler=sampler, steps=6, grid="edm")
    a = generate(mix, process, (2,), 12, seed=3, batch_size=12, **kw)
    b = generate(mix, process, (2,), 12, seed=3, batch_size=5, **kw)
    c = generate(mix, process, (2,), 7, seed=3, batch_size=7, **kw)
    assert torch.equal(a, b) and torch.equal(a[:7], c)  # bitwise: the oracle is per row
    d = generate(mix, process, (2,), 12, seed=4, batch_size=12, **kw)
    assert not torch.equal(a, d)


def test_options_and_grid_reach_the_sampler():
    mix, process = GaussianMixture.ring8(), VPProcess()
    seen = []
    generate(mix, process, (2,), 4, steps=5, grid="list", grid_options={"sigmas": [10.0, 1.0, 0.1]},
             callback=lambda info: seen.append((info["sigma"], info["sigma_next"])))
    assert seen == [(10.0, 1.0), (1.0, 0.1), (0.1, 0.0)]  # a list grid sets the steps
    det = generate(mix, process, (2,), 8, sampler="ddim", steps=5, eta=0.0, seed=1)
    sto = generate(mix, process, (2,), 8, sampler="ddim", steps=5, eta=1.0, seed=1)
    assert not torch.equal(det, sto)
    clipped = generate(mix, process, (2,), 64, sampler="ddim", steps=5, clip=0.5)
    assert clipped.abs().max() <= 0.5
    with pytest.raises(ErrpropError, match="unknown sampler"):
        generate(mix, process, (2,), 4, sampler="dpm++", steps=5)
