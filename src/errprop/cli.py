"""The ``errprop`` command: a thin layer over the library, one function per sub-command."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import ErrpropError

# Only the standard library and errprop.errors at import: `errprop --help` and argument errors
# answer before torch is loaded (≈ 1.5 s); each command imports what it needs when it runs.


def _steps_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an argument's default, except where there is none (its help says where it comes from)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


class _Registry:
    """A registry's names as argparse ``choices``, read from the module that defines them (and so
    torch) only when the argument is checked or its help is printed; give the argument a
    ``metavar``, so that its usage line (printed on any argument error) does not read them."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _sampler_names() -> tuple[str, ...]:
    from .samplers import NAMES

    return NAMES


def _all_sampler_names() -> tuple[str, ...]:  # with those that need data (diagnose)
    from .samplers import SAMPLERS

    return tuple(SAMPLERS)


def _grid_names() -> tuple[str, ...]:
    from .grids import GRIDS

    return GRIDS


def _objective_names() -> tuple[str, ...]:
    from .optimal_grid import OBJECTIVES

    return OBJECTIVES


def _image_sets() -> tuple[str, ...]:
    from .data.images import NAMES

    return NAMES


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _open_run(args: argparse.Namespace, device, ema: bool | None = None, needs_data: bool = False):
    """The run (or ``diffusers:PATH`` model) a command names, with the model-source options."""
    from .builders import load_run

    data = None
    if getattr(args, "data", None):
        data = {"name": args.data, **({"root": args.data_root} if args.data_root else {})}
    elif getattr(args, "data_root", None):
        raise ErrpropError("--data-root goes with --data (e.g. --data folder --data-root DIR)")
    return load_run(args.run, ema=ema, device=device, class_label=args.class_label, data=data,
                    needs_data=needs_data)


def _model_source_options(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--class-label", type=int, metavar="K",
                        help="diffusers:PATH class-conditional UNets: the class to sample")
    if data:
        parser.add_argument("--data", choices=_Registry(_image_sets), metavar="NAME",
                            help="diffusers:PATH models: the data set to compare with (%(choices)s)")
        parser.add_argument("--data-root", metavar="DIR", help="with --data: the folder holding its files")


# ------------------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    from . import checkpoint, run_rules
    from . import config as config_mod
    from .distributed import is_main_process
    from .files import make_dir
    from .train import train

    if args.resume:
        if args.config or args.init:
            raise ErrpropError("--resume takes its config from the run; use --set to change fields")
        run = Path(args.resume)
        cfg = run_rules.resume_config(run, args.set, args.allow_change)
        resume_from = checkpoint.of_run(run, args.checkpoint) if args.checkpoint else None
    else:
        if args.checkpoint or args.allow_change:
            raise ErrpropError("--checkpoint and --allow-change go with --resume RUN")
        if args.init:
            raw = config_mod.read_yaml(args.config) if args.config else {}
            cfg = run_rules.init_config(args.init, raw, args.set, args.class_label)
        else:
            cfg = config_mod.load(args.config, args.set)
        run, resume_from = (Path(args.out) if args.out else None), None
    if args.dry_run:
        print(config_mod.dump(cfg), end="")
        return 0
    if run is not None and is_main_process():
        make_dir(run, "--out" if not args.resume else "--resume")
    result = train(cfg, run, resume=bool(args.resume), progress=not args.no_progress,
                   resume_from=resume_from, allow_change=args.allow_change,
                   name=Path(args.config).stem if args.config else "run")
    if not is_main_process():
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(f"interrupted at step {result.step}; checkpoint saved: {result.checkpoint}\n"
              f"continue with: errprop train --resume {result.run}", file=sys.stderr)
        return 130
    print(f"trained {result.step} steps; checkpoint: {result.checkpoint}")
    print(result.run)
    return 0


