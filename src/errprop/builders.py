"""Config → objects: the one place where names in a config become processes, data, nets, losses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .clipping import DynamicThreshold
from .config import Config
from .data.gmm import PRESETS as MIXTURES  # the data names that are Gaussian mixtures
from .data.gmm import GaussianMixture
from .denoisers import Denoiser
from .diffusers_io import (
    build_unet,
    check_data_shape,
    config_from_diffusers,
    is_diffusers,
    model_folder,
    unet_from_config,
    write_pipeline,
)
from .errors import ErrpropError
from .keys import KEY_BATCH, KEY_FLIP, KEY_PERM
from .noise import Noise, stream_seeds
from .process import Process, VEProcess, VPProcess


def build_process(cfg: Config) -> Process:
    p = cfg.process
    if p.kind == "vp":
        return VPProcess(T=p.T, schedule=p.schedule, beta_start=p.beta_start, beta_end=p.beta_end,
                         beta_scale=p.beta_scale, sigmoid_start=p.sigmoid_start, sigmoid_end=p.sigmoid_end,
                         sigmoid_tau=p.sigmoid_tau,
                         trained_betas=tuple(p.betas) if p.betas is not None else None)
    return VEProcess(kind=p.ve_sigma, sigma_min=p.sigma_min, sigma_max=p.sigma_max)


# ------------------------------------------------------------------------------------------ data
class MixtureSource:
    """Training batches drawn exactly from a Gaussian mixture; sample j of step k is fixed by the seed."""

    def __init__(self, mixture: GaussianMixture) -> None:
        self.mixture = mixture
        self.shape = (mixture.dim,)

    def batch(self, seed: int, indices: np.ndarray) -> torch.Tensor:
        """Samples number ``indices`` (global over the run) of run ``seed``."""
        return self.mixture.sample(Noise(stream_seeds(seed, indices, KEY_BATCH)))


class ImageSource:
    """Batches of a fixed image set, reshuffled each epoch; global sample k of the run is
    position ``k mod N`` of epoch ``k div N``'s permutation, so any step can be rebuilt exactly."""

    def __init__(self, x: torch.Tensor, hflip: bool = False) -> None:
        self.x, self.hflip = x, hflip
        self.shape = tuple(x.shape[1:])

    @lru_cache(maxsize=2)  # noqa: B019 - one live source per run; caches the current epoch
    def _perm(self, seed: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(stream_seeds(seed, [epoch], KEY_PERM)[0]))
        return torch.randperm(len(self.x), generator=g)

    def batch(self, seed: int, indices: np.ndarray) -> torch.Tensor:
        """Samples number ``indices`` (global over the run) of run ``seed``."""
        idx = np.asarray(indices, dtype=np.int64)
        epochs, n = idx // len(self.x), len(self.x)
        rows = torch.empty(len(idx), dtype=torch.long)
        for e in np.unique(epochs):
            m = torch.from_numpy(epochs == e)
            rows[m] = self._perm(seed, int(e))[torch.from_numpy(idx % n)[m]]
        x = self.x[rows]
        if self.hflip:
            flip = Noise(stream_seeds(seed, indices, KEY_FLIP)).rand(1)[:, 0] < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def load_data(cfg: Config, split: str = "train"):
    """The data of a config: a :class:`GaussianMixture` or an image tensor (N, C, H, W) in [−1, 1]."""
    d = cfg.data
    if d.name in MIXTURES:
        return GaussianMixture.preset(d.name, dim=d.dim, components=d.components, seed=d.mixture_seed)
    from .data.images import load_images

    kwargs = {"image_size": d.image_size} if d.name == "folder" else {}
    return load_images(d.name, split=split, root=d.root, **kwargs).x


def build_source(cfg: Config):
    """The training batch source of a config."""
    data = load_data(cfg, "train")
    if isinstance(data, GaussianMixture):
        return MixtureSource(data)
    return ImageSource(data, hflip=cfg.data.hflip)


