"""B9 — intra-op threads for small models on a small machine.

Training steps/s of errprop's MLPs (the demo's width 128 × 2 and the ring-of-8 config's 256 × 3,
batch 256, SA-2 and the baseline loss) with 1 intra-op thread against PyTorch's default (one per
core), each run alone and as three trainings side by side (separate processes started together,
as the study, the tests or a user's parallel runs do). Every setting runs in fresh processes; the
settings alternate A B A B over ``--repeats`` rounds and each figure is the median per-process
rate. The ratio 1 thread / default is what ``train.threads`` (0: PyTorch's default) is about.

    python benchmarks/b9_threads.py            # ≈ 2 min on a 2-core CPU
    python benchmarks/b9_threads.py --quick    # smoke run

Writes ``docs/results/b9_threads.{json,md}`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from errprop.results import write_result

ROOT = Path(__file__).resolve().parents[1]

MODELS = {"mlp 128×2 (demo)": ["model.width=128", "model.depth=2"],
          "mlp 256×3 (gmm.yaml)": ["model.width=256", "model.depth=3"]}
LOSSES = {"baseline": [], "SA-2": ["loss.name=sa", "loss.sa.K=2"]}


def worker(threads: int, steps: int, overrides: list[str]) -> float:
    """Steps/s of ``steps`` training steps (after 5 warm-up steps) with ``threads`` threads."""
    from errprop import config
    from errprop.builders import build_denoiser, build_loss, build_process
    from errprop.noise import Noise, stream_seeds

    if threads:
        torch.set_num_threads(threads)
    cfg = config.load(overrides=["data.name=ring8", "train.batch_size=256", *overrides])
    process = build_process(cfg)
    torch.manual_seed(0)
    den = build_denoiser(cfg, (2,), process)
    loss, opt = build_loss(cfg, process), torch.optim.AdamW(den.parameters(), lr=1e-3)
    x0, idx = torch.randn(256, 2), np.arange(256)

    def step(k: int) -> None:
        out = loss(den, x0, Noise(stream_seeds(0, idx, k)))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    for k in range(5):
        step(k)
    t0 = time.perf_counter()
    for k in range(steps):
        step(5 + k)
    return steps / (time.perf_counter() - t0)


# Workers get PyTorch's own default: no thread count inherited from the caller's environment.
ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def launch(threads: int, copies: int, steps: int, overrides: list[str]) -> tuple[list[float], int]:
    """Start ``copies`` worker processes together: their steps/s, and the intra-op thread count
    they ran with (PyTorch's default when ``threads`` is 0)."""
    cmd = [sys.executable, __file__, "--worker", str(threads), str(steps), json.dumps(overrides)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=ENV) for _ in range(copies)]
    rates, used = [], 0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"b9: a worker failed (exit {p.returncode})")
        rates.append(float(out.split()[-2]))
        used = int(out.split()[-1])
    return rates, used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150, help="timed steps per worker")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        rate = worker(int(a.worker[0]), int(a.worker[1]), json.loads(a.worker[2]))
        print(rate, torch.get_num_threads())
        return
    if a.quick:
        a.steps, a.repeats = 10, 1
    rows, table = [], [["model", "loss", "processes", "steps/s, 1 thread", "steps/s, default threads",
                        "ratio 1 / default"]]
    for model, mo in MODELS.items():
        for loss, lo in LOSSES.items():
            for copies in (1, 3):
                default = 0
                rates: dict[int, list[float]] = {1: [], 0: []}
                for _ in range(a.repeats):  # A B A B
                    for threads in rates:
                        got, used = launch(threads, copies, a.steps, mo + lo)
                        rates[threads] += got
                        default = used if threads == 0 else default
                one, dflt = statistics.median(rates[1]), statistics.median(rates[0])
                row = {"model": model, "loss": loss, "processes": copies, "one_thread": one,
                       "default_threads": dflt, "default": default, "ratio": one / dflt,
                       "rates": {str(k): v for k, v in rates.items()}}
                rows.append(row)
                print(json.dumps(row), flush=True)
                table.append([model, loss, str(copies), f"{one:.1f}", f"{dflt:.1f} ({default})",
                              f"{one / dflt:.2f}"])
    command = shlex.join(["python", "benchmarks/b9_threads.py", *sys.argv[1:]])
    write_result(a.out, "b9_threads", "B9 — intra-op threads for small models", command,
                 {"steps": a.steps, "repeats": a.repeats, "rows": rows}, table,
                 "Median training steps/s per process (batch 256, ring of 8), fresh processes per "
                 "setting, settings alternated. Ratio > 1: one intra-op thread is faster.")


if __name__ == "__main__":
    main()
