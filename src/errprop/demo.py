"""``errprop demo``: the whole experiment on built-in data, ending in a report.

On the ring-of-8 Gaussian mixture (exact ground truth, nothing to download) it trains three models
with the same network, budget and seed — the baseline ε-loss, SA-2 and EP — then measures
sample quality against the number of sampling steps with exact metrics, measures error
propagation step by step (with the exact denoiser as the reference), and writes a comparison report
(Markdown + HTML with the plots, and the JSON behind every number).
"""

from __future__ import annotations

import time
from pathlib import Path

from . import config as config_mod
from .builders import load_run
from .compare import compare
from .evaluate import evaluate
from .train import train

OBJECTIVES = {
    "baseline": ["loss.name=simple"],
    "sa2": ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0"],
    "ep": ["loss.name=ep", "loss.ep.L=5", "loss.ep.lam=1.0"],
}


def demo(out: Path | None = None, quick: bool = False, progress: bool = True) -> Path:
    """Run the demo into ``out`` (default ``runs/demo-<time>``); returns the report's path.

    ``quick`` shrinks every stage (for tests and smoke runs); the numbers are then not meaningful.
    """
    out = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    steps, n = (200, 500) if quick else (3000, 2000)
    sampling_steps = [5, 10] if quick else [10, 20, 50, 100]
    common = [f"train.steps={steps}", "train.batch_size=256", "train.ema_decay=0.995",
              f"train.ckpt_every={steps}"]
    runs = []
    for name, overrides in OBJECTIVES.items():
        cfg = config_mod.load(overrides=common + overrides)
        run_dir = out / name
        print(f"[demo] training {name} on the ring of 8 ({steps} steps) → {run_dir}", flush=True)
        train(cfg, run_dir, progress=progress)
        run = load_run(run_dir)
        evaluate(run, sampling_steps, ["ddim", "ddpm"], ["xent", "modes", "mmd"], n=n, progress=False)
        _diagnose(run, n, quick)
        runs.append(run_dir)
    print("[demo] writing the comparison report", flush=True)
    return compare(runs, out)


def _diagnose(run, n: int, quick: bool) -> None:
    """Error-propagation diagnostics of a run, with the exact mixture as the reference."""
    from .builders import load_data
    from .diagnostics.run import diagnose

    mixture = load_data(run.config)
    diagnose(run.denoiser, run.process, mixture, ["modular", "cumulative", "gap"], sampler="ddpm",
             steps=10 if quick else 50, grid="uniform", n=500, seed=0,
             out_dir=Path(run.path) / "diagnostics", oracle=mixture)