# ------------------------------------------------------------------------------------------ sample
def cmd_sample(args: argparse.Namespace) -> int:
    from .builders import check_sampling, grid_options, load_data, sampler_settings
    from .data.gmm import GaussianMixture
    from .files import make_dir, write_result
    from .generate import generate
    from .plots import save_samples_png
    from .run_rules import read_sigmas, results_run, with_sigmas
    from .train import pick_device

    device = pick_device(args.device)
    run = _open_run(args, device, ema=False if args.raw else None)
    if args.sigmas:  # the file's grid replaces --grid and --steps
        run = with_sigmas(run, read_sigmas(args.sigmas))
    sc = run.config.sample
    sampler = args.sampler or sc.sampler
    steps = sc.steps if args.sigmas else args.steps or sc.steps
    seed = sc.seed if args.seed is None else args.seed
    n = args.n or sc.n
    grid = sc.grid if args.sigmas else args.grid or sc.grid
    check_sampling(run.config, run.process, [steps], grid)
    out = Path(args.out) if args.out else Path(results_run(run, None, "sample").path) / "samples"
    out = make_dir(out, "--out")
    x = generate(run.denoiser, run.process, run.shape, n, seed=seed, sampler=sampler, steps=steps,
                 grid=grid, batch_size=args.batch_size or sc.batch_size, progress=True, device=device,
                 grid_options=grid_options(run.config),
                 **{**sampler_settings(run.config), **({} if args.eta is None else {"eta": args.eta})})
    stem = f"{sampler}-{grid}-{steps}-{seed}{'-raw' if args.raw else ''}"
    def save_npz(path: Path) -> None:
        import numpy as np

        with open(path, "wb") as f:  # a file object: numpy would add ".npz" to the temporary's name
            np.savez_compressed(f, x=x.numpy())

    write_result(out / f"{stem}.npz", save_npz)
    data = load_data(run.config) if x.ndim == 2 and x.shape[1] == 2 else None
    ref = data.sample_n(len(x), seed=seed + 1) if isinstance(data, GaussianMixture) else None
    save_samples_png(x, out / f"{stem}.png", f"{sampler}, {steps} steps, step {run.step}", ref)
    print(out / f"{stem}.npz")
    return 0


# ------------------------------------------------------------------------------------------ evaluate
def _samplers_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    from .samplers import NAMES

    bad = [v for v in names if v not in NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected samplers among {', '.join(NAMES)}; got {text!r}")
    return names


def _metrics_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in ("fd", "mmd", "swd", "xent", "modes", "fid")]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected metrics among fd, mmd, swd, xent, modes, fid; got {text!r}")
    return names


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_table
    from .run_rules import read_sigmas, results_run, with_sigmas
    from .train import pick_device

    device = pick_device(args.device)
    run = results_run(_open_run(args, device, needs_data=True), args.out, "evaluate")
    if args.sigmas:  # the file's grid replaces --steps
        run = with_sigmas(run, read_sigmas(args.sigmas))
    steps = [run.config.sample.steps] if args.sigmas else args.steps
    results = evaluate(run, steps, args.sampler, args.metric, args.n, args.seed, args.batch_size,
                       device, args.inception_weights, command=args.command_line)
    for result in results.values():
        print(format_table(result))
        print(result["file"])
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from .metrics.features import load_or_train_classifier
    from .train import pick_device

    model, acc = load_or_train_classifier(args.data, args.root, args.seed, device=pick_device(args.device))
    print(f"{args.data} classifier: test accuracy {acc:.4f}")
    return 0


