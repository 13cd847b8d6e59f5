"""Checkpoints: safetensors for tensors, JSON for everything else — never pickled code.

A checkpoint of step N is two files in ``RUN/checkpoints/``: ``step-0000000N.safetensors`` and
``step-0000000N.json``. Each is written to a temporary name, flushed to disk (``fsync``) and renamed
atomically, and the folder is synced so the rename itself survives a power cut. The JSON goes last
and records the tensor file's size and SHA-256: it is the commit marker. A crash or a failing write
at any point therefore leaves every earlier checkpoint intact and loadable; the debris of an
interrupted save (a temporary file, or tensors without their JSON) is never read and is removed by
the next save. Only the last ``keep_last`` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import ErrpropError
from .files import atomic_write, fsync_dir

FORMAT = 1
_NAME = re.compile(r"step-(\d+)\.json")
_REQUIRED = {"step": int, "tensors": str, "size": int, "sha256": str}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_dir(run: Path) -> Path:
    """``RUN/checkpoints``."""
    return Path(run) / "checkpoints"


def checkpoint_path(run: Path, step: int) -> Path:
    """The JSON path (commit marker) of the checkpoint of ``step`` in ``run``."""
    return checkpoint_dir(run) / f"step-{step:08d}.json"


def _step_of(js: Path) -> int:
    m = _NAME.fullmatch(js.name)
    return int(m.group(1)) if m else -1


def list_checkpoints(run: Path) -> list[Path]:
    """The committed checkpoints of a run (their JSON files), oldest (lowest step) first."""
    d = checkpoint_dir(run)
    return sorted((p for p in d.glob("step-*.json") if _step_of(p) >= 0), key=_step_of) if d.is_dir() else []


def _remove_debris(d: Path) -> None:
    """Delete temporaries and tensor files without a JSON (left by an interrupted save)."""
    for p in d.glob(".step-*.tmp"):
        p.unlink(missing_ok=True)
    for p in d.glob("step-*.safetensors"):
        if not p.with_suffix(".json").exists():
            p.unlink(missing_ok=True)


def save(run: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
         keep_last: int = 3, transient: bool = False) -> Path:
    """Write the checkpoint of ``step`` and prune to the last ``keep_last``; returns the JSON path.

    A ``transient`` checkpoint (written where an interruption stopped the run: only a place to
    resume from) is not counted in ``keep_last`` and is removed once a later checkpoint is saved,
    so that it never pushes out one a study measures (E4's and E8's budgets).

    A failing write (disk full, permissions) raises :class:`ErrpropError` and leaves the earlier
    checkpoints as they were.
    """
    if keep_last < 1:
        raise ErrpropError(f"keep_last must be ≥ 1, got {keep_last}")
    js_path = checkpoint_path(run, step)
    d, st_path = js_path.parent, js_path.with_suffix(".safetensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        d.mkdir(parents=True, exist_ok=True)
        _remove_debris(d)
        atomic_write(st_path, lambda p: save_file(tensors, str(p)))
        meta = {**meta, **({"transient": True} if transient else {}), "format": FORMAT,
                "errprop_version": __version__, "step": step,
                "tensors": st_path.name, "size": st_path.stat().st_size, "sha256": _sha256(st_path)}
        atomic_write(js_path, lambda p: p.write_text(json.dumps(meta, indent=1)))
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as its own error
        last = [p for p in list_checkpoints(run) if p != js_path]
        raise ErrpropError(
            f"could not write the checkpoint of step {step} to {d}: {getattr(e, 'strerror', None) or e}; "
            f"the last complete checkpoint is {last[-1] if last else 'none'}"
        ) from e
    kept = [p for p in list_checkpoints(run) if p != js_path or not transient]
    superseded = [p for p in kept if _is_transient(p)]  # older than this one: resume from this
    kept = [p for p in kept if p not in superseded]
    for old in superseded + kept[:-keep_last]:
        old.unlink(missing_ok=True)  # the commit marker first: a half-pruned checkpoint is debris
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    fsync_dir(d)
    return js_path


def _is_transient(js: Path) -> bool:
    try:
        return bool(json.loads(js.read_text()).get("transient"))
    except (OSError, ValueError, AttributeError):  # unreadable: not ours to delete here
        return False


def set_aside_after(run: Path, step: int) -> list[Path]:
    """Move the checkpoints after ``step`` to ``checkpoints/abandoned-<step>/`` (a run resumed
    from an earlier checkpoint would otherwise mix two histories); returns the moved JSON paths."""
    later = [p for p in list_checkpoints(run) if _step_of(p) > step]
    if later:
        dest = checkpoint_dir(run) / f"abandoned-{step:08d}"
        dest.mkdir(exist_ok=True)
        for js in later:
            for p in (js.with_suffix(".safetensors"), js):
                if p.exists():
                    p.rename(dest / p.name)
        fsync_dir(checkpoint_dir(run))
    return later


def resolve(path: str | Path) -> Path:
    """A checkpoint's JSON path from a run folder (latest checkpoint) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        ckpts = list_checkpoints(path)
        if not ckpts:
            raise ErrpropError(f"no checkpoint in {path}: expected {checkpoint_dir(path)}/step-*.json")
        return ckpts[-1]
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise ErrpropError(f"no run folder or checkpoint at {path}")
    return path


