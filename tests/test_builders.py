"""Every combination a config can name builds, trains a few steps and samples — or is refused up
front with a clear error, for the combinations that cannot work (listed here with the reason)."""

import itertools
import json
import math

import pytest
import torch

from errprop import config
from errprop.builders import build_denoiser, build_loss, build_process, grid_options, sample_clip
from errprop.errors import ErrpropError
from errprop.generate import generate
from errprop.train import train

T_SMALL = 100
PROCESSES = {
    "vp-linear": ["process.schedule=linear"],
    "vp-scaled_linear": ["process.schedule=scaled_linear"],
    "vp-cosine": ["process.schedule=cosine"],
    "vp-sigmoid": ["process.schedule=sigmoid"],
    "vp-sigmoid_abar": ["process.schedule=sigmoid_abar"],
    "vp-trained": ["process.schedule=trained", f"process.betas=[{', '.join(['0.01'] * T_SMALL)}]"],
    "vp-linear-epdm": ["process.schedule=linear", "process.beta_scale=epdm"],
    "ve-sqrt": ["process.kind=ve", "process.ve_sigma=sqrt"],
    "ve-linear": ["process.kind=ve", "process.ve_sigma=linear"],
}
PARAMS = ["eps", "x0", "v", "edm"]
LOSSES = {"simple": [], "simple-ip": ["loss.input_perturbation=0.1"], "simple-lognormal":
          ["loss.sigma_sampling=lognormal"], "sa": ["loss.name=sa"], "sa-chain":
          ["loss.name=sa", "loss.sa.window_noise=chain", "loss.sa.tau=paper"], "ep": ["loss.name=ep"],
          "ep-ddim": ["loss.name=ep", "loss.ep.sampler=ddim", "loss.ep.backprop=last"]}
SAMPLERS = ["ddim", "ddpm", "euler", "heun"]
GRIDS = ["uniform", "quadratic", "edm", "exponential", "list"]
SMALL = ["model.width=16", "model.depth=1", "train.batch_size=16", "train.steps=2", "train.log_every=1",
         "train.ckpt_every=2", f"process.T={T_SMALL}", "sample.n=8", "sample.steps=4"]


def impossible(process: str, loss: str) -> str | None:
    """Why a combination cannot work (None: it must work)."""
    if process.startswith("ve") and loss.split("-")[0] in ("sa", "ep"):
        return "SA and EP are defined on the discrete VP chain"
    return None


@pytest.mark.parametrize("process,param,loss", list(itertools.product(PROCESSES, PARAMS, LOSSES)))
def test_every_process_parameterization_and_loss_trains(tmp_path, process, param, loss):
    overrides = SMALL + PROCESSES[process] + LOSSES[loss] + [f"model.parameterization={param}"]
    reason = impossible(process, loss)
    if reason:
        with pytest.raises(ErrpropError, match="needs process.kind 'vp'"):
            config.load(overrides=overrides)
        return
    cfg = config.load(overrides=overrides)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2 and not result.interrupted
    rows = [ln for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if ln]
    assert len(rows) == 2 and all(math.isfinite(v) for v in json.loads(rows[-1]).values())


@pytest.mark.parametrize("process,sampler,grid", list(itertools.product(PROCESSES, SAMPLERS, GRIDS)))
def test_every_process_sampler_and_grid_samples(process, sampler, grid):
    extra = ["sample.sigmas=[5.0, 1.0, 0.2, 0.05]"] if grid == "list" else []
    cfg = config.load(overrides=SMALL + PROCESSES[process] + [f"sample.sampler={sampler}",
                                                               f"sample.grid={grid}"] + extra)
    proc = build_process(cfg)
    torch.manual_seed(0)
    den = build_denoiser(cfg, (2,), proc).eval()
    build_loss(cfg, proc)  # the loss of a sampling-only config builds too
    x = generate(den, proc, (2,), 8, sampler=sampler, steps=cfg.sample.steps, grid=grid,
                 grid_options=grid_options(cfg), clip=sample_clip(cfg))
    assert x.shape == (8, 2) and torch.isfinite(x).all()


def test_load_run_follows_the_runs_sample_ema_unless_told(tmp_path):
    from errprop.builders import load_run

    cfg = config.load(overrides=SMALL + ["train.steps=3", "train.ckpt_every=3", "train.ema_decay=0.5",
                                         "train.ema_warmup=false"])
    train(cfg, tmp_path / "run", progress=False)
    ema, raw = (load_run(tmp_path / "run", ema=e).denoiser.net.state_dict() for e in (True, False))
    differ = [k for k in ema if not torch.equal(ema[k], raw[k])]
    assert differ, "EMA and raw weights are equal after 3 steps at decay 0.5: the test sees nothing"
    default = load_run(tmp_path / "run").denoiser.net.state_dict()
    assert all(torch.equal(default[k], ema[k]) for k in ema)
    cfg_raw = config.load(overrides=SMALL + ["train.steps=3", "train.ckpt_every=3", "train.ema_decay=0.5",
                                             "train.ema_warmup=false", "sample.ema=false"])
    train(cfg_raw, tmp_path / "raw", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(
        load_run(tmp_path / "raw").denoiser.net.state_dict().values(),
        load_run(tmp_path / "raw", ema=False).denoiser.net.state_dict().values(), strict=True))
