"""diffusers models as errprop models: load a ``UNet2DModel`` with its scheduler config, and export.

A user's model is a folder written by ``save_pretrained``: a model folder (``config.json`` +
weights, with ``scheduler_config.json`` beside it or in a sibling ``scheduler/``), a pipeline
folder (``model_index.json``, ``unet/``, ``scheduler/``; ``DDPMPipeline`` / ``DDIMPipeline``), or
a folder holding the two parts saved separately (``unet/`` and ``scheduler/``, no index).
:func:`load_diffusers` reads it without network access and returns an errprop
:class:`~errprop.builders.Run` whose config says, in errprop's terms, everything the scheduler
config says:

===========================  ==================================================================
diffusers                    errprop
===========================  ==================================================================
``prediction_type``          ``model.parameterization``: epsilon → eps, v_prediction → v,
                             sample → x0
betas (any ``beta_schedule``, ``process.schedule``: the named schedule when errprop's reproduces
``trained_betas``)           the scheduler's betas to 1e-6, else ``trained`` with the betas
``num_train_timesteps``      ``process.T``
``timestep_spacing``,        ``sample.spacing``, ``sample.steps_offset``
``steps_offset``
``clip_sample(_range)``      ``sample.clip_sample``, ``sample.clip_sample_range``
``thresholding`` & co.       ``sample.thresholding``, ``dynamic_thresholding_ratio``,
                             ``sample_max_value``
``variance_type`` (DDPM)     ``sample.variance``: fixed_small → small, fixed_large → large
scheduler class and its      ``sample.sampler`` and its options (:data:`SCHEDULERS`): DDPM → ddpm,
solver settings              DDIM → ddim (η = 0), DPMSolverMultistep → dpmpp_2m / dpmpp_3m /
                             dpmpp_2m_sde (``solver_order``, ``algorithm_type``), UniPCMultistep →
                             unipc_2 / unipc_3, EulerDiscrete → euler, EulerAncestralDiscrete →
                             euler_ancestral, HeunDiscrete → heun; ``lower_order_final``,
                             ``disable_corrector``
``use_karras_sigmas``,       ``sample.grid``: edm (ρ = 7 over the process's σ range), exponential;
``use_exponential_sigmas``   else uniform (the multistep schedulers' own leading/linspace
                             spacings: ``leading_multistep``, ``linspace_multistep``)
===========================  ==================================================================

Not reproduced: DDIM's ``set_alpha_to_one = False`` and the multistep schedulers'
``final_sigmas_type = "sigma_min"`` stop diffusers' last step at ᾱ_0 (σ ≈ 0.01 for linear β) and
return that slightly noisy x; errprop's grids always end at σ = 0 (a warning says so). diffusers'
EulerDiscrete/EulerAncestral ``linspace`` spacing uses fractional timesteps (errprop rounds them)
and their Karras grids span the σ of the spaced timesteps (which depend on the step count;
errprop's span the process's σ range); HeunDiscrete's last step differs (EDM's Euler step into
σ = 0). Other scheduler classes
(DPMSolverSinglestep, LMS, KDPM2, DEIS, PNDM, …), learned variances, zero-terminal-SNR rescaling,
Fourier (VE) time embeddings and text-conditioned ``UNet2DConditionModel`` are refused with a
one-line error. Class-conditional UNets sample one class, ``model.class_label``.

:func:`export_diffusers` writes a run whose network is a diffusers UNet (``train --init
diffusers:PATH``) back as a pipeline folder that ``UNet2DModel.from_pretrained`` and the scheduler
load unchanged.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .errors import ErrpropError

PREFIX = "diffusers:"
PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
VARIANCE = {"fixed_small": "small", "fixed_small_log": "small", "fixed_large": "large",
            "fixed_large_log": "large"}
_NAMED = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine",
          "sigmoid": "sigmoid"}


def is_diffusers(path: object) -> bool:
    """Whether a command-line model argument names a diffusers folder (``diffusers:PATH``)."""
    return str(path).startswith(PREFIX)


def model_folder(path: object) -> Path:
    text = str(path)
    return Path(text[len(PREFIX):] if text.startswith(PREFIX) else text).expanduser()


@contextmanager
def quiet() -> Iterator[None]:
    """diffusers' own log messages below ERROR, and its deprecation notices, are silenced while
    errprop loads or saves through it: its advice (install accelerate for faster loading, config
    keys it ignores, options it will remove) is not errprop's output. Its errors are still logged,
    and its exceptions raised as ever; the user's log level is restored after."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ErrpropError(f"diffusers: cannot read the {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise ErrpropError(f"diffusers: the {what} {path} is not a JSON object")
    return data


