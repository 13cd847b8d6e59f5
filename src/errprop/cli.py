"""The ``errprop`` command: a thin layer over the library, one function per sub-command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import config as config_mod
from .errors import ErrpropError


def _steps_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


# ------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    if args.resume:
        if args.config:
            raise ErrpropError("--resume takes its config from the run; use --set to change fields")
        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise ErrpropError(f"--resume {run}: not a run folder (no config.yaml)")
        cfg = config_mod.load(run / "config.yaml", args.set)
    else:
        cfg = config_mod.load(args.config, args.set)
        stem = Path(args.config).stem if args.config else "run"
        run = Path(args.out) if args.out else Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.dry_run:
        print(config_mod.dump(cfg), end="")
        return 0
    result = train(cfg, run, resume=bool(args.resume), progress=not args.no_progress)
    if result.interrupted:
        print(f"interrupted at step {result.step}; checkpoint saved: {result.checkpoint}\n"
              f"continue with: errprop train --resume {run}", file=sys.stderr)
        return 130
    print(f"trained {result.step} steps; checkpoint: {result.checkpoint}")
    print(run)
    return 0


# ------------------------------------------------------------------------------------------ sample
def cmd_sample(args: argparse.Namespace) -> int:
    from .builders import load_data, load_run, sample_clip
    from .data.gmm import GaussianMixture
    from .generate import generate
    from .plots import save_samples_png

    run = load_run(args.run, ema=not args.raw)
    sc = run.config.sample
    sampler = args.sampler or sc.sampler
    steps = args.steps or sc.steps
    seed = sc.seed if args.seed is None else args.seed
    n = args.n or sc.n
    grid = args.grid or sc.grid
    x = generate(run.denoiser, run.process, run.shape, n, seed=seed, sampler=sampler, steps=steps,
                 grid=grid, batch_size=args.batch_size or sc.batch_size, progress=True,
                 grid_options={"rho": sc.rho, "spacing": sc.spacing, "sigmas": sc.sigmas},
                 eta=sc.eta if args.eta is None else args.eta, variance=sc.variance, s_churn=sc.s_churn,
                 clip=sample_clip(run.config))
    out = Path(run.path) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{sampler}-{steps}-{seed}"
    np.savez_compressed(out / f"{stem}.npz", x=x.numpy())
    data = load_data(run.config) if x.ndim == 2 and x.shape[1] == 2 else None
    ref = data.sample_n(len(x), seed=seed + 1) if isinstance(data, GaussianMixture) else None
    save_samples_png(x, out / f"{stem}.png", f"{sampler}, {steps} steps, step {run.step}", ref)
    print(out / f"{stem}.npz")
    return 0


# ------------------------------------------------------------------------------------------ evaluate
def _samplers_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in ("ddim", "ddpm", "euler", "heun")]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected samplers among ddim, ddpm, euler, heun; got {text!r}")
    return names


def _metrics_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in ("fd", "mmd", "swd", "xent", "modes", "fid")]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected metrics among fd, mmd, swd, xent, modes, fid; got {text!r}")
    return names


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .builders import load_run
    from .evaluate import evaluate, format_table
    from .train import pick_device

    device = pick_device(args.device)
    run = load_run(args.run, device=device)
    results = evaluate(run, args.steps, args.sampler, args.metric, args.n, args.seed, args.batch_size,
                       device, args.inception_weights)
    for metric, result in results.items():
        print(format_table(result))
        print(Path(run.path) / "eval" / f"{metric}.json")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from .metrics.features import load_or_train_classifier
    from .train import pick_device

    model, acc = load_or_train_classifier(args.data, args.root, args.seed, device=pick_device(args.device))
    print(f"{args.data} classifier: test accuracy {acc:.4f}")
    return 0


# ------------------------------------------------------------------------------------------ diagnose
def cmd_diagnose(args: argparse.Namespace) -> int:
    import shlex

    from .builders import load_data, load_run, sample_clip
    from .data.gmm import GaussianMixture
    from .diagnostics.run import diagnose
    from .train import pick_device

    device = pick_device(args.device)
    run = load_run(args.run, device=device)
    data = load_data(run.config, "train")
    if args.oracle and not isinstance(data, GaussianMixture):
        raise ErrpropError("--oracle needs a Gaussian-mixture run (the exact denoiser is its oracle)")
    sc = run.config.sample
    out = Path(run.path) / "diagnostics"
    written = diagnose(run.denoiser, run.process, data, args.what, sampler=args.sampler or sc.sampler,
                       steps=args.steps or sc.steps, grid=args.grid, n=args.n, seed=args.seed, out_dir=out,
                       oracle=data if args.oracle else None, batch_size=args.batch_size,
                       options={"eta": sc.eta, "variance": sc.variance, "s_churn": sc.s_churn,
                                "clip": sample_clip(run.config)},
                       grid_options={"rho": sc.rho, "spacing": sc.spacing, "sigmas": sc.sigmas})
    (out / "command.txt").write_text(shlex.join(["errprop", *sys.argv[1:]]) + "\n")
    for path in written.values():
        print(path)
    return 0


# ------------------------------------------------------------------------------------------ compare
def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    print(compare(args.runs, out))
    return 0


# ------------------------------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    report = demo(Path(args.out) if args.out else None, quick=args.quick)
    print(f"report: {report}")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="errprop", description="Measure and reduce error propagation in diffusion models.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"errprop {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", help="YAML config (default: built-in defaults)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    t.add_argument("--out", help="run folder (default runs/<config>-<time>)")
    t.add_argument("--resume", metavar="RUN", help="continue a run from its latest checkpoint")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run folder or checkpoint")
    s.add_argument("--sampler", choices=("ddim", "ddpm", "euler", "heun"))
    s.add_argument("--steps", type=_positive)
    s.add_argument("--n", type=_positive)
    s.add_argument("--seed", type=int)
    s.add_argument("--batch-size", type=_positive)
    s.add_argument("--grid", choices=("uniform", "quadratic", "edm", "exponential", "list"))
    s.add_argument("--eta", type=float, help="DDIM η")
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    s.set_defaults(fn=cmd_sample)

    e = sub.add_parser("evaluate", help="sample quality against sampling steps, with its floor")
    e.add_argument("run", help="run folder or checkpoint")
    e.add_argument("--steps", type=_steps_list, default=[10, 20, 50, 100], help="e.g. 10,20,50,100")
    e.add_argument("--sampler", type=_samplers_list, default=["ddim"], help="e.g. ddim,ddpm")
    e.add_argument("--metric", type=_metrics_list, default=["fd"],
                   help="comma-separated: fd, mmd, swd, xent, modes, fid")
    e.add_argument("--n", type=_positive, default=10_000, help="samples per setting")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=_positive, default=500)
    e.add_argument("--device", default="auto")
    e.add_argument("--inception-weights", metavar="PATH", help="local Inception weights (metric fid)")
    e.set_defaults(fn=cmd_evaluate)

    f = sub.add_parser("features", help="the feature classifier behind the fd metric")
    f.add_argument("action", choices=("train",))
    f.add_argument("--data", required=True, choices=("fashion-mnist", "digits", "mnist"))
    f.add_argument("--root", help="folder holding the data set's files")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="auto")
    f.set_defaults(fn=cmd_features)

    g = sub.add_parser("diagnose", help="error propagation step by step")
    g.add_argument("run", help="run folder or checkpoint")
    g.add_argument("--what", default="modular,cumulative,gap",
                   help="comma-separated: modular, cumulative, amplification, gap, budget")
    g.add_argument("--sampler", choices=("ddim", "ddpm", "euler", "heun", "analytic"))
    g.add_argument("--steps", type=_positive)
    g.add_argument("--grid", choices=("uniform", "quadratic", "edm", "exponential", "list"))
    g.add_argument("--n", type=_positive, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=_positive)
    g.add_argument("--device", default="auto")
    g.add_argument("--oracle", action="store_true", help="also measure the exact mixture denoiser")
    g.set_defaults(fn=cmd_diagnose)

    c = sub.add_parser("compare", help="one table and plots over several runs")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--out", help="output folder (default runs/compare-<time>)")
    c.set_defaults(fn=cmd_compare)

    d = sub.add_parser("demo", help="the whole experiment on built-in data, with a report")
    d.add_argument("--out", help="run folder (default runs/demo-<time>)")
    d.add_argument("--quick", action="store_true", help="a 20-second smoke run (numbers not meaningful)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``errprop`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ErrpropError as e:
        print(f"errprop: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("errprop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
