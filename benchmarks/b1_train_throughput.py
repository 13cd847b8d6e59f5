"""B1 — training throughput of errprop's U-Net against diffusers' ``UNet2DModel``.

Both networks train on the same step: DDPM noising (t uniform over 1000 steps, linear β), ε-MSE,
AdamW (fused, for both), batch 128 of 28×28×1 images, at matched parameter counts (±10 %). Each model runs in
float32 and under bf16 autocast; the best of the two counts for each. Timings alternate between
all (model, dtype) runs, A B A B, after warm-up steps, and the median over repeats is reported.

    python benchmarks/b1_train_throughput.py            # a few minutes on a 2-core CPU
    python benchmarks/b1_train_throughput.py --quick    # < 1 min smoke run
    python benchmarks/b1_train_throughput.py --device cuda
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/b1_train_throughput.py   # as on a CPU without AMX

Writes ``docs/results/b1_train_throughput.{json,md}`` (``--out`` to change the folder; with
``ONEDNN_MAX_CPU_ISA`` set, ``b1_train_throughput_<isa>.{json,md}``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from errprop.nets.unet import UNet
from errprop.process import VPProcess
from errprop.results import write_result

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "bf16")


def run_conditions(device: str) -> dict:
    """What B1's numbers depend on beyond the machine line of :func:`errprop.provenance.provenance`:
    the device, a oneDNN ISA cap, whether errprop's compiled GroupNorm kernel ran, diffusers' version."""
    try:
        import diffusers

        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = None
    from errprop.nets import kernels

    return {
        "device": device,
        # ONEDNN_MAX_CPU_ISA=AVX2 (or AVX512_CORE) makes oneDNN's convolutions run as on a CPU
        # without AMX / AVX-512 BF16: how B1 measures "without AMX" on a machine that has it.
        "onednn_isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        # Whether a U-Net in this process ran errprop's compiled GroupNorm kernel (None: no U-Net
        # ran on the CPU here). Asked of the cache, so reporting never builds or loads the kernel.
        "errprop_cpu_kernel": (kernels.group_norm() is not None
                               if device == "cpu" and kernels.group_norm.cache_info().currsize else None),
        "diffusers": diffusers_version,
    }


def describe_conditions(c: dict) -> str:
    """One sentence of :func:`run_conditions` for the result's Markdown."""
    text = f"Device {c['device']}; diffusers {c['diffusers']}"
    if c.get("onednn_isa_cap"):
        text += f"; oneDNN capped at {c['onednn_isa_cap']} (ONEDNN_MAX_CPU_ISA)"
    if c.get("errprop_cpu_kernel") is not None:
        text += "; errprop's compiled GroupNorm kernel: " + ("on" if c["errprop_cpu_kernel"] else "off")
    return text + "."


# ---------------------------------------------------------------------------------------------
# The two models at matched size
# ---------------------------------------------------------------------------------------------


def diffusers_unet() -> nn.Module:
    """diffusers' UNet2DModel: widths (32, 64, 64), one res layer per block, no attention in the
    down/up blocks (the default mid-block attention stays): 1.06 M parameters."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
    )


def errprop_unet() -> nn.Module:
    """errprop's U-Net at the same widths and depth (attention in the middle only)."""
    return UNet(1, channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, image_size=28)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------
# One training step: DDPM noising, ε-MSE, AdamW
# ---------------------------------------------------------------------------------------------


def make_step(
    model: nn.Module, forward: Callable, dtype: str, batch: int, device: torch.device
) -> Callable[[], float]:
    """A closure running one optimizer step of ``model`` and returning the loss."""
    process = VPProcess(T=1000, schedule="linear")
    abar = process.alphas_cumprod.to(device=device, dtype=torch.float32)
    gen = torch.Generator(device).manual_seed(0)
    x0 = torch.rand(batch, 1, 28, 28, generator=gen, device=device) * 2 - 1
    # Fused AdamW for both: errprop's trainer uses it, and a diffusers user can ask for it too.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step() -> float:
        t = torch.randint(0, process.T, (batch,), generator=gen, device=device)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with autocast:
            pred = forward(x_t, t)
        loss = (pred.float() - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    runs: dict[str, Callable], steps: int, repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Images/s of each run: warm-up, then ``repeats`` rounds over all runs in turn (A B A B)."""
    for step in runs.values():
        for _ in range(warmup):
            step()
    sync(device)
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, step in runs.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            out[name].append(steps / (time.perf_counter() - t0))
    return out


#: Operator families of a U-Net step, by the aten op names their time is booked under.
OP_FAMILIES = {
    "convolution": ("conv", "mkldnn_convolution"),
    "GroupNorm (+ SiLU)": ("group_norm", "groupnorm", "errprop_group_norm", "silu"),
    "attention / matmul": ("addmm", "mm", "bmm", "baddbmm", "softmax", "scaled_dot_product", "linear"),
    "optimizer": ("adam", "foreach", "fused"),
}


def op_shares(step: Callable[[], float], steps: int = 2) -> dict[str, float]:
    """Share of one training step's CPU time per operator family (self time of aten ops under
    torch.profiler, after one untimed step)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total, fam = 0.0, dict.fromkeys([*OP_FAMILIES, "other"], 0.0)
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        name = ev.key.lower()
        hit = next((f for f, keys in OP_FAMILIES.items() if any(k in name for k in keys)), "other")
        fam[hit] += t
    return {k: v / total for k, v in fam.items()} if total else fam


