"""Where a result came from: the commit, the machine (CPU model and vector units, the GPU a run
used), the date.

Every result file errprop writes (benchmarks, experiments, the demo) carries :func:`provenance`;
the CPU matters because these machines differ several-fold (AMX Xeons, AVX2-only EPYCs).
``ERRPROP_COMMIT`` names the commit where the code runs outside its git checkout (a copy of the
tree on a GPU machine).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The CPU flags that decide which dtype and kernels are fast.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        k, _, v = line.partition(":")
        out.setdefault(k.strip(), v.strip())
    return out


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` where /proc/cpuinfo is missing)."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """Which of :data:`VECTOR_FLAGS` the CPU has."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in VECTOR_FLAGS if f in flags]


def cpu_signature() -> str:
    """Model and every feature flag: what a ``-march=native`` build depends on."""
    info = _cpuinfo()
    return f"{cpu_model()}\n{info.get('flags', '')}"


def has_amx() -> bool:
    """Whether the CPU has AMX bf16 tiles (where bf16 autocast beats fp32 for convolutions)."""
    return "amx_bf16" in cpu_flags()


def commit() -> str:
    """The repository's short commit, with "+uncommitted changes" when tracked files differ;
    ``$ERRPROP_COMMIT`` instead where it is set."""
    if os.environ.get("ERRPROP_COMMIT"):
        return os.environ["ERRPROP_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        return (head + ("+uncommitted changes" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The code a long experiment runs is the code its process loaded: a result written hours later,
# after the repository moved on, names this commit (and the later HEAD beside it).
_LOADED = commit()


def gpu() -> str | None:
    """The name of the GPU this process has used (CUDA initialised), else None: a run on the CPU
    of a machine that has a GPU does not name it."""
    import torch

    if not torch.cuda.is_initialized():
        return None
    return torch.cuda.get_device_name()


def machine() -> str:
    """One line: CPU model, its vector flags, cores, Python and torch versions, intra-op threads,
    and the GPU where this process used one."""
    import torch

    flags = ", ".join(cpu_flags()) or "none of " + "/".join(VECTOR_FLAGS)
    card = gpu()
    return (f"{cpu_model()} ({flags}), {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads" + (f", GPU {card}" if card else ""))


def provenance() -> dict:
    """Commit, machine and date of a result (what every result file in docs/ carries)."""
    now = commit()
    at = _LOADED if now == _LOADED else f"{_LOADED} (code loaded at start; HEAD {now} when written)"
    return {"commit": at, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "gpu": gpu(),
            "python": platform.python_version()}