# ------------------------------------------------------------------------------------------ model
def build_net(cfg: Config, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    if m.net == "mlp":
        if len(shape) != 1:
            raise ErrpropError(f"model.net 'mlp' needs vector data, got samples of shape {shape}; use 'unet'")
        from .nets.mlp import MLP

        return MLP(shape[0], width=m.width, depth=m.depth, emb_dim=m.emb_dim, dropout=m.dropout)
    if m.net == "diffusers":
        net = build_unet(m.diffusers_path, m.class_label, m.dropout)
        check_data_shape(dict(net.unet.config), shape, m.diffusers_path, cfg.data.name)
        return net
    if len(shape) != 3:
        raise ErrpropError(f"model.net 'unet' needs image data (C, H, W), got samples of shape {shape}")
    from .nets.unet import UNet

    return UNet(shape[0], channels=m.channels, channel_mult=tuple(m.channel_mult),
                num_res_blocks=m.num_res_blocks, attention_resolutions=tuple(m.attention_resolutions),
                dropout=m.dropout, image_size=shape[1])


def build_denoiser(cfg: Config, shape: tuple[int, ...], process: Process | None = None) -> Denoiser:
    process = build_process(cfg) if process is None else process
    return Denoiser(build_net(cfg, shape), cfg.model.parameterization, process, cfg.model.sigma_data,
                    cfg.model.round_timesteps)


def sample_clip(cfg: Config):
    """The x̂0 clip of a config's DDIM/DDPM sampling: a range, a dynamic threshold, or None.

    ``sample.thresholding`` (diffusers' dynamic thresholding) replaces ``clip_sample``, as in
    diffusers' schedulers.

    ``sample.clip_sample: null`` means on for image data (in [−1, 1], diffusers' default) and off
    for Gaussian mixtures, whose support is unbounded.
    """
    if cfg.sample.thresholding:
        return DynamicThreshold(cfg.sample.dynamic_thresholding_ratio, cfg.sample.sample_max_value)
    on = cfg.sample.clip_sample
    if on is None:
        on = cfg.data.name not in MIXTURES
    return cfg.sample.clip_sample_range if on else None


def sampler_settings(cfg: Config) -> dict:
    """The user-level sampler settings of a config's ``sample`` section, for
    :func:`errprop.samplers.step_options` (each sampler takes the ones it uses)."""
    sc = cfg.sample
    return {"eta": sc.eta, "variance": sc.variance, "s_churn": sc.s_churn, "clip": sample_clip(cfg),
            "lower_order_final": sc.lower_order_final, "disable_corrector": tuple(sc.disable_corrector)}


def grid_options(cfg: Config) -> dict:
    """The :func:`errprop.grids.make_grid` options of a config's ``sample`` section."""
    sc = cfg.sample
    return {"rho": sc.rho, "spacing": sc.spacing, "sigmas": sc.sigmas, "steps_offset": sc.steps_offset}


def check_sampling(cfg: Config, process: Process, steps: list[int], grid: str | None = None) -> None:
    """Build every grid a command will sample with, before any work: a grid that cannot be made
    (e.g. more steps than the process has timesteps) is an error now, not after an hour of sampling."""
    from .grids import make_grid

    for k in steps:
        make_grid(grid or cfg.sample.grid, process, k, **grid_options(cfg))


def build_loss(cfg: Config, process: Process):
    """The training objective of a config (see :mod:`errprop.losses`)."""
    from .losses.simple import SimpleLoss

    lc = cfg.loss
    base = SimpleLoss(process, weighting=lc.weighting or cfg.model.parameterization,
                      sigma_sampling=lc.sigma_sampling, p_mean=lc.p_mean, p_std=lc.p_std,
                      sigma_data=cfg.model.sigma_data, input_perturbation=lc.input_perturbation)
    if lc.name == "simple":
        return base
    if lc.name == "sa":
        from .losses.sequence_aware import SequenceAwareLoss

        return SequenceAwareLoss(process, **vars(lc.sa))
    from .losses.cumulative import CumulativeErrorLoss

    return CumulativeErrorLoss(process, base=base, **vars(lc.ep))


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """A trained run, loaded: its config, process, denoiser (EMA or raw weights) and step."""

    path: object
    config: Config
    process: Process
    denoiser: Denoiser
    step: int
    shape: tuple[int, ...]
    source: str = "errprop"  #: or "diffusers" (a model folder loaded by errprop.diffusers_io)


def load_run(path, ema: bool | None = None, device: str | torch.device = "cpu",
             class_label: int | None = None, data: dict | None = None, needs_data: bool = False) -> Run:
    """Load the latest checkpoint of a run folder (or a given checkpoint file), or a diffusers model
    folder named ``diffusers:PATH`` (then ``class_label`` and ``data`` apply; see
    :func:`load_diffusers`).

    ``ema``: load the EMA weights (True) or the raw ones (False); ``None`` follows the run's
    ``sample.ema`` (default True, as diffusers users expect). ``needs_data``: the caller compares
    with the data set (evaluate, diagnose, grids), which a diffusers model must then be given."""
    if is_diffusers(path):
        if needs_data and not data:
            raise ErrpropError(f"{path}: a diffusers model names no data set to compare with; pass --data "
                               "NAME (fashion-mnist, digits, mnist, cifar10, or folder with --data-root DIR)")
        return load_diffusers(path, device, class_label, data)
    if data or class_label is not None:
        raise ErrpropError("--data, --data-root and --class-label are for diffusers:PATH models; an errprop "
                           "run knows its data and class")

    from . import checkpoint
    from .config import from_dict

    tensors, meta = checkpoint.load(path)
    try:
        cfg = from_dict(meta["config"])
    except ErrpropError as e:
        raise ErrpropError(f"checkpoint {path}: its config is not valid for this errprop: {e}") from None
    shape = tuple(meta["data_shape"])
    process = build_process(cfg)
    if cfg.model.net == "diffusers" and "diffusers_unet_config" in meta:  # no need for the init folder
        net = unet_from_config(meta["diffusers_unet_config"], cfg.model.class_label)
        denoiser = Denoiser(net, cfg.model.parameterization, process, cfg.model.sigma_data,
                            cfg.model.round_timesteps)
    else:
        denoiser = build_denoiser(cfg, shape, process)
    prefix = "ema" if (cfg.sample.ema if ema is None else ema) else "model"
    checkpoint.load_state(denoiser.net, checkpoint.split(tensors, prefix), f"{prefix} weights")
    denoiser.to(device).eval()
    run_dir = Path(path) if Path(path).is_dir() else checkpoint.resolve(path).parent.parent
    return Run(run_dir, cfg, process, denoiser, int(meta["step"]), shape)


def load_diffusers(path: object, device: str | torch.device = "cpu", class_label: int | None = None,
                   data: dict | None = None) -> Run:
    """A diffusers model folder as an errprop :class:`Run` (no network access): its UNet, β
    schedule, prediction type and sampling conventions (:mod:`errprop.diffusers_io`).

    ``data`` (e.g. ``{"name": "fashion-mnist"}`` or ``{"name": "folder", "root": DIR}``) is the data
    set that ``evaluate`` and ``diagnose`` compare against; a diffusers folder does not name one.
    """
    from .config import from_dict

    raw = config_from_diffusers(path, class_label)
    shape = tuple(raw.pop("_shape"))
    if data:
        raw["data"] = {**raw["data"], **data}
    cfg = from_dict({**raw, "train": {"steps": 1}})
    process = build_process(cfg)
    net = build_unet(cfg.model.diffusers_path, class_label)
    denoiser = Denoiser(net, cfg.model.parameterization, process,
                        round_timesteps=cfg.model.round_timesteps).to(device).eval()
    return Run(model_folder(path), cfg, process, denoiser, 1, shape, source="diffusers")


def export_diffusers(run_dir: object, out: object, ema: bool | None = None) -> Path:
    """Write a run trained from a diffusers UNet as a ``DDPMPipeline`` folder (``unet/``,
    ``scheduler/``, ``model_index.json``) with the run's EMA (or raw) weights; returns ``out``."""
    return write_pipeline(load_run(run_dir, ema=ema), out)