def main(argv: list[str] | None = None) -> dict:
    """Run B1 and write its results; returns the JSON payload."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per run first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list among fp32, bf16")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 32, 1 step × 3 repeats")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--tag", help="suffix of the result files' name (e.g. the CPU: epyc_avx512)")
    p.add_argument("--profile", action="store_true",
                   help="also the share of each operator family in a step (torch.profiler)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats, args.warmup = 32, 1, 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not set(dtypes) <= set(DTYPES):
        p.error(f"--dtypes: choose among {DTYPES}")

    builders = {"errprop": errprop_unet, "diffusers": diffusers_unet}
    params = {name: n_params(build()) for name, build in builders.items()}
    print(
        f"parameters: errprop {params['errprop']:,}, diffusers {params['diffusers']:,} "
        f"(ratio {params['errprop'] / params['diffusers']:.3f})"
    )
    if abs(params["errprop"] / params["diffusers"] - 1) > 0.10:
        print("warning: parameter counts differ by more than 10 %")

    runs = {}
    for name, build in builders.items():
        for dtype in dtypes:
            torch.manual_seed(0)  # each run owns identical initial weights and its own optimizer
            model = build().to(device)
            forward = model if name == "errprop" else (lambda x, t, m=model: m(x, t).sample)
            runs[f"{name}/{dtype}"] = make_step(model, forward, dtype, args.batch, device)

    steps_per_s = measure(runs, args.steps, args.repeats, args.warmup, device)
    shares = {k: op_shares(step) for k, step in runs.items()} if args.profile else {}
    img_s = {k: [args.batch * v for v in vs] for k, vs in steps_per_s.items()}
    median = {k: statistics.median(v) for k, v in img_s.items()}
    best = {
        name: max(((d, median[f"{name}/{d}"]) for d in dtypes), key=lambda kv: kv[1])
        for name in builders
    }
    ratio = best["errprop"][1] / best["diffusers"][1]

    table = [["model", "params", "dtype", "images/s (median)", "min – max", "best"]]
    for key, vs in img_s.items():
        name, dtype = key.split("/")
        table.append(
            [
                name,
                f"{params[name]:,}",
                dtype,
                f"{median[key]:.1f}",
                f"{min(vs):.1f} – {max(vs):.1f}",
                "✓" if best[name][0] == dtype else "",
            ]
        )
    for row in table:
        print("  ".join(f"{c:>18}" for c in row))
    print(
        f"errprop {best['errprop'][1]:.1f} img/s ({best['errprop'][0]}) vs diffusers "
        f"{best['diffusers'][1]:.1f} img/s ({best['diffusers'][0]}): ratio {ratio:.2f}"
    )

    conditions = run_conditions(device.type)
    data = {
        "conditions": conditions,
        "settings": {
            "batch": args.batch,
            "image": [1, 28, 28],
            "steps_per_repeat": args.steps,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "dtypes": dtypes,
            "loss": "eps-MSE, DDPM noising, t ~ U{0..999}, linear beta",
            "optimizer": "AdamW lr 1e-4, fused",
        },
        "params": params,
        "images_per_s": img_s,
        "median_images_per_s": median,
        "best": {k: {"dtype": d, "images_per_s": v} for k, (d, v) in best.items()},
        "ratio": ratio,
        "op_shares": shares,
    }
    notes = (
        f"**Ratio (best vs best): {ratio:.2f}** — errprop {best['errprop'][1]:.1f} images/s "
        f"({best['errprop'][0]}), diffusers {best['diffusers'][1]:.1f} images/s "
        f"({best['diffusers'][0]}). Runs alternate A B A B; medians over {args.repeats} repeats "
        f"of {args.steps} steps after {args.warmup} warm-up steps."
    )
    if shares:
        fams = list(next(iter(shares.values())))
        notes += ("\n\nShare of a training step's CPU time by operator family (torch.profiler, self "
                  "time of aten ops):\n\n| run | " + " | ".join(fams) + " |\n|" + "---|" * (len(fams) + 1)
                  + "".join(f"\n| {k} | " + " | ".join(f"{100 * v[f]:.0f} %" for f in fams) + " |"
                            for k, v in shares.items()))
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    name = "b1_train_throughput" + (f"_{cap.lower()}" if cap else "") + (f"_{args.tag}" if args.tag else "")
    command = (f"ONEDNN_MAX_CPU_ISA={cap} " if cap else "") + shlex.join(
        ["python", "benchmarks/b1_train_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    return write_result(args.out, name, "B1 — training throughput, errprop UNet vs diffusers UNet2DModel",
                        command, data, table, notes, intro=describe_conditions(conditions))


if __name__ == "__main__":
    main()
