"""E1 — do SA, EP and DDPM-IP reduce error propagation? Exact answers on Gaussian mixtures.

Every objective is trained with the same small network, budget and seeds; each is measured with
the same sampling noise and compared with the baseline by paired differences over seeds (95 %
t-intervals), with the exact denoiser and the data-vs-data floors beside every number
(:mod:`errprop.study`). One command per data set; resumable (rerun the same command after an
interruption: finished runs and measurements are reused).

    python experiments/e1_mixtures.py --data ring8 --seeds 10          # ≈ 40 min on 2 cores
    python experiments/e1_mixtures.py --data grid25 --seeds 10
    python experiments/e1_mixtures.py --data random16 --seeds 10
    python experiments/e1_mixtures.py --data ring8 --seeds 2 --quick   # smoke run

Writes ``<out>/<data>/`` (runs, study.json, plots, report.md/.html) and copies report.md, its
plots and study.json to ``docs/results/e1_<data>/``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

import torch

from errprop.demo import default_jobs
from errprop.provenance import provenance
from errprop.study import Arm, Settings, run_study
from errprop.study_report import write_report

ROOT = Path(__file__).resolve().parents[1]

DATA = {
    "ring8": (["data.name=ring8"], 2, "ring of 8 Gaussians (2-D)"),
    "grid25": (["data.name=grid25"], 2, "5×5 grid of Gaussians (2-D)"),
    "random16": (["data.name=random", "data.dim=16", "data.components=8", "data.mixture_seed=0"], 16,
                 "random mixture of 8 Gaussians in 16-D"),
}


def arms(dim: int) -> list[Arm]:
    """The objectives: SA at the code's λ (K = 2) and the paper's table (K = 3, 4; τ variants),
    EP at the code's balance (λ = D), DDPM-IP at its usual γ."""
    return [
        Arm("baseline", "baseline (ε-loss)", ["loss.name=simple"]),
        Arm("sa2", "SA-2 (λ=1, code)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0"]),
        # SA's code draws t antithetically, the baseline uniformly: the arm that isolates the objective
        Arm("sa2_uniform", "SA-2 (λ=1, uniform t)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0",
                                                     "loss.sa.t_sampling=uniform"]),
        Arm("sa3", "SA-3 (λ=0.3, paper)", ["loss.name=sa", "loss.sa.K=3", "loss.sa.lam=0.3"]),
        Arm("sa4", "SA-4 (λ=0.2, paper)", ["loss.name=sa", "loss.sa.K=4", "loss.sa.lam=0.2"]),
        Arm("sa2_tau", "SA-2 (λ=1, relative τ)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0",
                                                  "loss.sa.tau=relative"]),
        Arm("ep", f"EP (L=5, λ=D={dim})", ["loss.name=ep", "loss.ep.L=5", f"loss.ep.lam={dim}.0"]),
        Arm("ip", "DDPM-IP (γ=0.1)", ["loss.name=simple", "loss.input_perturbation=0.1"]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=sorted(DATA), default="ring8")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=2000, help="training steps of every arm")
    p.add_argument("--only", default=None, help="comma-separated arm names (baseline is always run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "e1"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; numbers not meaningful")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="single-thread worker processes (default: one per core)")
    a = p.parse_args()
    data, dim, label = DATA[a.data]
    chosen = arms(dim)
    if a.only:
        keep = {"baseline", *a.only.split(",")}
        chosen = [x for x in chosen if x.name in keep]
    steps = 100 if a.quick else a.steps
    settings = Settings(
        base=data + ["model.width=128", "model.depth=2", "train.batch_size=256", "train.lr=1e-3",
                     "train.warmup=100", "train.ema_decay=0.995", "train.log_every=100",
                     f"train.steps={steps}", f"train.ckpt_every={steps}"],
        seeds=list(range(a.seeds)),
        sampling_steps=[5, 10] if a.quick else [5, 10, 20, 50],
        n=300 if a.quick else 2000, diag_steps=10 if a.quick else 20, n_diag=200 if a.quick else 1000)
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    out = Path(a.out) / (a.data + ("-quick" if a.quick else ""))
    study = run_study(out, chosen, settings, progress=False, jobs=a.jobs)
    command = shlex.join(["python", "experiments/e1_mixtures.py", *sys.argv[1:]])
    report = write_report(out, study, chosen, settings, f"E1 — error propagation on the {label}",
                          command, label)
    if not a.quick:
        docs = Path(a.docs) / f"e1_{a.data}"
        docs.mkdir(parents=True, exist_ok=True)
        for f in [*out.glob("*.png"), report, out / "study.json"]:  # the HTML repeats the PNGs
            shutil.copy2(f, docs / f.name)
        # study.json is the same for every run of a study; where and when this one ran lives apart
        (docs / "provenance.json").write_text(json.dumps({"command": command, **provenance()}, indent=1))
        print(f"copied to {docs}")
    print(report)


if __name__ == "__main__":
    main()
