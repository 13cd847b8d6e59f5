"""The rules of a run, one implementation each, followed alike by the Python API and the ``errprop``
command (which only parses arguments, calls these and prints).

- **Resume.** A run continues under the config it was trained with. ``train`` and ``sample`` fields
  may change (training on, sampling otherwise); the sections that define what the run learns
  (:data:`LOCKED`) change only when the caller allows it, since otherwise another run would carry
  this one's name. Every change is recorded in the run's ``changes.jsonl``
  (:func:`resume_changes`, :func:`record_changes`; :func:`errprop.train.train` applies both).
- **Fine-tuning a diffusers model.** The run's data, loss and optimiser come from the user's
  config; its process, network and sampling conventions from the model (:func:`init_config`).
- **Where results go.** errprop writes into its own run folders, never into a user's diffusers
  model folder: those results go to a folder the user names (:func:`results_run`).
- **A run without a folder** trains into ``runs/<name>-<time>``, named once by rank 0
  (:func:`default_run_folder`).
- **A grid file** (``grid optimize`` output, or a JSON list of σ levels) becomes the run's sampling
  grid (:func:`read_sigmas`, :func:`with_sigmas`).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path

from . import config as config_mod
from .builders import Run
from .config import Config
from .config_diff import changed
from .diffusers_io import config_from_diffusers, is_diffusers
from .errors import ErrpropError
from .files import write_text
from .grids import custom

#: Config sections that define what a run learns: changing one on resume makes another run.
LOCKED = ("data", "process", "model", "loss")


# ------------------------------------------------------------------------------------------ resume
def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def describe(changes: dict[str, tuple]) -> str:
    """``field: old → new`` for each change (long values shortened)."""
    return ", ".join(f"{k}: {_short(a)} → {_short(b)}" for k, (a, b) in changes.items())


def stored_config(run: str | Path) -> Config:
    """The config a run folder was trained with (its ``config.yaml``)."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise ErrpropError(f"{run}: not a run folder (no config.yaml)")
    return config_mod.load(path)


def resume_changes(run: str | Path, stored: Config, new: Config, allow_change: bool = False) -> dict:
    """The one resume rule: the fields in which ``new`` differs from the run's ``stored`` config
    (``{field: (old, new)}``, to be recorded by :func:`record_changes`). A change to a
    :data:`LOCKED` section is an error naming the fields unless ``allow_change``."""
    changes = changed(stored, new)
    locked = {k: v for k, v in changes.items() if k.split(".")[0] in LOCKED}
    if locked and not allow_change:
        raise ErrpropError(
            f"resuming {run}: the config changes what the run learns ({describe(locked)}); that would make "
            "another run under this one's name. Train a new run in another folder, or allow the change "
            "(errprop train --allow-change; train(..., allow_change=True)) to continue with it recorded "
            "in the run's changes.jsonl")
    return changes


def resume_config(run: str | Path, overrides: list[str] | None = None, allow_change: bool = False) -> Config:
    """The config to resume ``run`` with: its own, with ``overrides`` (``--set``) applied and
    checked by :func:`resume_changes` (an error now, before any work)."""
    stored = stored_config(run)
    cfg = config_mod.load(Path(run) / "config.yaml", overrides)
    resume_changes(run, stored, cfg, allow_change)
    return cfg


def record_changes(run: str | Path, step: int, changes: dict) -> None:
    """Append one line to the run's ``changes.jsonl``: the step resumed at and the changed fields
    (``[old, new]`` each). Nothing is written when nothing changed."""
    if not changes:
        return
    log = Path(run) / "changes.jsonl"
    old = log.read_text() if log.is_file() else ""
    row = {"resumed_at_step": step, "changed": {k: list(v) for k, v in changes.items()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text(log, old + json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------ folders
def default_run_folder(name: str, ctx) -> Path:
    """``runs/<name>-<time>``, chosen once by rank 0 and shared with every rank of ``ctx`` (a
    :class:`errprop.distributed.Context`; each rank's own clock could name another folder)."""
    return Path(ctx.broadcast(str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")))


def results_run(run: Run, out: str | Path | None, command: str) -> Run:
    """The run whose folder receives the results of ``command``: an errprop run's own folder; for a
    diffusers model, ``out`` (required: errprop does not write into a user's model folder)."""
    if run.source != "diffusers":
        return run
    if not out:
        raise ErrpropError(f"{command}: pass --out for a diffusers model (errprop does not write into its "
                           "folder)")
    return replace(run, path=Path(out))


# ------------------------------------------------------------------------------------------ fine-tuning
def init_config(init: str, raw: dict | None = None, overrides: list[str] | None = None,
                class_label: int | None = None) -> Config:
    """The config of a run fine-tuned from the diffusers model ``init`` (``diffusers:PATH``).

    ``raw`` (a YAML config's dict) gives the data, loss and optimiser; the model gives the process,
    the network and the sampling conventions (its ``model`` and ``sample`` fields override the
    config's); ``overrides`` (``--set``) apply last. A ``folder`` data set without an
    ``image_size`` takes the model's ``sample_size``.
    """
    if not is_diffusers(init):
        raise ErrpropError(f"--init {init}: expected diffusers:PATH (a diffusers model folder)")
    raw = copy.deepcopy(raw or {})
    model = config_from_diffusers(init, class_label)
    raw["process"] = model["process"]
    raw["model"] = {**raw.get("model", {}), **model["model"]}
    raw["sample"] = {**raw.get("sample", {}), **model["sample"]}
    raw = config_mod.apply_overrides(raw, overrides or [])
    data = raw.get("data")
    if isinstance(data, dict) and data.get("name") == "folder" and "image_size" not in data:
        data["image_size"] = model["data"]["image_size"]
    return config_mod.from_dict(raw)


# ------------------------------------------------------------------------------------------ grid files
def read_sigmas(path: str | Path) -> list[float]:
    """The σ levels of a grid file: ``grid optimize`` output (its ``sigmas``) or a JSON list
    (levels ≤ 0 dropped: the final 0 is implied)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ErrpropError(f"--sigmas {path}: cannot read a grid from it ({e})") from None
    levels = data.get("sigmas") if isinstance(data, dict) else data
    if not isinstance(levels, list) or not all(isinstance(v, int | float) for v in levels):
        raise ErrpropError(f"--sigmas {path}: expected a JSON list of σ levels or an object with 'sigmas'")
    return [float(v) for v in levels if v > 0]


def with_sigmas(run: Run, levels: list[float]) -> Run:
    """``run`` sampling on the grid ``levels`` (``sample.grid: list``, ``sample.sigmas``, and
    ``sample.steps`` their number; checked: strictly decreasing and positive). ``run`` itself is
    left as it was."""
    custom(levels)  # strictly decreasing and positive, or a clear error
    sample = replace(run.config.sample, grid="list", sigmas=list(levels), steps=len(levels))
    return replace(run, config=replace(run.config, sample=sample))
