"""E4 — does SA's or EP's gain survive as the model converges? And E6 — does it survive a better solver?

One long training per objective × seed on a Gaussian mixture (exact ground truth), scored at
checkpoints spaced ×2 (e.g. 1k, 2k, … 16k steps) with DDIM, DPM-Solver++ 2M and UniPC-2 at 5–50
network evaluations, beside the exact denoiser on the same grids. The exact denoiser's error is the
discretization part; the model's excess over it is the learned part. Primary endpoints, declared
here before the run: the median excess cross-entropy at 10 DDIM steps at the last budget (E4) and at
10 NFE of DPM-Solver++ 2M and UniPC-2 (E6). Compute-matched comparisons come from the checkpoints:
an arm at budget b against the baseline at the smallest budget that costs at least as much.

    python experiments/e4_budget.py --data ring8 --seeds 5 --steps 16000
    python experiments/e4_budget.py --data random16 --seeds 5 --steps 4000
    python experiments/e4_budget.py --data ring8 --seeds 2 --quick   # smoke run
    python experiments/e4_budget.py --data random128 --width 512     # a wider MLP for a larger D

Resumable: rerun the same command after an interruption. Writes ``<out>/<data>/`` (runs,
study.json) and the result files ``docs/results/e4_budget_<data>.*`` and ``e6_solvers_<data>.*``
(:mod:`errprop.budget_report`); with ``--width W`` other than the mixtures' 128, ``<data>_wW`` in
each name (a study of another width is a result of its own).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from errprop.demo import default_jobs
from errprop.errors import ErrpropError
from errprop.files import cached
from errprop.study import (
    MIXTURE_WIDTH,
    Settings,
    mixture,
    mixture_model,
    objective_arms,
    run_study,
    sizes,
    step_costs,
)

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["sa2", "sa2_uniform", "sa3", "ep"]
SAMPLERS = ["ddim", "dpmpp_2m", "unipc_2"]


def budgets(steps: int, first: int) -> list[int]:
    """The checkpoints measured before the last: first, 2·first, 4·first, … below ``steps``."""
    out, b = [], first
    while b < steps:
        out.append(b)
        b *= 2
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ring8", help="ring8, grid25 or randomD (e.g. random16)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=16000, help="training steps of every arm (the last budget)")
    p.add_argument("--first", type=int, default=1000, help="the first budget measured; then ×2 up to --steps")
    p.add_argument("--width", type=int, default=MIXTURE_WIDTH,
                   help=f"the MLP's width (the mixtures' network: {MIXTURE_WIDTH}); a study of another width "
                        "is a result of its own")
    p.add_argument("--only", default=None, help="comma-separated arm names (baseline is always run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "e4"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; numbers not meaningful")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="single-thread worker processes (default: one per core)")
    a = p.parse_args()
    try:
        data, dim, label = mixture(a.data)
    except ErrpropError as e:
        p.error(f"--data: {e}")
    try:
        model, tag = mixture_model(a.width)
    except ErrpropError as e:
        p.error(f"--width: {e}")
    name, label = a.data + tag, label + (f", MLP width {a.width}" if tag else "")
    arms = objective_arms(dim, a.only.split(",") if a.only else ARMS)
    steps, first = (200, 50) if a.quick else (a.steps, a.first)
    if steps % first:
        p.error(f"--steps {steps} must be a multiple of --first {first}")
    settings = Settings(
        base=data + model + [f"train.steps={steps}", f"train.ckpt_every={first}",
                                     f"train.keep_last={steps // first}"],
        seeds=list(range(a.seeds)), samplers=SAMPLERS, budgets=budgets(steps, first), **sizes(a.quick))
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    out = Path(a.out) / (name + ("-quick" if a.quick else ""))
    study = run_study(out, arms, settings, progress=False, jobs=a.jobs)
    command = shlex.join(["python", "experiments/e4_budget.py", *sys.argv[1:]])
    docs = Path(a.docs) if not a.quick else out
    from errprop.budget_report import write_budget_results  # (imported late: a long run's code)

    # Each arm's step cost over the baseline's, measured here A B A B (the compute-matched pairs),
    # once per run folder: a rerun (e.g. after more seeds) keeps the ratios its pairs were chosen by,
    # not a new timing taken on whatever else the machine then runs
    n, skip = (150, 50) if a.quick else (600, 100)
    costs = cached(out / "step_costs.json", {"base": settings.base, "arms": [x.name for x in arms],
                                            "steps": n, "skip": skip},
                   lambda: step_costs(settings.base, arms, steps=n, skip=skip))
    print("[e4] step cost over the baseline's: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    for path in write_budget_results(out, docs, study, arms, settings, name, label, command, costs):
        print(path)


if __name__ == "__main__":
    main()
