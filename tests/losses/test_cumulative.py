"""EP: reduction to the base loss, gradient paths through the rollout, validation."""

import pytest
import torch

from errprop.denoisers import Denoiser
from errprop.errors import ErrpropError
from errprop.losses.cumulative import CumulativeErrorLoss
from errprop.losses.simple import SimpleLoss
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess


def _den(p):
    torch.manual_seed(0)
    return Denoiser(MLP(3, width=32, depth=1), "eps", p)


def test_lambda_zero_equals_base_loss():
    p = VPProcess()
    d, x0 = _den(p), torch.randn(16, 3)
    base = SimpleLoss(p)(d, x0, Noise.from_seed(0, 16))["loss"]
    out = CumulativeErrorLoss(p, lam=0.0)(d, x0, Noise.from_seed(0, 16))
    assert torch.equal(out["loss"], base) and out["loss_ep"] >= 0


class Recording(torch.nn.Module):
    """Keeps every denoiser output of the rollout so the test can see where gradient arrives."""

    def __init__(self, denoiser):
        super().__init__()
        self.d, self.outs = denoiser, []

    def forward(self, x, sigma):
        out = self.d(x, sigma)
        out.retain_grad()
        self.outs.append(out)
        return out


@pytest.mark.parametrize("backprop", ["full", "last"])
@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_gradient_reaches_every_rollout_step_or_only_the_last(backprop, sampler):
    p = VPProcess(T=50)
    loss = CumulativeErrorLoss(p, L=5, lam=1.0, sampler=sampler, backprop=backprop)
    rec = Recording(_den(p))
    x = torch.randn(8, 3) + 2 * (torch.arange(8)[:, None] % 2)
    out = loss.rollout(rec, x * 0.1, 30, 26, Noise.from_seed(0, 8))
    from errprop.metrics.mmd import mmd2

    mmd2(out, torch.randn(8, 3)).backward()
    got = [o.grad is not None and o.grad.abs().sum().item() > 0 for o in rec.outs]
    assert len(got) == 4
    assert got == ([True] * 4 if backprop == "full" else [False, False, False, True])


def test_whole_loss_backpropagates_and_draws_head_and_tail_from_the_streams():
    p = VPProcess(T=100)
    d = _den(p)
    x0 = torch.randn(16, 3)
    a = CumulativeErrorLoss(p)(d, x0, Noise.from_seed(4, 16))
    b = CumulativeErrorLoss(p)(d, x0, Noise.from_seed(4, 16))
    assert torch.equal(a["loss"], b["loss"])
    a["loss"].backward()
    assert all(q.grad is not None for q in d.parameters())


@pytest.mark.parametrize("kwargs,message", [({"L": 0}, "loss.ep.L"), ({"lam": -1.0}, "loss.ep.lam"),
                                            ({"sampler": "heun"}, "loss.ep.sampler"),
                                            ({"multipliers": [0.0]}, "multipliers")])
def test_bad_values(kwargs, message):
    with pytest.raises(ErrpropError, match=message):
        CumulativeErrorLoss(VPProcess(), **kwargs)


def test_batch_too_small_and_wrong_process():
    p = VPProcess()
    with pytest.raises(ErrpropError, match="batch of ≥ 4"):
        CumulativeErrorLoss(p)(_den(p), torch.randn(3, 3), Noise.from_seed(0, 3))
    with pytest.raises(ErrpropError, match="discrete VP"):
        CumulativeErrorLoss(VEProcess())
