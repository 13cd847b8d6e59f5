"""B10 — loop overhead: errprop's training and sampling loops against minimal hand-written ones.

For small models errprop's own bookkeeping (per-sample noise streams, seeding, EMA, logging,
checkpoint and stop checks) could cost more than the arithmetic. B10 measures it as a ratio to a
peer in the same process, A B A B:

- **training**: steps/s of :func:`errprop.train.train` (steady state, from the ``time`` column of
  its ``metrics.jsonl``, past a warm-up) against a minimal PyTorch loop with the *same* denoiser
  module, batch size, loss (‖ε̂ − ε‖² summed over dimensions), fused AdamW, gradient clipping and
  foreach EMA, drawing x0 from a pre-drawn pool and σ, ε from ``torch.rand``/``torch.randn``;
- **sampling**: samples/s of :func:`errprop.samplers.sample` (DDIM and ancestral DDPM, whose
  noise comes from errprop's per-sample streams) against a hand-written loop of the same update
  with ``torch.randn``.

Cases: the demo's MLP (ring of 8, width 128, depth 2, batch 256), a 16-D mixture MLP (width 256,
depth 3) and the 16-channel U-Net on Fashion-MNIST shapes (batch 64; Debian's
``dataset-fashion-mnist``). One intra-op thread, as the demo and the parallel studies run. Goal (issue 20):
errprop ÷ minimal ≥ 0.85. Also the start-up of ``errprop --help`` and of an argument error
(goal ≤ 1 s: the CLI parses before it imports torch), beside a bare Python start.

    python benchmarks/b10_loop_overhead.py            # ≈ 4 min on a 2-core CPU
    python benchmarks/b10_loop_overhead.py --quick    # smoke run; numbers not meaningful

Writes ``docs/results/b10_loop_overhead.{json,md}`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from errprop import config
from errprop.builders import build_denoiser, build_process
from errprop.denoisers import eps_from_denoised
from errprop.grids import make_grid
from errprop.noise import Noise
from errprop.results import write_result
from errprop.samplers import prior, sample
from errprop.train import ema_decay, read_metrics, train

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "demo MLP (ring8, 2-D)": ["data.name=ring8", "model.width=128", "model.depth=2",
                              "train.batch_size=256"],
    "16-D mixture MLP": ["data.name=random", "data.dim=16", "data.components=8", "model.width=256",
                         "model.depth=3", "train.batch_size=256"],
    "U-Net, 16 channels (28×28)": ["data.name=fashion-mnist", "model.net=unet", "model.channels=16",
                                   "model.channel_mult=[1,2]", "model.num_res_blocks=1",
                                   "model.dropout=0", "train.batch_size=64",
                                   "train.precision=fp32"],
}
COMMON = ["train.lr=1e-3", "train.warmup=100", "train.ema_decay=0.995", "train.threads=1"]


def _cfg(overrides: list[str], steps: int, log_every: int):
    return config.load(overrides=COMMON + overrides + [
        f"train.steps={steps}", f"train.ckpt_every={steps}", f"train.log_every={log_every}"])


def _shape(cfg) -> tuple[int, ...]:
    if cfg.data.name == "fashion-mnist":
        return (1, 28, 28)
    return (2,) if cfg.data.name == "ring8" else (cfg.data.dim,)


def errprop_rate(cfg, warm: int) -> float:
    """errprop's steady-state training steps/s: logged steps past ``warm`` over their time."""
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", progress=False)
        rows = [r for r in read_metrics(Path(tmp) / "run" / "metrics.jsonl") if r["step"] >= warm]
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["time"] - rows[0]["time"])


def minimal_rate(cfg, steps: int, warm: int) -> float:
    """A minimal hand-written training loop with the same network, optimizer, batch and EMA."""
    torch.manual_seed(0)
    process = build_process(cfg)
    shape = _shape(cfg)
    den = build_denoiser(cfg, shape, process)
    ema = copy.deepcopy(den.net).requires_grad_(False)
    params, ema_params = list(den.net.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, fused=True)
    pool = torch.randn(4096, *shape)
    b = cfg.train.batch_size
    t0 = None
    for k in range(steps):
        if k == warm:
            t0 = time.perf_counter()
        x0 = pool[torch.randint(len(pool), (b,))]
        sigma = process.sample_sigma(torch.rand(b))
        n = torch.randn_like(x0)
        x = x0 + sigma.reshape(-1, *[1] * len(shape)) * n
        loss = (eps_from_denoised(x, den(x, sigma), sigma) - n).flatten(1).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - ema_decay(cfg.train.ema_decay, k))
        if (k + 1) % cfg.train.log_every == 0:
            float(loss.detach())  # what any loop that logs its loss pays
    return (steps - warm) / (time.perf_counter() - t0)


