"""EP: reduction to the base loss, R by hand, the rollout is the sampler, gradient paths, validation."""

import pytest
import torch

from errprop.denoisers import Denoiser
from errprop.errors import ErrpropError
from errprop.losses.cumulative import CumulativeErrorLoss
from errprop.losses.simple import SimpleLoss
from errprop.metrics.mmd import mmd2
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess
from errprop.samplers import sample


def _den(p):
    torch.manual_seed(0)
    return Denoiser(MLP(3, width=32, depth=1), "eps", p)


@pytest.mark.parametrize("base", [None, "x0"])
def test_lambda_zero_equals_base_loss(base):
    p = VPProcess()
    d, x0 = _den(p), torch.randn(16, 3)
    base_loss = SimpleLoss(p) if base is None else SimpleLoss(p, weighting=base)
    ref = base_loss(d, x0, Noise.from_seed(0, 16))
    kwargs = {} if base is None else {"base": base_loss}
    out = CumulativeErrorLoss(p, lam=0.0, **kwargs)(d, x0, Noise.from_seed(0, 16))
    assert torch.equal(out["loss"], ref["loss"]) and torch.equal(out["loss_simple"], ref["loss_simple"])
    assert out["loss_ep"] >= 0


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_r_by_hand_from_the_same_streams(sampler):
    """loss_ep = MMD²(half a rolled h → τ, half b noised to τ), draws in the documented order."""
    p = VPProcess(T=100)
    d, x0 = _den(p), torch.randn(10, 3)  # odd halves: B = 10 → 5 + 5
    loss = CumulativeErrorLoss(p, lam=2.0, sampler=sampler)
    out = loss(d, x0, Noise.from_seed(7, 10))
    noise = Noise.from_seed(7, 10)
    base = SimpleLoss(p)(d, x0, noise)
    h, tail = loss.draw_steps(noise)
    a, b = noise[:5], noise[5:]
    x_a = x0[:5] + float(p.sigmas[h]) * a.randn(3)
    x_b = x0[5:] + float(p.sigmas[tail]) * b.randn(3)
    step = "ddpm" if sampler == "ancestral" else "ddim"
    with torch.no_grad():  # the rollout *is* the sampler, along the process's own σ grid
        x = sample(d, x_a, p.sigmas[tail:h + 1].flip(0), a, step=step)
    r = mmd2(x, x_b)
    torch.testing.assert_close(out["loss_ep"], r, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["loss"], base["loss"] + 2.0 * r, rtol=1e-5, atol=1e-6)


def test_head_and_tail_draws():
    p = VPProcess(T=6)
    loss = CumulativeErrorLoss(p, L=5)
    draws = [loss.draw_steps(Noise.from_seed(seed, 4)) for seed in range(400)]
    heads = {h for h, _ in draws}
    lengths = {h - t for h, t in draws if t > 0}
    assert heads == {1, 2, 3, 4, 5} and lengths == {1, 2, 3, 4}
    assert all(0 <= t < h for h, t in draws)
    assert any(t == 0 for _, t in draws)  # the tail stops at σ_0, the first noise level
    assert loss.draw_steps(Noise.from_seed(3, 4)) == loss.draw_steps(Noise.from_seed(3, 9))


class Recording(torch.nn.Module):
    """Keeps every denoiser output so the test can see where gradient arrives."""

    def __init__(self, denoiser):
        super().__init__()
        self.d, self.outs = denoiser, []

    def forward(self, x, sigma):
        out = self.d(x, sigma)
        if out.requires_grad:
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
    mmd2(out, torch.randn(8, 3)).backward()
    got = [o.grad is not None and o.grad.abs().sum().item() > 0 for o in rec.outs]
    assert got == ([True] * 4 if backprop == "full" else [False, False, False, True])


@pytest.mark.parametrize("backprop", ["full", "last"])
def test_whole_loss_calls_base_then_rollout_and_backpropagates(backprop):
    p = VPProcess(T=100)
    rec = Recording(_den(p))
    x0 = torch.randn(16, 3)
    loss = CumulativeErrorLoss(p, backprop=backprop, base=SimpleLoss(p, weighting="x0"))
    out = loss(rec, x0, Noise.from_seed(4, 16))
    noise = Noise.from_seed(4, 16)
    SimpleLoss(p)(rec.d, x0, noise)  # consume the base loss's draws
    h, tail = loss.draw_steps(noise)
    assert [o.shape[0] for o in rec.outs] == [16] + [8] * (h - tail)
    out["loss"].backward()
    rollout = rec.outs[1:]
    got = [o.grad is not None and o.grad.abs().sum().item() > 0 for o in rollout]
    assert got == ([True] * len(rollout) if backprop == "full" else [False] * (len(rollout) - 1) + [True])
    assert all(q.grad is not None for q in rec.d.parameters())


