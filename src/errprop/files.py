"""Result files written atomically, and I/O failures as one clear error.

Every file errprop writes (checkpoints, ``config.yaml``, results, plots, reports) goes to a
temporary name beside its target, is flushed to disk and renamed over it: a reader sees the old
file or the complete new one, never a part — so a full disk or a crash cannot leave a 0-byte
result that a later ``compare`` trips over.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ErrpropError


def fsync_dir(folder: Path) -> None:
    """Make renames and deletions in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary beside ``path``, fsync it, rename it onto ``path``, sync the folder.

    Readers see either the old file or the complete new one, never a part; on error the temporary
    is removed, ``path`` is untouched and the error (``OSError``) propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # name the file the user knows, not the temporary
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace the text file ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_text(text))


def make_dir(path: Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents) or say in one line why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ErrpropError(f"{what} {path}: exists and is not a folder") from None
    except OSError as e:
        raise ErrpropError(f"{what} {path}: cannot create the folder: {e.strerror or e}") from None
    return path


def write_result(path: Path, write: Callable[[Path], Any]) -> Path:
    """:func:`atomic_write` for a result file (its folder is created): an I/O failure becomes
    :class:`ErrpropError` naming the file and saying that nothing earlier was changed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as e:
        raise ErrpropError(f"could not write {path}: {e.strerror or e}; "
                           "files written before are unchanged") from None
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON via :func:`write_result`."""
    text = json.dumps(obj, indent=1)
    return write_result(path, lambda p: p.write_text(text))


def write_text(path: Path, text: str) -> Path:
    """Write a text file via :func:`write_result`."""
    return write_result(path, lambda p: p.write_text(text))


def read_cached(path: Path, key: Any) -> Any | None:
    """The result stored at ``path`` by :func:`cached` if it was computed under ``key`` (compared
    as JSON), else None; a missing or unreadable file is a miss."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(stored, dict) and stored.get("key") == json.loads(json.dumps(key)):
        return stored.get("result")
    return None


def cached(path: Path, key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``, stored at ``path`` with its ``key``; read back instead while the key is the
    same. How the experiments resume: each measurement is one such file, so an interrupted run
    redoes only what it had not finished, and a changed setting is recomputed, never reused."""
    hit = read_cached(path, key)
    if hit is not None:
        return hit
    return write_cached(path, key, compute())


def write_cached(path: Path, key: Any, result: Any) -> Any:
    """Store ``result`` at ``path`` under ``key`` for :func:`read_cached`; returns ``result``."""
    atomic_write_text(Path(path), json.dumps({"key": key, "result": result}))
    return result


def to_jsonable(obj):
    """Tensors and arrays → lists, numpy scalars → floats, non-finite floats → None (strict
    JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if torch.is_tensor(obj):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def cache_dir() -> Path:
    """errprop's cache folder: ``$ERRPROP_CACHE``, else ``$XDG_CACHE_HOME/errprop``, else
    ``~/.cache/errprop``. Not created here."""
    if os.environ.get("ERRPROP_CACHE"):
        return Path(os.environ["ERRPROP_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "errprop"
    return Path.home() / ".cache" / "errprop"