def locate(path: object) -> tuple[Path, Path]:
    """(UNet folder, scheduler config file) of a model or pipeline folder, or a clear error."""
    root = model_folder(path)
    if not root.is_dir():
        raise ErrpropError(f"diffusers:{root}: not a folder")
    if (root / "model_index.json").is_file() and not (root / "unet" / "config.json").is_file():
        index = _read_json(root / "model_index.json", "pipeline index")
        raise ErrpropError(f"diffusers:{root}: a pipeline ({index.get('_class_name', '?')}) without a "
                           "unet/ folder; errprop needs a UNet2DModel")
    if (root / "config.json").is_file():
        unet = root
        candidates = [root / "scheduler_config.json", root / "scheduler" / "scheduler_config.json",
                      root.parent / "scheduler" / "scheduler_config.json"]
    elif (root / "unet" / "config.json").is_file():  # a pipeline, or its two parts saved separately
        unet = root / "unet"
        candidates = [root / "scheduler" / "scheduler_config.json"]
    else:
        models = sorted(d.name for d in root.iterdir() if (d / "config.json").is_file())
        hint = f"; pass the model's own folder, e.g. diffusers:{root / models[0]}" if models else ""
        raise ErrpropError(f"diffusers:{root}: not a diffusers model folder (no model_index.json, "
                           f"config.json or unet/config.json){hint}")
    cls = _read_json(unet / "config.json", "model config").get("_class_name")
    if cls == "UNet2DConditionModel":
        raise ErrpropError(f"diffusers:{root}: text-conditioned UNets (UNet2DConditionModel) are not "
                           "supported; errprop measures unconditional and class-conditional UNet2DModel")
    if cls != "UNet2DModel":
        raise ErrpropError(f"diffusers:{root}: unsupported model class {cls!r}; errprop loads UNet2DModel")
    sched = next((c for c in candidates if c.is_file()), None)
    if sched is None:
        raise ErrpropError(f"diffusers:{root}: no scheduler config (looked for "
                           f"{', '.join(str(c) for c in candidates)}); save the scheduler beside the model")
    return unet, sched


#: diffusers scheduler classes errprop samples as they do → errprop's sampler (the multistep ones
#: refine it from the config, :func:`_sampler`).
SCHEDULERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "DPMSolverMultistepScheduler": "dpmpp",
              "UniPCMultistepScheduler": "unipc", "EulerDiscreteScheduler": "euler",
              "EulerAncestralDiscreteScheduler": "euler_ancestral", "HeunDiscreteScheduler": "heun"}
_MULTISTEP = ("dpmpp", "unipc")


def _scheduler(sched_file: Path):
    """The scheduler config with diffusers' defaults filled in, its class name and its betas."""
    import diffusers

    raw = _read_json(sched_file, "scheduler config")
    cls = raw.get("_class_name", "DDPMScheduler")
    if cls not in SCHEDULERS:
        raise ErrpropError(f"diffusers: scheduler class {cls!r} is not supported; errprop samples with "
                           f"{', '.join(SCHEDULERS)} (save one of those beside the model)")
    try:
        with quiet():
            sched = getattr(diffusers, cls).from_config(raw)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise ErrpropError(f"diffusers: scheduler config {sched_file}: {e}") from None
    return dict(sched.config), cls, sched.betas.double()


