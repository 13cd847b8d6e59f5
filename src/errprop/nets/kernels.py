"""errprop's compiled CPU kernel: channels-last GroupNorm (+ SiLU), built once per machine.

``group_norm_cpu.cpp`` (beside this file) is compiled with PyTorch's C++ extension builder on first
use (20–40 s on two cores) into errprop's cache folder, under a name that hashes the source
(and its path), the torch version and the CPU's flags (it is built with ``-march=native``, so a cache
folder shared by different machines never hands one of them another's binary). Where it cannot
be built (no C++ compiler, no ``ninja``) or ``ERRPROP_CPU_KERNELS=0`` is set, :func:`group_norm`
returns None (with one warning if the build failed) and the U-Net uses its PyTorch path, which
gives the same numbers (to rounding) with a slower bf16 U-Net training step (by how much:
docs/benchmarks.md#b1-training-throughput).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

from ..files import cache_dir
from ..provenance import cpu_signature

SOURCE = Path(__file__).with_name("group_norm_cpu.cpp")


def enabled() -> bool:
    """False when ``ERRPROP_CPU_KERNELS=0`` asks for PyTorch's kernels only."""
    return os.environ.get("ERRPROP_CPU_KERNELS", "1") != "0"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def prune(kernels: Path, keep: Path, max_age_days: float = 30.0) -> list[Path]:
    """Delete the builds in ``kernels`` that can never be loaded again: those whose source file
    is gone or has changed since (each build records its source in ``source.json``), and
    unrecorded builds (from before the record) unused for ``max_age_days``. Returns them."""
    gone = []
    for build in kernels.glob("errprop_group_norm_*"):
        if build == keep or not build.is_dir():
            continue
        try:
            rec = json.loads((build / "source.json").read_text())
            stale = _sha(Path(rec["source"])) != rec["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            stale = time.time() - build.stat().st_mtime > max_age_days * 86400
        if stale:
            shutil.rmtree(build, ignore_errors=True)
            gone.append(build)
    return gone


@functools.cache
def group_norm() -> ModuleType | None:
    """The compiled module (``forward``, ``backward``), or None where it is off or cannot build."""
    if not enabled():
        return None
    # The source's path is in the name too: ninja rebuilds when it moves, so two checkouts
    # sharing one cache would otherwise rebuild each other's kernel at every switch.
    tag = hashlib.sha256(
        SOURCE.read_bytes() + f"{SOURCE}|{torch.__version__}|{sys.version}|{cpu_signature()}".encode()
    ).hexdigest()[:16]
    name = f"errprop_group_norm_{tag}"
    build = cache_dir() / "kernels" / name
    try:
        from torch.utils.cpp_extension import load

        build.mkdir(parents=True, exist_ok=True)
        if not any(build.glob(f"{name}*.so")):
            print(f"errprop: compiling the CPU GroupNorm kernel into {build} (once)", file=sys.stderr)
        module = load(
            name,
            [str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-math-errno"],
            extra_ldflags=["-fopenmp"],
            build_directory=str(build),
            verbose=False,
        )
        (build / "source.json").write_text(json.dumps({"source": str(SOURCE), "sha256": _sha(SOURCE)}))
        prune(build.parent, keep=build)
        return module
    except Exception as err:  # no compiler, no ninja, a read-only cache: fall back, loudly
        warnings.warn(
            f"errprop: the C++ GroupNorm kernel could not be built ({type(err).__name__}: {err}); "
            "the U-Net uses PyTorch's ops on CPU (same numbers, a slower bf16 training step: B1 in "
            "docs/benchmarks.md). "
            "Set ERRPROP_CPU_KERNELS=0 to silence this.",
            stacklevel=2,
        )
        return None