# ------------------------------------------------------------------------------------------ diagnose
def cmd_diagnose(args: argparse.Namespace) -> int:
    import json

    from .diagnostics.run import diagnose_run, summarize
    from .run_rules import results_run
    from .train import pick_device

    device = pick_device(args.device)
    run = results_run(_open_run(args, device, needs_data=True), args.out, "diagnose")
    written = diagnose_run(run, args.what, sampler=args.sampler, steps=args.steps, grid=args.grid, n=args.n,
                           seed=args.seed, oracle=args.oracle, batch_size=args.batch_size, device=device,
                           command=args.command_line, log=lambda m: print(m, file=sys.stderr, flush=True))
    for name, path in written.items():
        if name.endswith(".json"):
            print(summarize(name[:-5], json.loads(path.read_text())))
    for path in written.values():
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .builders import export_diffusers

    print(export_diffusers(args.run, args.out, ema=False if args.raw else None))
    return 0


# ------------------------------------------------------------------------------------------ grid
def cmd_grid(args: argparse.Namespace) -> int:
    from .files import write_json
    from .optimal_grid import optimize
    from .train import pick_device

    device = pick_device(args.device)
    run = _open_run(args, device, needs_data=True)
    res = optimize(run, args.sampler or run.config.sample.sampler, args.steps, args.objective, n=args.n,
                   seed=args.seed, m=args.candidates, oracle=args.oracle, device=device,
                   log=lambda m: print(m, file=sys.stderr, flush=True), progress=True)
    write_json(Path(args.out), {"command": args.command_line, **res})
    print(f"{res['objective']}: optimized {res['value']:.5g}; hand-made: "
          + ", ".join(f"{k} {v['cost']:.5g}" for k, v in res["hand_made"].items())
          + f" (DP cost on the objective{'' if res['objective'] != 'xent' else ' before descent'})")
    if "step" in res:
        print(f"step scored: {res['step']}")
    if "final_xent" in res:
        print("final excess cross-entropy (trimmed, nats): "
              + ", ".join(f"{k} {v['trimmed']:.4g}" for k, v in res["final_xent"].items()))
    print(f"cost: {res['network_evaluations']} network evaluations, {res['sampling_runs']} sampling runs")
    print(args.out)
    return 0


# ------------------------------------------------------------------------------------------ compare
def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare
    from .files import make_dir

    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    print(compare(args.runs, make_dir(out, "--out")))
    return 0


