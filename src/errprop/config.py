"""Typed experiment config: YAML in, validated dataclasses out, ``--set a.b=c`` overrides.

The schema is the dataclasses below; each field's ``metadata`` states its constraint
(``choices``, ``min``, ``gt``), so validation is declarative and every error names the field:
an unknown key, a wrong type or an impossible value gives an :class:`ErrpropError` such as
``config: train.steps must be ≥ 1, got 0``. A field's choices are read from the registry of the
module that implements them (the samplers, processes, losses, grids, ...), never listed here.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.gmm import PRESETS as MIXTURES
from .data.images import NAMES as IMAGE_SETS
from .denoisers import PARAMETERIZATIONS
from .errors import ErrpropError
from .grids import GRIDS, SPACINGS
from .losses import NAMES as LOSSES
from .losses.cumulative import BACKPROPS, ROLLOUT_STEPS, check_batch
from .losses.sequence_aware import CHOICES as SA_CHOICES
from .losses.simple import SIGMA_SAMPLING, WEIGHTINGS
from .metrics.mmd import MULTIPLIERS
from .nets import NETS
from .process import BETA_SCALES, BETA_SCHEDULES, KINDS, VE_KINDS
from .samplers import NAMES as SAMPLER_NAMES
from .samplers import VARIANCES


def _f(default: Any, **meta: Any) -> Any:
    """A dataclass field with a (copied) default and validation metadata."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """What to train on: a Gaussian mixture (exact ground truth) or an image data set."""

    name: str = _f("ring8", choices=MIXTURES + IMAGE_SETS)
    root: str | None = _f(None)  # folder holding the data set's files (images)
    dim: int = _f(2, min=1)  # random mixture: dimension
    components: int = _f(8, min=1)  # random mixture: number of components
    mixture_seed: int = _f(0)  # random mixture: which mixture
    image_size: int = _f(28, min=4)  # folder: images are resized to this
    hflip: bool = _f(False)  # random horizontal flips (images)


@dataclass
class ProcessConfig:
    """The forward process: discrete VP (DDPM) or VE (see :mod:`errprop.process`)."""

    kind: str = _f("vp", choices=KINDS)
    T: int = _f(1000, min=2)
    # sigmoid: diffusers' sigmoid on β; sigmoid_abar: EPDM's default, a sigmoid on ᾱ
    # scaled_linear: diffusers' (√β linear); trained: the list process.betas (diffusers' trained_betas)
    schedule: str = _f("linear", choices=BETA_SCHEDULES)
    betas: list[float] | None = _f(None)  # schedule 'trained' only
    beta_start: float = _f(1e-4, gt=0)
    beta_end: float = _f(0.02, gt=0)
    # epdm: beta_start, beta_end × 1000/T (EPDM's linear schedule); linear / sigmoid only
    beta_scale: str = _f("none", choices=BETA_SCALES)
    sigmoid_start: float = _f(-3.0)  # sigmoid_abar only; EPDM's defaults −3, 3, τ = 1
    sigmoid_end: float = _f(3.0)
    sigmoid_tau: float = _f(1.0, gt=0)
    ve_sigma: str = _f("linear", choices=VE_KINDS)  # VE: σ(t) = √t or t
    sigma_min: float = _f(0.002, gt=0)  # VE only
    sigma_max: float = _f(80.0, gt=0)  # VE only

    def __post_init__(self) -> None:
        # Cross-field checks of the schedule options, so that --dry-run already reports them.
        if self.kind != "vp":
            return
        if self.schedule == "sigmoid_abar" and not self.sigmoid_start < self.sigmoid_end:
            raise ErrpropError(
                f"config: process.sigmoid_start < process.sigmoid_end required, "
                f"got {self.sigmoid_start}, {self.sigmoid_end}"
            )
        if (self.schedule == "trained") != (self.betas is not None):
            raise ErrpropError("config: process.betas goes with process.schedule 'trained' "
                               "(and only with it)")
        bad = self.schedule == "trained" and not (len(self.betas) == self.T
                                                  and all(0 < b < 1 for b in self.betas))
        if bad:
            raise ErrpropError(f"config: process.betas must hold T = {self.T} values in (0, 1), "
                               f"got {len(self.betas)}")
        if self.beta_scale == "epdm":
            if self.schedule not in ("linear", "sigmoid"):
                raise ErrpropError(
                    f"config: process.beta_scale 'epdm' rescales beta_start/beta_end, which schedule "
                    f"{self.schedule!r} does not use; use schedule 'linear' or 'sigmoid'"
                )
            if not self.beta_end * 1000 / self.T < 1:
                raise ErrpropError(
                    f"config: process.beta_end × 1000/T must be < 1 with beta_scale 'epdm', "
                    f"got {self.beta_end} × 1000/{self.T}"
                )


@dataclass
class ModelConfig:
    """The network and how its output becomes a denoiser."""

    net: str = _f("mlp", choices=NETS)
    # diffusers: a UNet2DModel folder (save_pretrained); its architecture and initial weights
    diffusers_path: str | None = _f(None)
    class_label: int | None = _f(None)  # diffusers class-conditional UNets: the class sampled
    parameterization: str = _f("eps", choices=PARAMETERIZATIONS)
    # condition on the nearest integer timestep (set when loading a diffusers DPMSolverMultistep /
    # UniPC scheduler with Karras σ, as diffusers does; errprop's default is the exact fractional t)
    round_timesteps: bool = _f(False)
    sigma_data: float = _f(0.5, gt=0)
    width: int = _f(256, min=1)  # mlp
    depth: int = _f(3, min=1)  # mlp
    emb_dim: int = _f(64, min=2)  # mlp
    channels: int = _f(64, min=1)  # unet
    channel_mult: list[int] = _f([1, 2, 2])  # unet
    num_res_blocks: int = _f(1, min=1)  # unet
    attention_resolutions: list[int] = _f([])  # unet
    dropout: float = _f(0.0, min=0)


@dataclass
class SAConfig:
    """Sequence-Aware loss (docs/methods.md#sequence-aware-loss); defaults follow the released code."""

    K: int = _f(2, min=1)
    lam: float = _f(1.0, min=0)
    tau: str = _f("none", choices=SA_CHOICES["tau"])
    window_noise: str = _f("independent", choices=SA_CHOICES["window_noise"])
    direction: str = _f("down", choices=SA_CHOICES["direction"])
    t_sampling: str = _f("antithetic", choices=SA_CHOICES["t_sampling"])
    simple_on: str = _f("anchor", choices=SA_CHOICES["simple_on"])


@dataclass
class EPConfig:
    """Cumulative-error regularizer (docs/methods.md#ep-regularizer); defaults follow the released code."""

    L: int = _f(5, min=1)
    lam: float = _f(1.0, min=0)
    sampler: str = _f("ancestral", choices=tuple(ROLLOUT_STEPS))
    backprop: str = _f("full", choices=BACKPROPS)
    multipliers: list[float] = _f(list(MULTIPLIERS))


@dataclass
class LossConfig:
    """The training objective: ``simple`` (any weighting), ``sa`` or ``ep`` on top of it."""

    name: str = _f("simple", choices=LOSSES)
    weighting: str | None = _f(None, choices=(*WEIGHTINGS, None))  # None: the model's
    sigma_sampling: str = _f("uniform", choices=SIGMA_SAMPLING)
    p_mean: float = _f(-1.2)
    p_std: float = _f(1.2, gt=0)
    input_perturbation: float = _f(0.0, min=0)
    sa: SAConfig = field(default_factory=SAConfig)
    ep: EPConfig = field(default_factory=EPConfig)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: int = _f(4000, min=1)
    batch_size: int = _f(256, min=1)
    lr: float = _f(1e-3, gt=0)
    weight_decay: float = _f(0.0, min=0)
    warmup: int = _f(100, min=0)
    grad_clip: float = _f(1.0, min=0)  # 0 disables clipping
    ema_decay: float = _f(0.999, min=0)
    # diffusers' EMAModel warm-up: decay_k = min(ema_decay, (1 + k)/(10 + k)) after k updates
    # (the first update copies the weights); off: ema_decay from the first step.
    ema_warmup: bool = _f(True)
    seed: int = _f(0)
    log_every: int = _f(50, min=1)
    ckpt_every: int = _f(1000, min=1)
    # the last checkpoints kept; one written where an interruption stopped the run is not counted
    # and is removed once a later one is saved (it never pushes out one a study measures)
    keep_last: int = _f(3, min=1)
    skip_nonfinite: int = _f(0, min=0)  # batches with a NaN/inf loss or gradient skipped per run
    precision: str = _f("auto", choices=("auto", "fp32", "bf16"))
    device: str = _f("auto")  # auto | cpu | cuda | cuda:N
    # CPU intra-op threads while training; 0: PyTorch's own (one per core, or OMP_NUM_THREADS). One
    # thread made a lone MLP training somewhat slower but several side by side much faster each
    # (B9, docs/results/b9_threads.md): set 1 for several trainings at once.
    threads: int = _f(0, min=0)


@dataclass
class SampleConfig:
    """Defaults of ``errprop sample`` (each can be overridden on the command line)."""

    sampler: str = _f("ddim", choices=SAMPLER_NAMES)
    steps: int = _f(50, min=1)
    grid: str = _f("uniform", choices=GRIDS)
    spacing: str = _f("trailing", choices=SPACINGS)
    steps_offset: int = _f(0, min=0)  # diffusers' steps_offset (added to 'leading' timesteps)
    rho: float = _f(7.0, gt=0)
    sigmas: list[float] | None = _f(None)  # grid 'list'
    eta: float | None = _f(None, min=0)  # ddim, euler_ancestral; null: theirs (0 and 1)
    variance: str = _f("small", choices=VARIANCES)  # ddpm
    s_churn: float = _f(0.0, min=0)  # euler / heun
    # dpmpp_* / unipc_*: lower the final steps' orders (diffusers' lower_order_final; DPM-Solver++
    # does so only on grids of < 15 steps) and the steps whose UniPC prediction is not corrected
    lower_order_final: bool = _f(True)
    disable_corrector: list[int] = _f([])
    # diffusers' clip_sample: clamp x̂0 to ±clip_sample_range inside DDIM/DDPM steps.
    # null (auto): on for image data (which lies in [−1, 1]), off for mixtures.
    clip_sample: bool | None = _f(None)
    clip_sample_range: float = _f(1.0, gt=0)
    # diffusers' thresholding (Imagen's dynamic thresholding of x̂0; replaces clip_sample when on)
    thresholding: bool = _f(False)
    dynamic_thresholding_ratio: float = _f(0.995, gt=0)
    sample_max_value: float = _f(1.0, gt=0)
    n: int = _f(1000, min=1)
    batch_size: int = _f(1000, min=1)
    seed: int = _f(0)
    ema: bool = _f(True)  # sample, evaluate and diagnose with the EMA weights (CLI --raw: raw ones)


@dataclass
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ checking
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if origin is list:
        if not isinstance(value, list):
            raise ErrpropError(f"config: {path} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ErrpropError(f"config: {path} must be a finite number, got an integer of "
                               f"{len(str(value))} digits") from None
    if tp is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads "3e-4" as a string; users mean the number.
        try:
            value = float(value)
        except ValueError:
            raise ErrpropError(f"config: {path} must be of type float, got {value!r}") from None
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ErrpropError(f"config: {path} must be a finite number, got {value!r}")
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ErrpropError(f"config: {path} must be of type {_type_name(tp)}, got {value!r}")
    return value


def _check_value(value: Any, meta: dict, path: str) -> None:
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(repr(c) for c in meta["choices"])
        raise ErrpropError(f"config: {path} must be one of {choices}, got {value!r}")
    if "min" in meta and value is not None and value < meta["min"]:
        raise ErrpropError(f"config: {path} must be ≥ {meta['min']}, got {value!r}")
    if "gt" in meta and value is not None and not value > meta["gt"]:
        raise ErrpropError(f"config: {path} must be > {meta['gt']}, got {value!r}")


def _build(cls: type, raw: Any, path: str) -> Any:
    where = path or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ErrpropError(f"config: {where} must be a mapping of fields, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ErrpropError(
            f"config: unknown field {'.'.join(filter(None, [path, str(unknown[0])]))!r}; "
            f"{where} has {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in raw.items():
        sub = f"{path}.{name}" if path else name
        value = _coerce(value, hints[name], sub)
        _check_value(value, fields[name].metadata, sub)
        kwargs[name] = value
    return cls(**kwargs)


def _cross_check(cfg: Config) -> None:
    """Constraints that involve more than one field."""
    p = cfg.process
    if p.kind == "vp" and not p.beta_start < p.beta_end < 1:
        raise ErrpropError(
            f"config: process.beta_start < process.beta_end < 1 required, got {p.beta_start}, {p.beta_end}"
        )
    if p.kind == "ve" and not p.sigma_min < p.sigma_max:
        raise ErrpropError(
            f"config: process.sigma_min < process.sigma_max required, got {p.sigma_min}, {p.sigma_max}"
        )
    if cfg.train.ema_decay >= 1:
        raise ErrpropError(f"config: train.ema_decay must be < 1, got {cfg.train.ema_decay}")
    if cfg.loss.name == "ep":
        check_batch(cfg.train.batch_size)
    if cfg.loss.name in ("sa", "ep") and p.kind != "vp":
        raise ErrpropError(f"config: loss.name {cfg.loss.name!r} needs process.kind 'vp'")
    if cfg.sample.grid == "list" and not cfg.sample.sigmas:
        raise ErrpropError("config: sample.sigmas must list the σ levels when sample.grid is 'list'")
    sig = cfg.sample.sigmas
    if sig is not None and (not sig or any(v <= 0 for v in sig)
                            or any(b >= a for a, b in zip(sig, sig[1:]))):
        raise ErrpropError(f"config: sample.sigmas must be a strictly decreasing list of σ > 0 "
                           f"(the final 0 is added), got {sig}")
    if not cfg.model.channel_mult or any(m < 1 for m in cfg.model.channel_mult):
        raise ErrpropError(f"config: model.channel_mult must be positive ints, got {cfg.model.channel_mult}")


def from_dict(raw: Any) -> Config:
    """Validate a nested dict (e.g. parsed YAML) into a :class:`Config`."""
    cfg = _build(Config, raw, "")
    _cross_check(cfg)
    return cfg


def same(stored: Any, cfg: Config) -> bool:
    """Whether a stored config (a run's ``config.yaml``, a cache key's dict) is ``cfg``, compared as
    validated configs: one saved before a field was added (which then takes its default) still
    matches, so old runs and caches stay valid; an unreadable one never matches."""
    try:
        return from_dict(stored).to_dict() == cfg.to_dict()
    except (ErrpropError, KeyError, TypeError):
        return False


# PyYAML raises more than YAMLError on some input: ValueError/KeyError/IndexError for impossible
# dates and explicitly tagged scalars (!!int x), RecursionError for very deep nesting.
_YAML_ERRORS = (yaml.YAMLError, ValueError, KeyError, IndexError, TypeError, RecursionError,
                UnicodeDecodeError)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` → (["a", "b"], YAML value of c)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ErrpropError(f"--set expects key=value (e.g. train.steps=100), got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except _YAML_ERRORS as e:
        raise ErrpropError(f"--set {key}: cannot parse value {value!r}: {e}") from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a nested dict (in place) and return it."""
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ErrpropError(f"--set {text}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict:
    """Parse a YAML file into a dict, with clear errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ErrpropError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except _YAML_ERRORS as e:
        raise ErrpropError(f"config file {path} is not valid YAML: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ErrpropError(f"config file {path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw or {}


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults), apply ``--set`` overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(raw, overrides or []))


def dump(cfg: Config) -> str:
    """The fully resolved config as YAML."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
