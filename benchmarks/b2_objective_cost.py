"""B2 — the cost of the seed objectives: step time of SA-K and EP over the baseline step.

One training step = loss, backward, AdamW step, at the same batch. Floors (network passes per
example, relative to the baseline's one): SA-K = K (one batched call of K·B); EP at L = 5: the base
loss on B plus a rollout of ℓ ~ U{1..5} steps on B/2, i.e. 1 + 3·½ = 2.5 on average. Runs
alternate baseline and objective (A B A B), repeat, and report medians and measured / floor.

    python benchmarks/b2_objective_cost.py            # MLP on the ring of 8 and the U-Net on 28×28
    python benchmarks/b2_objective_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from errprop import config
from errprop.builders import build_denoiser, build_loss, build_process
from errprop.noise import Noise, stream_seeds

ROOT = Path(__file__).parents[1]
OBJECTIVES = {f"SA-{k}": (["loss.name=sa", f"loss.sa.K={k}"], float(k)) for k in (2, 3, 4)}
OBJECTIVES["EP (L=5)"] = (["loss.name=ep", "loss.ep.L=5"], 2.5)
MODELS = {"mlp ring8": ["data.name=ring8", "model.net=mlp"],
          "unet 28x28": ["data.name=fashion-mnist", "model.net=unet", "model.channels=32",
                         "train.precision=fp32"]}


def stepper(overrides: list[str], batch: int):
    """A closure doing one full training step of the configured model and loss."""
    cfg = config.load(overrides=overrides + [f"train.batch_size={batch}"])
    shape = (2,) if cfg.model.net == "mlp" else (1, 28, 28)
    process = build_process(cfg)
    torch.manual_seed(0)
    den = build_denoiser(cfg, shape, process)
    loss = build_loss(cfg, process)
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4)
    x0 = torch.randn(batch, *shape).clamp(-1, 1)
    state = {"k": 0}

    def step() -> float:
        noise = Noise(stream_seeds(0, np.arange(batch), state["k"]))
        state["k"] += 1
        t = time.perf_counter()
        out = loss(den, x0, noise)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return time.perf_counter() - t

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    a = p.parse_args()
    if a.quick:
        a.repeats, a.steps = 2, 2
    rows = []
    for model, mo in MODELS.items():
        base = stepper(mo, a.batch)
        for name, (lo, floor) in OBJECTIVES.items():
            obj = stepper(mo + lo, a.batch)
            for f in (base, obj):  # warm-up
                f()
            tb, to = [], []
            for _ in range(a.repeats):  # A B A B
                tb.append(sum(base() for _ in range(a.steps)) / a.steps)
                to.append(sum(obj() for _ in range(a.steps)) / a.steps)
            ratio = statistics.median(o / b for o, b in zip(to, tb))
            rows.append({"model": model, "objective": name, "baseline_ms": 1e3 * statistics.median(tb),
                         "objective_ms": 1e3 * statistics.median(to), "ratio": ratio, "floor": floor,
                         "ratio_over_floor": ratio / floor})
            print(json.dumps(rows[-1]), flush=True)
    commit = os.environ.get("ERRPROP_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    meta = {"command": "python benchmarks/b2_objective_cost.py" + (" --quick" if a.quick else ""),
            "machine": f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}", "commit": commit,
            "date": time.strftime("%Y-%m-%d"), "batch": a.batch, "repeats": a.repeats, "steps": a.steps}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "b2_objective_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# B2 — cost of the seed objectives over the baseline step", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
             f"Commit {commit}, {meta['date']}; batch {a.batch}, median of {a.repeats} alternated repeats "
             f"of {a.steps} steps (loss + backward + AdamW).", "",
             "| model | objective | baseline ms | objective ms | ratio | floor | ratio / floor |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['objective']} | {r['baseline_ms']:.1f} | {r['objective_ms']:.1f} | "
              f"{r['ratio']:.2f} | {r['floor']:.1f} | {r['ratio_over_floor']:.2f} |" for r in rows]
    lines += ["", "EP's ratio varies from step to step with the drawn rollout length ℓ; its floor is the "
              "average 2.5."]
    (out / "b2_objective_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
