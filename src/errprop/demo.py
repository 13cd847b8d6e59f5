"""``errprop demo``: the whole experiment on built-in data, ending in a report with a verdict.

On the ring-of-8 Gaussian mixture (exact ground truth, nothing to download) it trains the baseline
ε-loss, SA-2 and EP — each at its released code's balance — and SA-2 with the baseline's uniform t
(SA's code draws t antithetically: this arm separates the objective from that), with three seeds
each (the same network, budget and seeds for every objective), measures sample quality at 5–50
DDIM and DDPM steps and error propagation step by step with exact metrics, compares every
objective with the baseline by paired differences over the seeds, and writes ``report.md`` /
``report.html`` (one self-contained file) that opens with a verdict computed from those numbers.
It takes a few minutes on a 2-core CPU and is deterministic: two runs write the same numbers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from .errors import ErrpropError
from .provenance import cpu_model
from .results import write_result
from .study import MIXTURE_MODEL, Arm, Settings, run_study, sizes, verdict
from .study_report import write_report

#: The objectives compared, at the balance of each paper's released code (README table).
ARMS = [
    Arm("baseline", "baseline (ε-loss)", ["loss.name=simple"]),
    Arm("sa2", "SA-2 (λ=1)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0"]),
    # SA's code draws t antithetically, the baseline uniformly: this arm isolates the objective.
    Arm("sa2u", "SA-2 (λ=1, uniform t)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0",
                                          "loss.sa.t_sampling=uniform"]),
    # λ = D = 2: the EP code's `mse_mean + 1·R` in errprop's summed-loss units.
    Arm("ep", "EP (L=5, λ=D=2)", ["loss.name=ep", "loss.ep.L=5", "loss.ep.lam=2.0"]),
]

#: The ring of 8 and the mixture experiments' network and training.
BASE = ["data.name=ring8", *MIXTURE_MODEL]


def default_jobs() -> int:
    """One worker process per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def demo(out: Path | None = None, quick: bool = False, progress: bool = True, jobs: int | None = None,
         command: str = "errprop demo") -> Path:
    """Run the demo into ``out`` (default ``runs/demo-<time>``); returns the report's path.

    ``quick`` shrinks every stage (for tests and smoke runs); its numbers are then not meaningful.
    ``jobs`` single-thread worker processes train and measure the (objective, seed) pairs side by
    side (default: one per core); the numbers are the same for any ``jobs``. An interrupted demo
    continues where it stopped when run again with the same ``out``. Besides the report, writes
    ``demo.json``: the wall-clock, the jobs, the machine and the verdict of this run.
    """
    t0 = time.perf_counter()
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ErrpropError(f"demo: jobs must be ≥ 1, got {jobs}")
    out = Path(out) if out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    steps = 150 if quick else 2000
    settings = Settings(
        base=BASE + [f"train.steps={steps}", f"train.ckpt_every={steps}"],
        seeds=[0, 1] if quick else [0, 1, 2], **sizes(quick))
    # Tiny networks: one intra-op thread per process is faster than several fighting over the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        study = run_study(out, ARMS, settings, progress=progress, jobs=jobs,
                          log=lambda m: print(m.replace("[study]", "[demo]"), flush=True))
        print("[demo] writing the report", flush=True)
        study_s = time.perf_counter() - t0
        # (still on one thread: the report's machine line names the threads every process used)
        report = write_report(out, study, ARMS, settings, "errprop demo: do SA and EP reduce error "
                              "propagation on the ring of 8?", command,
                              "ring of 8 Gaussians (exact density, score and denoiser)",
                              extra=f"Training and measuring took {study_s:.0f} s (wall-clock) with "
                              f"{jobs} worker process{'es' if jobs > 1 else ''}"
                              + (" (--quick: numbers not meaningful)." if quick else "."))
        summ, elapsed = study["summary"], time.perf_counter() - t0
        write_result(out, "demo", "errprop demo: wall-clock and verdict", command,
                     {"seconds": round(elapsed, 1), "study_seconds": round(study_s, 1), "jobs": jobs,
                      "threads_per_process": 1, "quick": quick, "verdict": verdict(summ, ARMS, settings),
                      "train_seconds": summ.get("train_seconds")},
                     [["wall-clock (s)", "jobs", "quick"], [f"{elapsed:.0f}", str(jobs), str(quick)]],
                     verdict(summ, ARMS, settings))
    finally:
        torch.set_num_threads(threads)
    print(f"[demo] done in {elapsed:.0f} s ({jobs} job{'s' if jobs > 1 else ''}; {cpu_model()})",
          flush=True)
    return report