@pytest.mark.parametrize("kwargs,message", [
    ({"L": 0}, "loss.ep.L must be an integer ≥ 1, got 0"), ({"lam": -1.0}, "loss.ep.lam must be ≥ 0"),
    ({"sampler": "heun"}, "loss.ep.sampler"), ({"backprop": "none"}, "loss.ep.backprop"),
    ({"multipliers": [0.0]}, "loss.ep.multipliers")])
def test_bad_values(kwargs, message):
    with pytest.raises(ErrpropError, match=message):
        CumulativeErrorLoss(VPProcess(), **kwargs)


def test_batch_too_small_and_wrong_process():
    p = VPProcess()
    with pytest.raises(ErrpropError, match="batch of ≥ 4"):
        CumulativeErrorLoss(p)(_den(p), torch.randn(3, 3), Noise.from_seed(0, 3))
    with pytest.raises(ErrpropError, match="discrete VP"):
        CumulativeErrorLoss(VEProcess())


# --- The B4 "EP explosion" guard (issue 9): EP is the baseline plus λR, nothing else. -----------
_UNET = ["model.channels=8", "model.channel_mult=[1,2]", "model.dropout=0.1", "train.batch_size=32",
         "train.warmup=5", "train.log_every=1", "train.lr=1e-3", "train.ckpt_every=1000"]


def _train_digits(tmp_path, name, overrides, steps):
    from errprop import checkpoint, config
    from errprop.train import train

    cfg = config.load(overrides=["data.name=digits", "model.net=unet"] + _UNET
                      + [f"train.steps={steps}"] + overrides)
    train(cfg, tmp_path / name, progress=False)
    return checkpoint.load(tmp_path / name)[0], tmp_path / name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ep_at_lambda_zero_trains_the_baseline_bit_for_bit(tmp_path, precision):
    """The rollout (dropout on, bf16 autocast, its own noise draws and network calls) must leave
    no trace when λ = 0: same weights and EMA as the baseline run, bit for bit. An EP run that
    drifts from its baseline at small λ — as B4's did — fails here."""
    pr = [f"train.precision={precision}"]
    base, _ = _train_digits(tmp_path, "base", pr, 6)
    ep, _ = _train_digits(tmp_path, "ep", pr + ["loss.name=ep", "loss.ep.lam=0.0"], 6)
    for k in (k for k in base if k.startswith(("model.", "ema."))):
        assert torch.equal(base[k], ep[k]), k


@pytest.mark.slow
def test_ep_at_the_code_balance_trains_images_without_blowing_up(tmp_path):
    """λ = D (the released code's `mse_mean + 1·R`) on 8×8 digits, in bf16 as on a GPU: losses and
    gradients stay finite, the base loss follows the baseline's, and samples (x̂0 clipped, the
    default for images) spread like the baseline's. Unclipped, a model this short-trained gives DDIM
    samples of magnitude ~100 — the baseline as much as EP — which is what FD ≈ 10⁵ looks like."""
    import json

    from errprop.builders import load_run, sample_clip
    from errprop.generate import generate

    pr = ["train.precision=bf16"]
    _, base_dir = _train_digits(tmp_path, "base", pr, 150)
    _, ep_dir = _train_digits(tmp_path, "ep", pr + ["loss.name=ep", "loss.ep.lam=64.0"], 150)

    def rows(d):
        return [json.loads(r) for r in (d / "metrics.jsonl").read_text().splitlines()]
    b, e = rows(base_dir), rows(ep_dir)
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in e)
    assert all(r["loss_ep"] > 0 for r in e)  # R is really there, at the code's weight
    late_b = sum(r["loss_simple"] for r in b[-50:]) / 50
    late_e = sum(r["loss_simple"] for r in e[-50:]) / 50
    assert late_e < 1.5 * late_b, (late_e, late_b)
    std = {}
    for name, d in (("base", base_dir), ("ep", ep_dir)):
        run = load_run(d)
        x = generate(run.denoiser, run.process, run.shape, 200, sampler="ddim", steps=20,
                     batch_size=200, clip=sample_clip(run.config))
        std[name] = float(x.std())
    assert 0.7 * std["base"] < std["ep"] < 1.4 * std["base"], std  # same noise: EP ≈ its baseline
