"""B11 — the cost of the ideal denoiser D* of Fashion-MNIST's training set (60,000 × 784).

One call ``D*(x̂, σ)`` for a batch of 256 queries (x̂ = test image + σ ε) at several σ: the exact
float64 streaming log-sum-exp of :class:`errprop.data.empirical.EmpiricalDenoiser`. Its cost is
two (256 × 784) · (784 × 60,000) float64 matrix products at large σ; at small σ the second
product shrinks to the few training images with non-negligible weight. Also: the nearest-neighbour
search over the training set (one product), which the memorisation profile uses. Median of
``--repeats`` calls after one warm-up, in this process with ``--threads`` intra-op threads.

    python benchmarks/b11_ideal_denoiser.py              # ≈ 2 min on a 2-core CPU
    python benchmarks/b11_ideal_denoiser.py --quick      # 5,000 training images, smoke run

Writes ``docs/results/b11_ideal_denoiser.{json,md}`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (80.0, 5.0, 1.0, 0.3, 0.1, 0.02)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from errprop.data.empirical import EmpiricalDenoiser
    from errprop.data.images import load_images
    from errprop.files import atomic_write_text
    from errprop.provenance import provenance

    train = load_images("fashion-mnist", "train").x
    test = load_images("fashion-mnist", "test").x
    if a.quick:
        train, a.repeats = train[:5000], 1
    den = EmpiricalDenoiser(train)
    g = torch.Generator().manual_seed(0)
    x0 = test[: a.batch]
    rows = []
    for s in SIGMAS:
        x = x0 + s * torch.randn(x0.shape, generator=g)
        times = timed(lambda x=x, s=s: den(x, s), a.repeats)
        _, w = den.denoise_with_weights(x, s)
        rows.append({"what": "D*(x̂, σ)", "sigma": s, "seconds": statistics.median(times),
                     "all_seconds": times, "mean_ess": float(w["ess"].mean())})
        print(f"sigma {s:g}: {rows[-1]['seconds']:.3f} s per call (ess {rows[-1]['mean_ess']:.3g})",
              flush=True)
    times = timed(lambda: den.nearest(x0), a.repeats)
    rows.append({"what": "nearest training image", "sigma": None, "seconds": statistics.median(times),
                 "all_seconds": times, "mean_ess": None})
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *(argv or sys.argv[1:])])
    payload = {"title": "B11 — the ideal denoiser of Fashion-MNIST's training set: cost per call",
               "command": command, **provenance(), "threads": a.threads, "batch": a.batch,
               "train_size": len(train), "dim": den.dim, "quick": a.quick,
               "load_average": os.getloadavg(), "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "b11_ideal_denoiser" + ("_quick" if a.quick else "")
    atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
    flops = 2 * a.batch * len(train) * den.dim
    lines = [f"# {payload['title']}", "",
             f"Command: `{command}`  ",
             f"Commit {payload['commit']}, {payload['machine']}, {payload['date']}; load average "
             f"at the end {', '.join(f'{v:.2f}' for v in payload['load_average'])} (a shared machine: "
             "other processes ran beside this one).", "",
             f"Batch of {a.batch} queries (noised test images), {len(train):,} training images × "
             f"{den.dim} pixels, float64 throughout; median of {a.repeats} calls after a warm-up. "
             f"One matrix product is {flops / 1e9:.1f} GFLOP; D* needs two: the logits, and the "
             "weighted sum, which is narrowed to the training images whose weight for some query of "
             "the batch is above e^−80 of that query's largest — over a batch of 256 that saves "
             "work only at small σ (`ess`: the effective number of training images averaged per "
             "query). Nearest neighbour: one product.", "",
             "| call | σ | seconds per call | per query (ms) | mean ess |", "|---|---|---|---|---|"]
    for r in rows:
        ess = "" if r["mean_ess"] is None else f"{r['mean_ess']:.3g}"
        sig = "" if r["sigma"] is None else f"{r['sigma']:g}"
        lines.append(f"| {r['what']} | {sig} | {r['seconds']:.3f} | "
                     f"{1000 * r['seconds'] / a.batch:.2f} | {ess} |")
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print(out / f"{stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