def _refuse(sc: dict, cls: str, keys: dict) -> None:
    """A one-line error for the first setting in ``keys`` ({name: errprop's only value}) that differs."""
    for key, ours in keys.items():
        if key in sc and sc[key] != ours and not (ours is None and sc[key] in (False, None)):
            raise ErrpropError(f"diffusers: {cls} with {key}={sc[key]!r} is not supported "
                               f"(errprop reproduces {key}={ours!r})")


def _sampler(sc: dict, cls: str) -> tuple[dict, bool]:
    """The ``sample`` fields of a scheduler's solver settings, and whether the network is
    conditioned on rounded timesteps (diffusers' multistep schedulers on Karras grids)."""
    kind = SCHEDULERS[cls]
    fields: dict = {"sampler": kind, "grid": "uniform"}
    _refuse(sc, cls, {"use_lu_lambdas": False, "use_beta_sigmas": False, "use_flow_sigmas": False,
                      "timestep_type": "discrete"})
    if kind == "dpmpp":
        algo, order = sc.get("algorithm_type", "dpmsolver++"), int(sc.get("solver_order", 2))
        if algo not in ("dpmsolver++", "sde-dpmsolver++"):
            raise ErrpropError(f"diffusers: DPMSolverMultistepScheduler with algorithm_type {algo!r} (noise "
                               "prediction) is not supported; errprop has DPM-Solver++ (dpmsolver++, "
                               "sde-dpmsolver++)")
        _refuse(sc, cls, {"solver_type": "midpoint", "euler_at_final": False, "variance_type": None,
                          "lambda_min_clipped": -float("inf")})
        names = ({1: "ddim", 2: "dpmpp_2m", 3: "dpmpp_3m"} if algo == "dpmsolver++"
                 else {1: "ddpm", 2: "dpmpp_2m_sde"})  # first order: DDIM and DDPM ancestral exactly
        if order not in names:
            raise ErrpropError(f"diffusers: DPMSolverMultistepScheduler with algorithm_type {algo!r} and "
                               f"solver_order {order} is not supported; errprop has orders {sorted(names)}")
        fields["sampler"] = names[order]
    elif kind == "unipc":
        order = int(sc.get("solver_order", 2))
        _refuse(sc, cls, {"solver_type": "bh2", "predict_x0": True, "solver_p": None})
        if order not in (2, 3):
            raise ErrpropError(f"diffusers: UniPCMultistepScheduler with solver_order {order} is not "
                               "supported; errprop has unipc_2 and unipc_3")
        fields["sampler"] = f"unipc_{order}"
        fields["disable_corrector"] = [int(i) for i in sc.get("disable_corrector") or []]
    if kind in _MULTISTEP:
        fields["lower_order_final"] = bool(sc.get("lower_order_final", True))
    if sc.get("final_sigmas_type", "zero") != "zero":
        print(f"warning: diffusers {cls} with final_sigmas_type={sc['final_sigmas_type']!r} stops at "
              "σ(t = 0) (a slightly noisy sample); errprop's grids end at σ = 0", file=sys.stderr)
    if sc.get("use_karras_sigmas"):
        fields.update(grid="edm", rho=7.0)
    elif sc.get("use_exponential_sigmas"):
        fields["grid"] = "exponential"
    spacing = sc.get("timestep_spacing", "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise ErrpropError(f"diffusers: timestep_spacing {spacing!r} is not supported")
    fields["spacing"] = f"{spacing}_multistep" if kind in _MULTISTEP and spacing != "trailing" else spacing
    # diffusers rounds the Karras timesteps of these two (not on the cosine schedule) but not Euler's
    rounded = (kind in _MULTISTEP and bool(sc.get("use_karras_sigmas"))
               and sc.get("beta_schedule") != "squaredcos_cap_v2")
    return fields, rounded


def _process_fields(sc: dict, betas: torch.Tensor) -> dict:
    from .process import beta_schedule

    if sc.get("rescale_betas_zero_snr"):
        raise ErrpropError("diffusers: rescale_betas_zero_snr (zero terminal SNR) makes σ_max infinite; "
                           "errprop's samplers start from a finite σ_max")
    T = int(sc["num_train_timesteps"])
    fields = {"kind": "vp", "T": T, "beta_start": float(sc["beta_start"]), "beta_end": float(sc["beta_end"])}
    name = _NAMED.get(sc["beta_schedule"]) if sc.get("trained_betas") is None else None
    if name is not None:
        ours = beta_schedule(name, T, fields["beta_start"], fields["beta_end"])
        if torch.allclose(ours, betas, rtol=1e-6, atol=1e-9):
            return {**fields, "schedule": name}
    return {**fields, "schedule": "trained", "betas": [float(b) for b in betas]}


def config_from_diffusers(path: object, class_label: int | None = None) -> dict:
    """The errprop config dict (sections process, model, sample) of a diffusers folder."""
    unet, sched_file = locate(path)
    ucfg = _read_json(unet / "config.json", "model config")
    if ucfg.get("time_embedding_type", "positional") != "positional":
        raise ErrpropError(f"diffusers: time_embedding_type {ucfg['time_embedding_type']!r} (a VE / "
                           "score-SDE model) is not supported; errprop loads DDPM-style UNet2DModels")
    sc, cls, betas = _scheduler(sched_file)
    pred = sc.get("prediction_type", "epsilon")
    if pred not in PREDICTION:
        raise ErrpropError(f"diffusers: prediction_type {pred!r} is not supported; errprop handles "
                           f"{', '.join(PREDICTION)}")
    variance = sc.get("variance_type") or "fixed_small"  # (DDPM's; the others have none or None)
    if variance not in VARIANCE:
        raise ErrpropError(f"diffusers: variance_type {variance!r} (a learned variance) is not supported; "
                           f"errprop handles {', '.join(VARIANCE)}")
    fields, rounded = _sampler(sc, cls)
    if cls == "DDIMScheduler" and not sc.get("set_alpha_to_one", True):
        print("warning: diffusers DDIM with set_alpha_to_one=False stops at ᾱ_0 (a slightly noisy "
              "sample); errprop's grids end at σ = 0", file=sys.stderr)
    if ucfg.get("num_class_embeds") and class_label is None:
        raise ErrpropError(f"diffusers: a class-conditional UNet ({ucfg['num_class_embeds']} classes): pass "
                           "--class-label K")
    channels, size, _ = sample_shape(ucfg)
    return {
        "process": _process_fields(sc, betas),
        "model": {"net": "diffusers", "diffusers_path": str(unet.resolve()), "class_label": class_label,
                  "parameterization": PREDICTION[pred], "round_timesteps": rounded},
        "sample": {**fields, "steps_offset": int(sc.get("steps_offset", 0)),
                   # only DDPM and DDIM have clip_sample (on by default); the others never clip
                   "clip_sample": bool(sc.get("clip_sample", False)),
                   "clip_sample_range": float(sc.get("clip_sample_range", 1.0)),
                   "thresholding": bool(sc.get("thresholding", False)),
                   "dynamic_thresholding_ratio": float(sc.get("dynamic_thresholding_ratio", 0.995)),
                   "sample_max_value": float(sc.get("sample_max_value", 1.0)),
                   "variance": VARIANCE[variance]},
        "data": {"name": "folder", "image_size": size},
        "_shape": [channels, size, size],
    }


def sample_shape(unet_config: dict) -> tuple[int, int, int]:
    """The (C, H, W) of the samples a UNet2DModel config describes (``in_channels``,
    ``sample_size``; diffusers' defaults 3 and, where unset, 28 as errprop's image default)."""
    size = unet_config.get("sample_size")
    size = size[0] if isinstance(size, list | tuple) else size
    return int(unet_config.get("in_channels", 3)), int(size or 28), int(size or 28)


def check_data_shape(unet_config: dict, shape: tuple[int, ...], where: object, data: str) -> None:
    """A clear error, naming both shapes, when the samples of ``data`` (shape ``shape``) are not the
    UNet's: its channels in and out, and its ``sample_size`` (the size its pipeline samples at)."""
    c_in, c_out = int(unet_config.get("in_channels", 3)), int(unet_config.get("out_channels", 3))
    if c_out != c_in:
        raise ErrpropError(f"diffusers UNet {where}: in_channels {c_in} but out_channels {c_out}; errprop's "
                           "denoisers predict a sample-shaped output (equal channels in and out)")
    model = sample_shape(unet_config)
    if unet_config.get("sample_size") is None:
        model = (model[0], *shape[1:]) if len(shape) == 3 else model
    if tuple(shape) != model:
        hint = (f" (a folder: set data.image_size={model[1]} and give it {model[0]}-channel images)"
                if data == "folder" else "")
        raise ErrpropError(
            f"diffusers UNet {where} takes samples of shape {'×'.join(map(str, model))} (in_channels "
            f"{model[0]}, sample_size {unet_config.get('sample_size')}), but data {data!r} has samples of "
            f"shape {'×'.join(map(str, shape))}; train it on data of its shape{hint}")


class DiffusersUNet(nn.Module):
    """A ``UNet2DModel`` as an errprop network ``net(x_t, t) -> output`` (the timestep index as a
    float, which diffusers' sinusoidal embedding takes as it is)."""

    def __init__(self, unet: nn.Module, class_label: int | None = None) -> None:
        super().__init__()
        self.unet, self.class_label = unet, class_label

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        labels = None
        if self.class_label is not None:
            labels = torch.full((len(x),), self.class_label, device=x.device, dtype=torch.long)
        return self.unet(x, t.to(x.dtype), class_labels=labels).sample


def build_unet(path: str | None, class_label: int | None = None, dropout: float | None = None) -> nn.Module:
    """The :class:`DiffusersUNet` of a UNet folder with its saved weights (architecture and init)."""
    from diffusers import UNet2DModel

    if not path:
        raise ErrpropError("model.net 'diffusers' needs model.diffusers_path (a UNet2DModel folder)")
    unet_dir = Path(path)
    if not (unet_dir / "config.json").is_file() and (unet_dir / "unet" / "config.json").is_file():
        unet_dir = locate(path)[0]  # a pipeline folder (or unet/ and scheduler/ without an index)
    if not (unet_dir / "config.json").is_file():
        raise ErrpropError(f"model.diffusers_path {unet_dir}: the diffusers UNet folder is missing (this "
                           "run's architecture comes from it)")
    try:
        with quiet():
            unet = UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError) as e:
        raise ErrpropError(f"diffusers: cannot load the UNet in {unet_dir}: {e}") from None
    return DiffusersUNet(unet, class_label)