def of_run(run: str | Path, which: str | int) -> Path:
    """The JSON path of the checkpoint ``which`` of ``run``: a checkpoint file, or a step number."""
    if isinstance(which, str) and Path(which).exists():
        return resolve(which)
    try:
        step = int(which)
    except ValueError:
        raise ErrpropError(f"--checkpoint {which!r}: neither a checkpoint file nor a step number") from None
    return resolve(checkpoint_path(Path(run), step))


def _read_meta(js: Path) -> dict[str, Any]:
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ErrpropError(f"checkpoint {js} is corrupted (not valid JSON: {e})") from None
    except OSError as e:
        raise ErrpropError(f"checkpoint {js} cannot be read: {e.strerror or e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ErrpropError(
            f"checkpoint {js} has format {meta.get('format') if isinstance(meta, dict) else '?'}; "
            f"this errprop ({__version__}) reads format {FORMAT}"
        )
    for key, tp in _REQUIRED.items():
        if not isinstance(meta.get(key), tp) or isinstance(meta.get(key), bool):
            raise ErrpropError(
                f"checkpoint {js} is incomplete or corrupted: field {key!r} is missing or invalid"
            )
    if Path(meta["tensors"]).name != meta["tensors"]:
        raise ErrpropError(f"checkpoint {js} is corrupted: {meta['tensors']!r} is not a file name")
    return meta


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint, verified: a truncated, corrupted or foreign file is an error."""
    js = resolve(path)
    meta = _read_meta(js)
    st = js.with_name(meta["tensors"])
    if not st.is_file():
        raise ErrpropError(f"checkpoint {js} refers to {st.name}, which is missing")
    if st.stat().st_size != meta["size"] or _sha256(st) != meta["sha256"]:
        raise ErrpropError(
            f"checkpoint {st} is corrupted or truncated (size/SHA-256 differ from {js.name}); "
            f"use an earlier checkpoint from {js.parent} (training: errprop train --resume RUN "
            f"--checkpoint STEP)"
        )
    try:
        tensors = load_file(str(st))
    except (SafetensorError, OSError) as e:
        raise ErrpropError(f"checkpoint {st} cannot be read: {e}") from None
    return tensors, meta


def split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries ``prefix.*`` with the prefix removed (e.g. a module's state dict)."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict`` with an error that names the mismatch instead of a traceback."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ErrpropError(
            f"checkpoint does not fit the model ({what}): {' '.join(first[:3])[:400]}; "
            f"was it written for another config?"
        ) from None


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as flat tensors ``optim.<param>.<key>`` plus its JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": torch.as_tensor(v) for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: Any) -> None:
    """Restore an optimizer written by :func:`optimizer_tensors` (a mismatch is an :class:`ErrpropError`)."""
    try:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in split(tensors, "optim").items():
            i, key = k.split(".", 1)
            state.setdefault(int(i), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ErrpropError(f"checkpoint optimizer state does not fit the model: {e}") from None