# ------------------------------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo
    from .files import make_dir

    command = shlex.join(["errprop", "demo", *(["--quick"] if args.quick else []),
                          *(["--jobs", str(args.jobs)] if args.jobs else []),
                          *(["--out", args.out] if args.out else [])])
    report = demo(make_dir(Path(args.out), "--out") if args.out else None, quick=args.quick,
                  jobs=args.jobs, command=command)
    print(f"report: {report}")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="errprop", description="Measure and reduce error propagation in diffusion models.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"errprop {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text,
                              formatter_class=_Formatter)

    samplers = _Registry(_sampler_names)
    grids = _Registry(_grid_names)
    t = command("train", "train a model from a YAML config (or continue one with --resume)")
    t.add_argument("--config", help="YAML config; default: the built-in defaults (ring of 8)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.steps=2000 (repeatable)")
    t.add_argument("--out", help="run folder; default: runs/<config>-<time>")
    t.add_argument("--init", metavar="diffusers:PATH",
                   help="fine-tune a diffusers UNet2DModel: its network, weights, β schedule, prediction "
                        "type and sampling conventions; --config gives data, loss and optimiser")
    t.add_argument("--class-label", type=int, metavar="K", help="with --init: the class of a "
                   "class-conditional UNet")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    t.add_argument("--checkpoint", metavar="STEP|FILE",
                   help="with --resume: continue from this checkpoint instead of the latest (later ones "
                        "are moved to checkpoints/abandoned-<step>/)")
    t.add_argument("--allow-change", action="store_true",
                   help="with --resume: allow --set to change data, process, model or loss "
                        "(recorded in the run's changes.jsonl)")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    s = command("sample", "draw samples from a trained run (an .npz and a picture)")
    s.add_argument("run", help="run folder, checkpoint, or diffusers:PATH (a diffusers model folder)")
    s.add_argument("--sampler", choices=samplers, metavar="SAMPLER",
                   help="%(choices)s (dpmpp_* are DPM-Solver++ 2M, 3M, 2M SDE; unipc_* UniPC bh2 of "
                        "order 2 or 3); default: the run's sample.sampler")
    s.add_argument("--steps", type=_positive, help="sampling steps; default: the run's sample.steps")
    s.add_argument("--n", type=_positive, help="number of samples; default: the run's sample.n")
    s.add_argument("--seed", type=int, help="sample seed; default: the run's sample.seed")
    s.add_argument("--batch-size", type=_positive, help="default: the run's sample.batch_size")
    s.add_argument("--grid", choices=grids, metavar="GRID",
                   help="step grid: %(choices)s; default: the run's sample.grid")
    s.add_argument("--eta", type=float, help="DDIM / Euler-ancestral η; default: the run's sample.eta "
                                             "(unset: 0 for DDIM, 1 for Euler ancestral)")
    s.add_argument("--sigmas", metavar="FILE", help="sample on this grid (a `grid optimize` JSON or a list "
                                                    "of σ levels); sets --grid list and --steps")
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    s.add_argument("--out", help="folder for the samples; default: RUN/samples")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _model_source_options(s, data=False)
    s.set_defaults(fn=cmd_sample)

    e = command("evaluate", "sample quality against sampling steps, with its floor")
    e.add_argument("run", help="run folder, checkpoint, or diffusers:PATH (a diffusers model folder)")
    e.add_argument("--steps", type=_steps_list, default=[10, 20, 50, 100], help="comma-separated step counts")
    e.add_argument("--sampler", type=_samplers_list, default=["ddim"], help="comma-separated samplers")
    e.add_argument("--metric", type=_metrics_list, default=None,
                   help="comma-separated: fd, mmd, swd, xent, modes, fid; default: xent,modes on a "
                        "mixture, fd on images")
    e.add_argument("--n", type=_positive, default=10_000, help="samples per setting")
    e.add_argument("--seed", type=int, default=0, help="sample seed (the floor's data draw follows it)")
    e.add_argument("--batch-size", type=_positive, default=500, help="samples per network batch")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    e.add_argument("--inception-weights", metavar="PATH", help="local Inception weights (metric fid)")
    e.add_argument("--sigmas", metavar="FILE", help="score this grid (a `grid optimize` JSON or a list of "
                                                    "σ levels) instead of the run's; sets --steps")
    e.add_argument("--out", help="diffusers:PATH models: the folder for the results (RUN/eval/ otherwise)")
    _model_source_options(e)
    e.set_defaults(fn=cmd_evaluate)

    f = command("features", "the feature classifier behind the fd metric")
    f.add_argument("action", choices=("train",), help="train (or load) the classifier")
    f.add_argument("--data", required=True, choices=("fashion-mnist", "digits", "mnist"), help="data set")
    f.add_argument("--root", help="folder holding the data set's files; default: where setup put them")
    f.add_argument("--seed", type=int, default=0, help="training seed")
    f.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    f.set_defaults(fn=cmd_features)

    g = command("diagnose", "error propagation step by step (prints the headline numbers)")
    g.add_argument("run", help="run folder, checkpoint, or diffusers:PATH (a diffusers model folder)")
    g.add_argument("--what", help="comma-separated: modular, cumulative, amplification, gap, budget, "
                                  "learned, local (default: modular,cumulative,gap, and learned with "
                                  "--oracle; local: the local error per step of a deterministic solver, "
                                  "on mixtures)")
    g.add_argument("--sampler", choices=_Registry(_all_sampler_names), metavar="SAMPLER",
                   help="%(choices)s; default: the run's sample.sampler")
    g.add_argument("--steps", type=_positive, help="sampling steps; default: the run's sample.steps")
    g.add_argument("--grid", choices=grids, metavar="GRID",
                   help="step grid: %(choices)s; default: the run's sample.grid")
    g.add_argument("--n", type=_positive, default=1000, help="samples (chains)")
    g.add_argument("--seed", type=int, default=0, help="sample seed")
    g.add_argument("--batch-size", type=_positive, help="samples per network batch; default: all")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--oracle", action="store_true",
                   help="also measure the exact denoiser: the mixture's, or on images the ideal denoiser "
                        "of the training set (then: the learned part per step, its split from "
                        "discretization, budget, and where the reference memorises)")
    g.add_argument("--out", help="diffusers:PATH models: the folder for the results (RUN/diagnostics/ "
                                 "otherwise)")
    _model_source_options(g)
    g.set_defaults(fn=cmd_diagnose)

    go = sub.add_parser("grid", help="error-optimal sampling grids",
                        description="error-optimal sampling grids").add_subparsers(
        dest="grid_command", required=True, metavar="ACTION", help="optimize")
    o = go.add_parser("optimize", help="the grid of N steps that minimises a measured error",
                      description="the grid of N steps that minimises a measured error "
                                  "(errprop.optimal_grid)",
                      formatter_class=_Formatter)
    o.add_argument("run", help="run folder, checkpoint, or diffusers:PATH")
    o.add_argument("--sampler", choices=samplers, metavar="SAMPLER",
                   help="%(choices)s; default: the run's sample.sampler")
    o.add_argument("--steps", type=_positive, required=True, help="number of sampling steps N (≥ 2)")
    o.add_argument("--objective", choices=_Registry(_objective_names), metavar="OBJECTIVE",
                   help="%(choices)s. modular: summed exact modular KL(p_θ ‖ q) by DP (mixtures, Gaussian "
                        "steps); path_kl: summed per-step KL(q ‖ p_θ), with the prior's an upper bound on "
                        "the samples' forward KL at σ_min, by DP (mixtures; a sampler without a Gaussian "
                        "step is scored with DDPM's step on the same levels); klub: AYS-style KL upper "
                        "bound by DP (any data, any sampler); xent: final excess cross-entropy (mixtures); "
                        "default: modular for a Gaussian stochastic step on a mixture, else klub")
    o.add_argument("--oracle", action="store_true",
                   help="mixtures: also score every grid by the exact final excess cross-entropy")
    o.add_argument("--n", type=_positive, default=500, help="samples per estimate")
    o.add_argument("--seed", type=int, default=0, help="seed of the estimates")
    o.add_argument("--candidates", type=_positive, default=48, help="log-uniform candidate levels M")
    o.add_argument("--out", required=True, help="the grid JSON (use with --sigmas or sample.sigmas)")
    o.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _model_source_options(o)
    o.set_defaults(fn=cmd_grid)

    x = command("export", "write a run fine-tuned from a diffusers model back as a diffusers pipeline")
    x.add_argument("run", help="run folder (trained with --init diffusers:PATH)")
    x.add_argument("--to", choices=("diffusers",), required=True, help="the format")
    x.add_argument("out", help="output folder (unet/, scheduler/, model_index.json)")
    x.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    x.set_defaults(fn=cmd_export)

    c = command("compare", "one table and plots over several runs, saying what is not like for like")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--out", help="output folder; default: runs/compare-<time>")
    c.set_defaults(fn=cmd_compare)

    d = command("demo", "the whole experiment on built-in data, with a report (≈ 3 min on 2 cores)")
    d.add_argument("--out", help="output folder; default: runs/demo-<time>")
    d.add_argument("--quick", action="store_true",
                   help="a 30-second smoke run of every stage (its numbers are not meaningful)")
    d.add_argument("--jobs", type=_positive, metavar="N",
                   help="worker processes (one thread each); default: one per core")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``errprop`` console script."""
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["errprop", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.fn(args)
    except ErrpropError as e:
        print(f"errprop: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a vanished folder: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"errprop: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("errprop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
