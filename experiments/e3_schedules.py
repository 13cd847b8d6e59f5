"""E3 — DS's schedule advice: does the EDM-ρ vs exponential ranking flip with training quality?

DS (Wang et al. 2024, Table 2) predicts that E_I + E_D favour the exponential σ grid and E_S the
polynomial (EDM, ρ = 7) one, so that a well-trained score should prefer exponential and a
less-trained one EDM. On a Gaussian mixture every term is exact
(:func:`errprop.diagnostics.budget.compare_schedules`): for an early and a late checkpoint of the
same VE runs (EDM preconditioning, σ(t) = t, several seeds), both grids are measured at 10/20/50
Heun steps with the same noise, and the paired difference exponential − EDM over seeds decides.

On Fashion-MNIST (``--data fashion-mnist``) nothing is exact: one VE/EDM U-Net run is trained
and both grids are scored by FD (classifier features, with its floor) at each checkpoint, with
the same sampling noise for both grids and ``--sample-seeds`` independent sample sets — the pairs
are sampling replicates of the one run, so the interval speaks for this run's grids.

    python experiments/e3_schedules.py --data ring8 --seeds 5       # ≈ 10 min on 2 cores
    python experiments/e3_schedules.py --data fashion-mnist         # ≈ 1 h on one core
    python experiments/e3_schedules.py --quick                      # smoke run

Writes ``<out>/<data>/e3.json`` and ``docs/results/e3_<data>.md`` (+ JSON); resumable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import torch

from errprop import checkpoint
from errprop import config as config_mod
from errprop.builders import build_process, load_data, load_run
from errprop.diagnostics.budget import compare_schedules
from errprop.evaluate import evaluate, row
from errprop.files import atomic_write_text, read_cached, write_cached
from errprop.provenance import provenance
from errprop.stats import paired, summary
from errprop.train import train_to_end

ROOT = Path(__file__).resolve().parents[1]
DATA = {"ring8": ["data.name=ring8"],
        "random16": ["data.name=random", "data.dim=16", "data.components=8", "data.mixture_seed=0"]}
GRIDS = ("edm", "exponential")
TERMS = ("total", "E_I+E_D", "E_S")


def _terms(r: dict, grid: str, i: int) -> dict:
    g = r["grids"][grid]
    return {"total": g["total"]["mmd"][i], "E_I+E_D": g["E_I"]["mmd"][i] + g["E_D"]["mmd"][i],
            "E_S": g["E_S"]["mmd"][i], "xent": g["total"]["xent"][i]}


IMAGES = "fashion-mnist"


def images(a) -> None:
    """The Fashion-MNIST half: one run, FD of both grids at both checkpoints, paired over sample sets."""
    ks = [int(k) for k in a.steps.split(",")]
    out = Path(a.out) / (IMAGES + ("-quick" if a.quick else ""))
    base = ["process.kind=ve", "process.ve_sigma=linear", "model.parameterization=edm",
            "loss.weighting=edm", "loss.sigma_sampling=lognormal", f"model.channels={a.channels}",
            f"train.steps={a.late}", f"train.ckpt_every={a.early}",
            f"train.keep_last={a.late // a.early + 1}", "train.log_every=100", "sample.sampler=heun"]
    cfg = config_mod.load(ROOT / "configs" / "fashion_mnist.yaml", base)
    run_dir = out / "run"
    print(f"[e3] training {a.late} steps → {run_dir}", flush=True)
    train_to_end(cfg, run_dir, progress=False)
    fd: dict = {}
    for when, step in (("early", a.early), ("late", a.late)):
        run = load_run(checkpoint.checkpoint_path(run_dir, step))
        for grid in GRIDS:
            cfg_g = config_mod.from_dict(config_mod.apply_overrides(run.config.to_dict(),
                                                                    [f"sample.grid={grid}"]))
            for s in range(a.sample_seeds):
                cache = run_dir / f"e3_{when}_{grid}_seed{s}.json"
                key = {"step": step, "grid": grid, "seed": s, "n": a.n, "steps": ks}
                res = read_cached(cache, key)
                if res is None:
                    print(f"[e3] {when} (step {step}), {grid}, sample seed {s}: FD", flush=True)
                    res = write_cached(cache, key, evaluate(
                        dataclasses.replace(run, config=cfg_g), ks, ["heun"], "fd", n=a.n, seed=s,
                        batch_size=500, progress=False,
                        command=shlex.join(["python", "experiments/e3_schedules.py", *sys.argv[1:]])))
                fd[(when, grid, s)] = res
    seeds = range(a.sample_seeds)
    rows, table, better = [], {}, {}
    for when in ("early", "late"):
        for k in ks:
            e = [row(fd[(when, "edm", s)], "heun", k)["value"] for s in seeds]
            x = [row(fd[(when, "exponential", s)], "heun", k)["value"] for s in seeds]
            d = paired(x, e)
            better[(when, k)] = {"lower": "exponential", "higher": "EDM-ρ",
                                 "no difference": "neither"}[d["verdict"]]
            table[f"{when} {k}"] = {"edm": summary(e), "exponential": summary(x), "diff": d}
            rows.append(f"| {when} (step {a.early if when == 'early' else a.late}) | {k} | "
                        f"{summary(e)['mean']:.4g} ± {summary(e)['std']:.2g} | "
                        f"{summary(x)['mean']:.4g} ± {summary(x)['std']:.2g} | {d['mean']:+.3g} "
                        f"[{d['lo']:+.3g}, {d['hi']:+.3g}] | {better[(when, k)]} |")
    floor = fd[("late", "edm", 0)]["floor"]
    early, late = [better[("early", k)] for k in ks], [better[("late", k)] for k in ks]
    verdict = (f"FD at Heun {'/'.join(map(str, ks))} steps: the early checkpoint (step {a.early}) "
               f"prefers {early}, the late one (step {a.late}) {late} (paired over {a.sample_seeds} "
               f"sample sets of n = {a.n}, 95 % t-intervals; one training run). DS's predicted flip "
               f"(EDM-ρ early, exponential late) is {'seen' if early != late else 'not seen'} here.")
    prov = provenance()
    command = shlex.join(["python", "experiments/e3_schedules.py", *sys.argv[1:]])
    md = [f"# E3 — EDM-ρ vs exponential σ grids, early vs late checkpoint ({IMAGES})", "",
          f"> **Verdict.** {verdict}", "",
          f"Command: `{command}`  ", f"Commit {prov['commit']}, {prov['machine']}, {prov['date']}.  ",
          f"VE process σ(t) = t, EDM preconditioning and loss (log-normal σ), U-Net with "
          f"{a.channels} base channels, batch {cfg.train.batch_size}, {a.late} steps, one seed; Heun "
          f"sampler. FD on errprop's classifier features, n = {a.n} samples vs the test set; floor "
          f"(n train images vs test): {floor:.4g}. Both grids use the same sampling noise.", "",
          "| checkpoint | steps | EDM-ρ FD (mean ± sd) | exponential FD | Δ exp − EDM [95 % CI] | better |",
          "|---|---|---|---|---|---|", *rows]
    docs = Path(a.docs) if not a.quick else out
    docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / f"e3_{IMAGES}.md", "\n".join(md) + "\n")
    atomic_write_text(docs / f"e3_{IMAGES}.json", json.dumps(
        {"command": command, **prov, "verdict": verdict, "floor": floor, "table": table}, indent=1))
    print("\n".join(md))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=[*sorted(DATA), IMAGES], default="ring8")
    p.add_argument("--channels", type=int, default=16, help=f"{IMAGES}: U-Net base channels")
    p.add_argument("--sample-seeds", type=int, default=3, help=f"{IMAGES}: independent sample sets")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--early", type=int, default=300, help="training step of the early checkpoint")
    p.add_argument("--late", type=int, default=4000, help="training step of the late checkpoint")
    p.add_argument("--steps", default="10,20,50", help="Heun step counts")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", default=str(ROOT / "runs" / "e3"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.data == IMAGES:
        if a.quick:
            a.early, a.late, a.steps, a.n, a.channels, a.sample_seeds = 10, 20, "4", 100, 8, 2
        elif a.late == 4000 and a.n == 2000:  # the mixture defaults: this data's own
            a.late, a.n = 1500, 500
        return images(a)
    if a.quick:
        a.seeds, a.early, a.late, a.steps, a.n = 2, 20, 60, "5,10", 300
    ks = [int(k) for k in a.steps.split(",")]
    torch.set_num_threads(1)
    out = Path(a.out) / (a.data + ("-quick" if a.quick else ""))
    base = DATA[a.data] + [
        "process.kind=ve", "process.ve_sigma=linear", "model.parameterization=edm",
        "loss.weighting=edm", "loss.sigma_sampling=lognormal", "model.width=128", "model.depth=2",
        "train.batch_size=256", "train.lr=1e-3", "train.warmup=100", "train.ema_decay=0.995",
        f"train.steps={a.late}", f"train.ckpt_every={a.early}", f"train.keep_last={a.late // a.early + 1}",
        "train.log_every=100"]
    cfg0 = config_mod.load(overrides=base)
    mixture, process = load_data(cfg0), build_process(cfg0)
    per: dict = {"early": {}, "late": {}, "exact": {}}
    for seed in range(a.seeds):
        cfg = config_mod.load(overrides=base + [f"train.seed={seed}"])
        run = out / "runs" / f"seed{seed}"
        cache = run / "e3.json"
        key = {"config": cfg.to_dict(), "steps": ks, "n": a.n}
        got = read_cached(cache, key)
        if got is None:
            print(f"[e3] seed {seed}: training {a.late} steps → {run}", flush=True)
            train_to_end(cfg, run, progress=False)
            got = {}
            for when, step in (("early", a.early), ("late", a.late)):
                r = load_run(checkpoint.checkpoint_path(run, step))
                got[when] = compare_schedules(r.denoiser, mixture, process, sampler="heun", steps=ks,
                                              grids=GRIDS, n=a.n, seed=seed)
            got["exact"] = compare_schedules(mixture, mixture, process, sampler="heun", steps=ks,
                                             grids=GRIDS, n=a.n, seed=seed)
            write_cached(cache, key, got)
        for when in per:
            per[when][seed] = got[when]
    seeds = list(range(a.seeds))
    rows, table = [], {}
    for when in ("exact", "early", "late"):
        for i, k in enumerate(ks):
            for term in (*TERMS, "xent"):
                e = [_terms(per[when][s], "edm", i)[term] for s in seeds]
                x = [_terms(per[when][s], "exponential", i)[term] for s in seeds]
                d = paired(x, e)
                table[f"{when} {k} {term}"] = {"edm": summary(e), "exponential": summary(x), "diff": d}
                better = {"lower": "exponential", "higher": "EDM-ρ", "no difference": "neither"}[d["verdict"]]
                if term == "E_S" and when == "exact":
                    better = "— (0 by definition)"
                rows.append(f"| {when} | {k} | {term} | {summary(e)['mean']:.4g} ± {summary(e)['std']:.2g} "
                            f"| {summary(x)['mean']:.4g} ± {summary(x)['std']:.2g} | {d['mean']:+.3g} "
                            f"[{d['lo']:+.3g}, {d['hi']:+.3g}] | {better} |")
    prov = provenance()
    command = shlex.join(["python", "experiments/e3_schedules.py", *sys.argv[1:]])

    def winner(when: str, term: str) -> list[str]:
        return [{"lower": "exponential", "higher": "EDM-ρ", "no difference": "neither"}[
            table[f"{when} {k} {term}"]["diff"]["verdict"]] for k in ks]

    flip = winner("early", "total") != winner("late", "total")
    verdict = (f"Total error (√MMD² to data, Heun {'/'.join(map(str, ks))} steps): the early checkpoint "
               f"(step {a.early}) prefers {winner('early', 'total')}, the late one (step {a.late}) "
               f"{winner('late', 'total')}, the exact denoiser {winner('exact', 'total')} "
               f"(paired over {a.seeds} seeds, 95 % t-intervals). DS's predicted flip "
               f"(EDM-ρ early, exponential late) is {'seen' if flip else 'not seen'} here: "
               f"E_I + E_D prefers {winner('late', 'E_I+E_D')} (late), E_S prefers "
               f"{winner('early', 'E_S')} (early) and {winner('late', 'E_S')} (late).")
    md = [f"# E3 — EDM-ρ vs exponential σ grids, early vs late checkpoint ({a.data})", "",
          f"> **Verdict.** {verdict}", "",
          f"Command: `{command}`  ", f"Commit {prov['commit']}, {prov['machine']}, {prov['date']}.  ",
          f"VE process σ(t) = t on [{process.sigma_min}, {process.sigma_max}], EDM preconditioning "
          f"and loss, MLP 128×2, batch 256, EMA 0.995 (with warm-up); Heun sampler; n = {a.n} "
          "samples per setting; the same noise for both grids (paired). Terms are √MMD² to the "
          "data (DS's E_I/E_D/E_S isolated with the exact denoiser, "
          "`errprop.diagnostics.budget`); xent is the exact excess cross-entropy of the samples "
          f"(nats). Floor (√MMD² data vs data): {per['late'][0]['floor']['mmd']:.4g}.", "",
          "| checkpoint | steps | term | EDM-ρ (mean ± sd) | exponential | Δ exp − EDM [95 % CI] | better |",
          "|---|---|---|---|---|---|---|", *rows]
    docs = Path(a.docs) if not a.quick else out
    docs.mkdir(parents=True, exist_ok=True)
    name = f"e3_{a.data}"
    atomic_write_text(docs / f"{name}.md", "\n".join(md) + "\n")
    atomic_write_text(docs / f"{name}.json", json.dumps(
        {"command": command, **prov, "verdict": verdict, "table": table}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
