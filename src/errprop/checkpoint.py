"""Checkpoints: safetensors for tensors, JSON for everything else — never pickled code.

A checkpoint of step N is two files in ``RUN/checkpoints/``: ``step-0000000N.safetensors`` and
``step-0000000N.json``. Both are written to a temporary name and renamed atomically, the JSON last:
the JSON (which records the tensor file's size and SHA-256) is the commit marker, so a crash at any
point leaves the previous checkpoints intact and loadable. Only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import ErrpropError

FORMAT = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then fsync and rename onto ``path``; the temporary is removed on error."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def list_checkpoints(run: Path) -> list[Path]:
    """The committed checkpoints of a run (their JSON files), oldest first."""
    d = checkpoint_dir(run)
    return sorted(d.glob("step-*.json")) if d.is_dir() else []


def save(run: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
         keep_last: int = 3) -> Path:
    """Write the checkpoint of ``step`` and prune to the last ``keep_last``; returns the JSON path."""
    d = checkpoint_dir(run)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:08d}"
    st_path, js_path = d / f"{stem}.safetensors", d / f"{stem}.json"
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(st_path, lambda p: save_file(tensors, str(p)))
    meta = {**meta, "format": FORMAT, "errprop_version": __version__, "step": step,
            "tensors": st_path.name, "size": st_path.stat().st_size, "sha256": _sha256(st_path)}
    _atomic_write(js_path, lambda p: p.write_text(json.dumps(meta, indent=1)))
    for old in list_checkpoints(run)[:-keep_last]:
        old.with_suffix(".safetensors").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    return js_path


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


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint, verified: a truncated, corrupted or foreign file is an error."""
    js = resolve(path)
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ErrpropError(f"checkpoint {js} is corrupted (not valid JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ErrpropError(
            f"checkpoint {js} has format {meta.get('format') if isinstance(meta, dict) else '?'}; "
            f"this errprop ({__version__}) reads format {FORMAT}"
        )
    st = js.with_name(meta["tensors"])
    if not st.is_file():
        raise ErrpropError(f"checkpoint {js} refers to {st.name}, which is missing")
    if st.stat().st_size != meta["size"] or _sha256(st) != meta["sha256"]:
        raise ErrpropError(
            f"checkpoint {st} is corrupted or truncated (size/SHA-256 differ from {js.name}); "
            f"use an earlier checkpoint from {js.parent}"
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


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore an optimizer written by :func:`optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in split(tensors, "optim").items():
        i, key = k.split(".", 1)
        state.setdefault(int(i), {})[key] = v
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as e:
        raise ErrpropError(f"checkpoint optimizer state does not fit the model: {e}") from None
