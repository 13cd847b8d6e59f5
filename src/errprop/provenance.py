"""Where a result came from: the commit, the machine (CPU model and vector units), the date.

Every result file errprop writes (benchmarks, experiments, the demo) carries :func:`provenance`;
the CPU matters because these machines differ several-fold (AMX Xeons, AVX2-only EPYCs).
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
    """The repository's short commit, with "+uncommitted changes" when tracked files differ."""
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


def machine() -> str:
    """One line: CPU model, its vector flags, cores, torch version and intra-op threads."""
    import torch

    flags = ", ".join(cpu_flags()) or "none of " + "/".join(VECTOR_FLAGS)
    return (f"{cpu_model()} ({flags}), {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def provenance() -> dict:
    """Commit, machine and date of a result (what every result file in docs/ carries)."""
    now = commit()
    at = _LOADED if now == _LOADED else f"{_LOADED} (code loaded at start; HEAD {now} when written)"
    return {"commit": at, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
            "cpu": cpu_model(), "cpu_flags": cpu_flags()}