def unet_from_config(unet_config: dict, class_label: int | None = None) -> nn.Module:
    """A :class:`DiffusersUNet` built from a saved UNet config (weights to be loaded by the caller)."""
    from diffusers import UNet2DModel

    config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    with quiet():
        return DiffusersUNet(UNet2DModel.from_config(config), class_label)


def scheduler_config(cfg) -> tuple[str, dict]:
    """The diffusers scheduler class name and settings that sample as ``cfg.sample`` does — the
    inverse of what loading a folder reads (:func:`config_from_diffusers`), for every errprop sampler
    with a diffusers counterpart; any other is a one-line error naming it."""
    p, sc = cfg.process, cfg.sample
    if p.kind != "vp":
        raise ErrpropError("export: only VP (DDPM) processes have a diffusers scheduler")
    schedule = {v: k for k, v in _NAMED.items()}.get(p.schedule)
    if schedule is None and p.schedule != "trained":
        raise ErrpropError(f"export: β schedule {p.schedule!r} has no diffusers name; retrain with a "
                           "diffusers schedule")
    inverse = {v: k for k, v in PREDICTION.items()}
    kwargs: dict = {"num_train_timesteps": p.T, "beta_start": p.beta_start, "beta_end": p.beta_end,
                    "beta_schedule": schedule or "linear",
                    "trained_betas": list(p.betas) if p.schedule == "trained" else None,
                    "prediction_type": inverse[cfg.model.parameterization],
                    "timestep_spacing": sc.spacing.removesuffix("_multistep"),
                    "steps_offset": sc.steps_offset}
    sampler = sc.sampler
    if sampler in ("ddim", "ddpm"):
        kwargs |= {"clip_sample": bool(sc.clip_sample) if sc.clip_sample is not None else True,
                   "clip_sample_range": sc.clip_sample_range, "thresholding": sc.thresholding,
                   "dynamic_thresholding_ratio": sc.dynamic_thresholding_ratio,
                   "sample_max_value": sc.sample_max_value}
        if sampler == "ddpm":
            return "DDPMScheduler", kwargs | {"variance_type": {"small": "fixed_small",
                                                                "large": "fixed_large"}[sc.variance]}
        return "DDIMScheduler", kwargs
    dpm, unipc = "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"
    multistep = {"dpmpp_2m": (dpm, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
                 "dpmpp_3m": (dpm, {"algorithm_type": "dpmsolver++", "solver_order": 3}),
                 "dpmpp_2m_sde": (dpm, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
                 "unipc_2": (unipc, {"solver_order": 2}), "unipc_3": (unipc, {"solver_order": 3}),
                 "euler": ("EulerDiscreteScheduler", {}),
                 "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
                 "heun": ("HeunDiscreteScheduler", {})}
    if sampler not in multistep:
        raise ErrpropError(f"export: sampler {sampler!r} has no diffusers scheduler; set sample.sampler "
                           f"to one of ddim, ddpm, {', '.join(multistep)}")
    if sc.grid not in ("uniform", "exponential") and not (sc.grid == "edm" and sc.rho == 7.0):
        rho = f" with rho {sc.rho}" if sc.grid == "edm" else ""
        raise ErrpropError(f"export: sample.grid {sc.grid!r}{rho} has no diffusers setting (uniform, "
                           "exponential, or edm with rho 7: Karras σ)")
    cls, extra = multistep[sampler]
    kwargs |= extra
    if sc.grid == "edm":
        kwargs["use_karras_sigmas"] = True
    elif sc.grid == "exponential":
        kwargs["use_exponential_sigmas"] = True
    if cls in (dpm, unipc):
        kwargs["lower_order_final"] = sc.lower_order_final
        kwargs |= {"thresholding": sc.thresholding, "sample_max_value": sc.sample_max_value,
                   "dynamic_thresholding_ratio": sc.dynamic_thresholding_ratio}
        if cls == unipc:
            kwargs["disable_corrector"] = list(sc.disable_corrector)
    return cls, kwargs


def write_pipeline(run, out: object) -> Path:
    """Write a loaded run (:class:`errprop.builders.Run`) with a diffusers UNet as a ``DDPMPipeline``
    folder (``unet/``, ``scheduler/`` with the scheduler of the run's sampler, ``model_index.json``);
    returns ``out``. The run-level entry point is :func:`errprop.builders.export_diffusers`."""
    import diffusers

    from .files import make_dir, write_json

    cfg = run.config
    if cfg.model.net != "diffusers":
        raise ErrpropError(f"export: {run.path} has an errprop {cfg.model.net!r} network; only runs started "
                           "from a diffusers model (train --init diffusers:PATH) export to diffusers")
    cls, kwargs = scheduler_config(cfg)
    out = make_dir(model_folder(out), "--to diffusers")
    with quiet():
        scheduler = getattr(diffusers, cls)(**kwargs)
    try:
        with quiet():
            run.denoiser.net.unet.save_pretrained(str(out / "unet"))
            scheduler.save_pretrained(str(out / "scheduler"))
    except OSError as e:
        raise ErrpropError(f"export: cannot write {out}: {e.strerror or e}") from None
    write_json(out / "model_index.json", {"_class_name": "DDPMPipeline", "_diffusers_version": _version(),
                                          "scheduler": ["diffusers", cls],
                                          "unet": ["diffusers", "UNet2DModel"]})
    return out


def _version() -> str:
    import diffusers

    return diffusers.__version__
