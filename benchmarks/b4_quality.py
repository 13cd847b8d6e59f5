"""B4 — sample quality against steps for baseline, SA-2 and EP (docs/benchmarks.md#b4-quality-against-steps).

The same U-Net, data, training budget (steps × batch) and seed for every objective; Fréchet
distance on the Fashion-MNIST classifier's features at several step counts for DDPM and DDIM,
with the train-vs-test floor at the same n. Prints a table and writes JSON + Markdown.

    python benchmarks/b4_quality.py --steps 8000 --n 10000 --device cuda      # the reported run
    python benchmarks/b4_quality.py --quick                                   # smoke run on a CPU
    python benchmarks/b4_quality.py --rerender        # the report again from docs/results/b4_quality.json

The report is a function of the stored results (:func:`render`): a column scored before its
objective's training finished (an interrupted run, before issue 9's guards) is flagged in it,
generated from the training step each score records.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from errprop import config
from errprop.builders import load_run
from errprop.compare import describe_loss
from errprop.errors import ErrpropError
from errprop.evaluate import evaluate
from errprop.results import markdown_table, write_result
from errprop.train import train_to_end

ROOT = Path(__file__).parents[1]
OBJECTIVES = {"baseline": "fashion_mnist.yaml", "sa2": "fashion_mnist_sa2.yaml",
              "ep": "fashion_mnist_ep.yaml"}
TITLE = "B4 — Fashion-MNIST sample quality against sampling steps"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8000, help="training steps for every objective")
    p.add_argument("--n", type=int, default=10_000, help="samples per setting")
    p.add_argument("--sampling-steps", default="10,20,50,100")
    p.add_argument("--samplers", default="ddpm,ddim")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--runs", default="runs/b4", help="where the run folders go")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"), help="where the results go")
    p.add_argument("--only", default=None, help="comma-separated subset of objectives")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers meaningless)")
    p.add_argument("--rerender", action="store_true",
                   help="write the report again from <out>/b4_quality.json (runs nothing; keeps the "
                        "run's command, commit, machine and date)")
    a = p.parse_args()
    if a.rerender:
        try:
            rerender(Path(a.out))
        except ErrpropError as e:
            p.error(str(e))
        print((Path(a.out) / "b4_quality.md").read_text(), flush=True)
        return
    if a.quick:
        a.steps, a.n, a.sampling_steps = 20, 200, "5"
    from errprop.train import pick_device

    device = str(pick_device(a.device))
    ks = [int(k) for k in a.sampling_steps.split(",")]
    samplers = a.samplers.split(",")
    names = a.only.split(",") if a.only else list(OBJECTIVES)
    results = {}
    for name in names:
        over = [f"train.steps={a.steps}", f"train.seed={a.seed}", f"train.device={device}",
                f"train.ckpt_every={a.steps}"]
        if a.data_root:
            over.append(f"data.root={a.data_root}")
        cfg = config.load(ROOT / "configs" / OBJECTIVES[name], over)
        run_dir = Path(a.runs) / name
        t0 = time.time()
        # Before issue 9 this resumed whatever the folder held and scored the model even when
        # training had been interrupted (returning early on SIGTERM): B4's EP numbers.
        train_to_end(cfg, run_dir)
        train_s = time.time() - t0
        run = load_run(run_dir, device=device)
        batch = 2000 if "cuda" in device else 500
        res = evaluate(run, ks, samplers, "fd", n=a.n, seed=a.seed, batch_size=batch, device=device,
                       command=command_of(a))
        res["objective"], res["train_seconds"] = describe_loss(cfg), round(train_s, 1)
        results[name] = res
        print(name, json.dumps(res["results"]), flush=True)
        write(a, device, ks, samplers, results)


def command_of(a) -> str:
    """The command line that reruns this benchmark (its recorded command)."""
    return "python benchmarks/b4_quality.py " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(a).items() if v not in (None, False))


def write(a, device: str, ks: list[int], samplers: list[str], results: dict) -> None:
    """Write docs/results/b4_quality.{json,md} for the objectives finished so far (the commit is
    ``$ERRPROP_COMMIT`` where the tree runs outside its checkout, see errprop.provenance)."""
    settings = {"train_steps": a.steps, "batch_size": 128, "n": a.n, "device": device,
                "samplers": samplers, "sampling_steps": ks}
    write_report(Path(a.out), settings, results, command_of(a))
    print((Path(a.out) / "b4_quality.md").read_text(), flush=True)


def render(settings: dict, results: dict) -> tuple[str, list[list[str]], str]:
    """(intro, table, notes) of B4's results: FD per objective and setting, the floor, the training
    wall-clocks, and a warning for every objective scored before its training finished."""
    first = next(iter(results.values()))
    device = f"Device {settings['device']}. " if "device" in settings else ""
    intro = (f"{device}Training: {settings['train_steps']} steps × batch {settings['batch_size']} for "
             "every objective, same seed, EMA weights. Metric: Fréchet distance on the features of "
             f"errprop's Fashion-MNIST classifier, n = {settings['n']} samples vs the 10,000 test images.\n\n"
             f"Floor (train subset of n = {first['floor_n']} vs test): **{first['floor']:.3f}**. "
             f"Classifier test accuracy {first['classifier_test_accuracy']:.4f}.")
    short = [o for o, r in results.items() if r["train_step"] != settings["train_steps"]]
    if short:
        intro += "\n\n" + " ".join(
            f"⚠ **The {results[o]['objective']} column is not a result of its objective**: it was scored "
            f"at training step {results[o]['train_step']} of {settings['train_steps']} (its training was "
            "interrupted and the model scored anyway)." for o in short)
    if "samplers" in settings:
        order = [(s, k) for s in settings["samplers"] for k in settings["sampling_steps"]]
    else:  # (an older file: the settings in the order its results hold them)
        order = [(r["sampler"], r["steps"]) for r in first["results"]]
    table = [["sampler", "steps", *(r["objective"] for r in results.values())]]
    for sampler, k in order:
        vals = [next(r["value"] for r in res["results"] if (r["sampler"], r["steps"]) == (sampler, k))
                for res in results.values()]
        table.append([sampler, str(k), *(f"{v:.3f}" for v in vals)])
    wall = [[r["objective"], str(r["train_seconds"])] for r in results.values()]
    notes = "\n".join(markdown_table([["objective", "training wall-clock (s)"], *wall]))
    return intro, table, notes


def write_report(out: Path, settings: dict, results: dict, command: str,
                 provenance: dict | None = None) -> dict:
    """``out/b4_quality.{json,md}`` from the results; ``provenance``: the original run's, when
    re-rendering. Returns the JSON payload."""
    intro, table, notes = render(settings, results)
    return write_result(out, "b4_quality", TITLE, command, {"settings": settings, "results": results},
                        table, notes, intro=intro, provenance=provenance)


def rerender(out: Path) -> dict:
    """Write ``out/b4_quality.{json,md}`` again from ``out/b4_quality.json`` alone, under the run's
    own command, commit, machine and date. A file from before results were written by
    :func:`errprop.results.write_result` kept these under ``meta``."""
    path = out / "b4_quality.json"
    if not path.is_file():
        raise ErrpropError(f"--rerender: {path} does not exist (a finished B4 run writes it)")
    payload = json.loads(path.read_text())
    meta = payload.get("meta", payload)
    keys = ("command", "commit", "machine", "date")
    if missing := [k for k in keys if k not in meta]:
        raise ErrpropError(f"--rerender: {path} records no {', '.join(missing)}")
    settings = payload.get("settings") or {k: meta[k] for k in ("train_steps", "batch_size", "n")}
    prov = {k: meta[k] for k in keys[1:]}
    return write_report(out, settings, payload["results"], meta["command"], provenance=prov)


if __name__ == "__main__":
    main()