def sampling_rates(cfg, n: int, steps: int, sampler: str) -> tuple[float, float]:
    """Samples/s of errprop's loop and of a hand-written loop of the same update (same network)."""
    torch.manual_seed(0)
    process = build_process(cfg)
    shape = _shape(cfg)
    den = build_denoiser(cfg, shape, process).eval()
    sigmas = make_grid("uniform", process, steps)
    opts = {"variance": "small"} if sampler == "ddpm" else {}
    with torch.no_grad():
        t0 = time.perf_counter()
        noise = Noise.from_seed(0, n)
        sample(den, prior(process, float(sigmas[0]), noise, shape), sigmas, noise, step=sampler, **opts)
        ours = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        x = float(sigmas[0]) * torch.randn(n, *shape)
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            d = den(x, s)
            if sampler == "ddim":
                x = d + (s_next / s) * (x - d)
            else:  # DDPM ancestral, β̃: the bridge mean plus its variance
                r = (s_next / s) ** 2
                x = d + r * (x - d) + (s_next**2 * (1 - r)) ** 0.5 * torch.randn_like(x)
        mine = n / (time.perf_counter() - t0)
    return ours, mine


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=False)
    return time.perf_counter() - t0


def startup_seconds(argv: list[str], repeats: int = 5) -> float:
    """Median wall-clock of a fresh ``python -m errprop ARGV`` (the answer, not the work)."""
    return statistics.median(_timed([sys.executable, "-m", "errprop", *argv]) for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run; numbers not meaningful")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--repeats", type=int, default=2, help="A B pairs per case")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows, data = [["case", "loop", "errprop", "minimal", "errprop ÷ minimal (per pair)", "mean"]], {}
    for name, overrides in CASES.items():
        unet = "unet" in " ".join(overrides)
        steps, warm, log_every = ((40, 10, 5) if unet else (1500, 300, 100))
        if args.quick:
            steps, warm, log_every = (8, 2, 2) if unet else (150, 50, 25)
        cfg = _cfg(overrides, steps, log_every)
        ours, mine = [], []
        for _ in range(args.repeats):  # A B A B
            ours.append(errprop_rate(cfg, warm))
            mine.append(minimal_rate(cfg, steps, warm))
        ratios = [a / b for a, b in zip(ours, mine)]
        data[name] = {"train": {"errprop_steps_per_s": ours, "minimal_steps_per_s": mine,
                                "ratio": ratios, "steps": steps, "warm_up": warm}}
        rows.append([name, "training (steps/s)", f"{statistics.mean(ours):.1f}",
                     f"{statistics.mean(mine):.1f}", ", ".join(f"{r:.2f}" for r in ratios),
                     f"**{statistics.mean(ratios):.2f}**"])
        if unet:
            continue  # sampling a U-Net is B3's subject (its overhead over the network's time)
        n, k = (2000, 50) if not args.quick else (200, 10)
        for sampler in ("ddim", "ddpm"):
            pairs = [sampling_rates(cfg, n, k, sampler) for _ in range(args.repeats)]
            ratios = [a / b for a, b in pairs]
            data[name][f"sample_{sampler}"] = {"errprop_samples_per_s": [a for a, _ in pairs],
                                               "minimal_samples_per_s": [b for _, b in pairs],
                                               "ratio": ratios, "n": n, "steps": k}
            rows.append([name, f"{sampler.upper()} {k} steps, n = {n} (samples/s)",
                         f"{statistics.mean(a for a, _ in pairs):.0f}",
                         f"{statistics.mean(b for _, b in pairs):.0f}",
                         ", ".join(f"{r:.2f}" for r in ratios), f"**{statistics.mean(ratios):.2f}**"])
        print(f"[b10] {name}: done", flush=True)
    # Start-up: `errprop --help` and an argument error parse before torch is imported.
    bare = statistics.median(
        [_timed([sys.executable, "-c", "pass"]) for _ in range(5)])
    for label, cli in (("errprop --help", ["--help"]), ("errprop train --no-such-option (an argument "
                                                         "error)", ["train", "--no-such-option"])):
        sec = startup_seconds(cli)
        data.setdefault("startup", {})[label] = {"seconds": sec, "bare_python_seconds": bare}
        rows.append([label, "start-up (s, median of 5)", f"{sec:.2f}", f"{bare:.2f} (bare Python)",
                     "—", "goal ≤ 1 s"])
    worst = min(min(c["train"]["ratio"]) for k, c in data.items() if k != "startup")
    notes = ("errprop's loop keeps what makes its numbers trustworthy — per-sample counter-based "
             "noise streams (a sample never depends on its batch), per-step seeding (bit-identical "
             "resume), non-finite checks, metrics.jsonl and TensorBoard every `log_every` steps — "
             "and the minimal loop none of it. One intra-op thread; steady state past the warm-up "
             f"steps. Goal: ≥ 0.85 for the demo's MLP. Lowest training ratio of any pair: {worst:.2f}.")
    if args.quick:
        notes += " **--quick: numbers not meaningful.**"
    command = shlex.join(["python", "benchmarks/b10_loop_overhead.py", *(argv or sys.argv[1:])])
    write_result(args.out, "b10_loop_overhead", "B10 — loop overhead against a minimal loop",
                 command, {"cases": data, "threads": 1, "quick": args.quick}, rows, notes)
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    if not all(math.isfinite(r) for k, c in data.items() if k != "startup" for r in c["train"]["ratio"]):
        raise SystemExit("b10: a rate is not finite")


if __name__ == "__main__":
    main()
