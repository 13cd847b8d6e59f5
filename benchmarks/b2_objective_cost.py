"""B2 — the cost of the seed objectives: step time of SA-K and EP over the baseline step.

One training step = loss, backward, AdamW step, at the same batch B. Floors, in network
forward+backward passes per step relative to the baseline's one pass over B:

- SA-K: K (K·B network evaluations: one batched call, or K calls of B for images on a CPU,
  where that is faster). The script also times the *baseline at batch K·B*: on a CPU its step
  costs more than K baseline steps (the activations outgrow the caches), which is why SA-K calls
  the network K times there.
- EP (L = 5, T = 1000, ``backprop=full``): the base loss on B plus a rollout of min(ℓ, h) steps on
  B/2, h ~ U{1..T−1}, ℓ ~ U{1..L}: ``1 + E[min(ℓ, h)]/2`` = 1 + 2.996/2 = 2.498. Every repeat
  replays the same per-step draws (noise keys 0..steps−1), so each repeat does the same work; the
  floor of the steps actually drawn is reported next to the expected one.

Runs alternate A B (A′) A B (A′) after warm-up, and report medians over repeats and
measured/floor. The U-Net runs under ``torch.autocast("cpu", dtype=torch.bfloat16)`` unless
``--unet-precision fp32`` (or ``both``).

    python benchmarks/b2_objective_cost.py                # MLP on the ring of 8, U-Net on 28×28
    python benchmarks/b2_objective_cost.py --quick        # smoke run
    python benchmarks/b2_objective_cost.py --threads 1    # on a shared machine

Writes ``docs/results/b2_objective_cost.{json,md}`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from errprop import config
from errprop.builders import build_denoiser, build_loss, build_process
from errprop.noise import Noise, stream_seeds
from errprop.results import write_result

ROOT = Path(__file__).resolve().parents[1]
SA_K = (2, 3, 4)
EP_L = 5
MODELS = {"mlp ring8": ["data.name=ring8", "model.net=mlp"],
          "unet 28x28": ["data.name=fashion-mnist", "model.net=unet", "model.channels=32"]}


def ep_expected_floor(T: int, L: int) -> float:
    """1 + E[min(ℓ, h)]/2 for h ~ U{1..T−1}, ℓ ~ U{1..L}: EP's passes over the baseline's one."""
    h = np.arange(1, T)[:, None]
    ell = np.arange(1, L + 1)[None, :]
    return 1 + float(np.minimum(ell, h).mean()) / 2


class Stepper:
    """One full training step (loss, backward, AdamW) of a configured model and loss at a batch."""

    def __init__(self, overrides: list[str], batch: int, bf16: bool, n_keys: int) -> None:
        cfg = config.load(overrides=overrides + [f"train.batch_size={batch}"])
        self.shape = (2,) if cfg.model.net == "mlp" else (1, 28, 28)
        self.process = build_process(cfg)
        torch.manual_seed(0)
        self.den = build_denoiser(cfg, self.shape, self.process)
        self.loss = build_loss(cfg, self.process)
        self.opt = torch.optim.AdamW(self.den.parameters(), lr=1e-4, fused=True)  # as the trainer
        self.x0 = torch.randn(batch, *self.shape).clamp(-1, 1)
        self.batch, self.bf16, self.n_keys, self.k = batch, bf16, n_keys, 0
        self.rollouts: list[int] = []  # EP: steps of each rollout (h − τ)
        if hasattr(self.loss, "draw_steps"):
            draw = self.loss.draw_steps

            def recording(noise):
                h, tail = draw(noise)
                self.rollouts.append(h - tail)
                return h, tail

            self.loss.draw_steps = recording

    def __call__(self) -> float:
        noise = Noise(stream_seeds(0, np.arange(self.batch), self.k % self.n_keys))
        self.k += 1
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        t = time.perf_counter()
        with autocast:
            out = self.loss(self.den, self.x0, noise)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        return time.perf_counter() - t

    def timed(self, steps: int) -> float:
        """Mean seconds of ``steps`` consecutive steps."""
        return sum(self() for _ in range(steps)) / steps


def bench(model: str, overrides: list[str], args, bf16: bool) -> list[dict]:
    """All objectives of one model, each alternated with the baseline (and the K·B baseline)."""
    rows = []
    base = Stepper(overrides, args.batch, bf16, args.steps)
    objectives = [(f"SA-{k}", ["loss.name=sa", f"loss.sa.K={k}"], k) for k in SA_K]
    objectives.append((f"EP (L={EP_L})", ["loss.name=ep", f"loss.ep.L={EP_L}"], None))
    for name, lo, k in objectives:
        obj = Stepper(overrides + lo, args.batch, bf16, args.steps)
        arms = [base, obj] + ([Stepper(overrides, k * args.batch, bf16, args.steps)] if k else [])
        for arm in arms:  # warm-up
            arm.timed(2 if args.quick else args.steps)
        obj.rollouts.clear()
        times: list[list[float]] = [[] for _ in arms]
        for _ in range(args.repeats):  # A B (A′) A B (A′) ...
            for arm, ts in zip(arms, times):
                ts.append(arm.timed(args.steps))
        ratio = statistics.median(o / b for o, b in zip(times[1], times[0]))
        row = {"model": model, "precision": "bf16" if bf16 else "fp32", "objective": name,
               "batch": args.batch, "baseline_ms": 1e3 * statistics.median(times[0]),
               "objective_ms": 1e3 * statistics.median(times[1]), "ratio": ratio}
        if k:
            batch_ratio = statistics.median(c / b for c, b in zip(times[2], times[0]))
            row.update(floor=float(k), baseline_KB_ms=1e3 * statistics.median(times[2]),
                       baseline_KB_ratio=batch_ratio, ratio_over_KB=ratio / batch_ratio)
        else:
            drawn = 1 + statistics.mean(obj.rollouts) / 2
            row.update(floor=ep_expected_floor(obj.process.T, EP_L), floor_drawn=drawn,
                       rollout_steps=obj.rollouts[:args.steps], ratio_over_drawn=ratio / drawn)
        row["ratio_over_floor"] = ratio / row["floor"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table_rows(rows: list[dict]) -> list[list[str]]:
    """The result table: header and one row per (model, precision, objective)."""
    out = [["model", "precision", "objective", "baseline ms", "objective ms", "ratio", "floor",
            "ratio / floor", "reference floor", "ratio / reference"]]
    for r in rows:
        if "baseline_KB_ratio" in r:
            ref = [f"K·B baseline: {r['baseline_KB_ratio']:.2f}", f"{r['ratio_over_KB']:.2f}"]
        else:
            ref = [f"drawn steps: {r['floor_drawn']:.2f}", f"{r['ratio_over_drawn']:.2f}"]
        out.append([r["model"], r["precision"], r["objective"], f"{r['baseline_ms']:.1f}",
                    f"{r['objective_ms']:.1f}", f"{r['ratio']:.2f}", f"{r['floor']:.3g}",
                    f"{r['ratio_over_floor']:.2f}", *ref])
    return out


NOTES = ("Floors count network forward+backward passes over B: SA-K evaluates K·B points "
         "(K calls of B for images on a CPU, one call otherwise), EP "
         "the base loss on B plus min(ℓ, h) rollout steps on B/2 (expected 2.498 at L = 5, T = 1000). "
         "The fixed part of a step (the optimizer, Python overhead) does not scale with the "
         "batch, so small models sit below their floors. Reference floors: for SA-K the measured "
         "ratio of the baseline step at batch K·B (what the network itself charges for K·B "
         "samples); for EP 1 + (mean rollout length of the steps actually drawn)/2.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed steps per repeat (EP: distinct draws)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--unet-precision", choices=("bf16", "fp32", "both"), default="bf16")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    p.add_argument("--quick", action="store_true", help="2 repeats of 2 steps at batch 32")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    a = p.parse_args()
    if a.quick:
        a.repeats, a.steps, a.batch = 2, 2, 32
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    for model in a.models.split(","):
        if model.startswith("unet"):
            for bf16 in {"bf16": [True], "fp32": [False], "both": [True, False]}[a.unet_precision]:
                rows += bench(model, MODELS[model], a, bf16)
        else:
            rows += bench(model, MODELS[model], a, False)
    load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    settings = {"batch": a.batch, "repeats": a.repeats, "steps": a.steps,
                "threads": torch.get_num_threads(), "load_before": load_before, "load_after": load_after}
    intro = (f"Batch {a.batch}; median over {a.repeats} alternated repeats of {a.steps} steps (loss + "
             f"backward + AdamW); {settings['threads']} torch threads; load average {load_before} "
             f"before, {load_after} after.")
    command = shlex.join(["python", "benchmarks/b2_objective_cost.py", *sys.argv[1:]])
    write_result(a.out, "b2_objective_cost", "B2 — cost of the seed objectives over the baseline step",
                 command, {"settings": settings, "rows": rows}, table_rows(rows), NOTES, intro=intro)
    print((Path(a.out) / "b2_objective_cost.md").read_text())


if __name__ == "__main__":
    main()
