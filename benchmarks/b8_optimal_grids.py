"""B8 — error-optimal grids against every hand-made grid, scored exactly on Gaussian mixtures.

For each data set and seed a baseline model is trained (E1's network and budget); for each sampler
and step count the optimised grids (``errprop.optimal_grid``: DP over the exact modular KL for DDPM,
DP over the AYS-style KLUB, coordinate descent on the final excess cross-entropy) and the hand-made
grids (uniform-t trailing / leading / linspace, quadratic-t, EDM-ρ = 7, exponential σ) are scored
by the exact excess cross-entropy of n samples drawn with a sample seed that no optimisation saw.
Per setting: mean ± sd over seeds, and the paired difference (same model, same noise) between each
optimised grid and the hand-made grid that is best on average, with a 95 % t-interval.

    python benchmarks/b8_optimal_grids.py                       # ring8 + random16, 5 seeds
    python benchmarks/b8_optimal_grids.py --quick               # smoke run
    python benchmarks/b8_optimal_grids.py --images runs/e2/c16-s1500/baseline   # Fashion-MNIST, FD
    python benchmarks/b8_optimal_grids.py --images runs/e2/c16-s1500/baseline --seeds 1 --n 1000

``--images FOLDER`` scores trained image runs instead (``FOLDER/seed*``, e.g. E2's baselines):
the KLUB-optimised grid against the hand-made ones by FD on the classifier features with its floor.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from errprop import config as config_mod
from errprop.builders import load_data, load_run, sampler_settings
from errprop.files import read_cached, write_cached
from errprop.grids import make_grid
from errprop.optimal_grid import final_xent, optimize
from errprop.provenance import provenance
from errprop.stats import paired, summary
from errprop.study import MIXTURE_MODEL
from errprop.train import train_to_end

ROOT = Path(__file__).resolve().parents[1]
DATA = {"ring8": ["data.name=ring8"],
        "random16": ["data.name=random", "data.dim=16", "data.components=8", "data.mixture_seed=0"]}
HAND = {"trailing": ("uniform", {"spacing": "trailing"}), "leading": ("uniform", {"spacing": "leading"}),
        "linspace": ("uniform", {"spacing": "linspace"}), "quadratic": ("quadratic", {}),
        "edm": ("edm", {}), "exponential": ("exponential", {})}
VERSION = 2  # 2: the DP's first level is free on mixtures (prior KL added); 1: fixed at σ_max
METRIC = "trimmed"  # the 1 %-trimmed excess cross-entropy: the mean is ruled by a few far samples


def objectives(sampler: str) -> list[str]:
    return (["modular"] if sampler == "ddpm" else []) + ["klub", "xent"]


def measure(run, mixture, sampler: str, steps: int, a, seed: int) -> dict:
    """Every grid of one setting, scored on sample seed 1000 + seed (unseen by the optimisation)."""
    grids, cost = {}, {}
    for name, (grid, opts) in HAND.items():
        grids[name] = make_grid(grid, run.process, steps, **opts)
    for obj in objectives(sampler):
        t0 = time.perf_counter()
        res = optimize(run, sampler, steps, obj, n=a.n_opt, seed=seed, m=a.candidates)
        grids[f"opt-{obj}"] = torch.tensor([*res["sigmas"], 0.0], dtype=torch.float64)
        cost[f"opt-{obj}"] = {"network_evaluations": res["network_evaluations"],
                              "sampling_runs": res["sampling_runs"],
                              "seconds": round(time.perf_counter() - t0, 1)}
    opts = sampler_settings(run.config)  # any registered sampler (dpmpp_2m, unipc_2: NFE = steps)
    scores = {name: final_xent(run.denoiser, run.process, mixture, g, sampler, a.n, 1000 + seed, opts)
              for name, g in grids.items()}
    return {"scores": scores, "cost": cost, "grids": {k: g.tolist() for k, g in grids.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ring8,random16")
    p.add_argument("--seeds", type=int, default=5, help="seeds (with --images: the first N runs)")
    p.add_argument("--steps", default="5,10,20", help="sampling step counts")
    p.add_argument("--samplers", default="ddim,ddpm")
    p.add_argument("--n", type=int, default=2000, help="samples scoring each grid")
    p.add_argument("--n-opt", type=int, default=500, help="samples per estimate inside the optimisation")
    p.add_argument("--candidates", type=int, default=40)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--out", default=str(ROOT / "runs" / "b8"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report", action="store_true",
                   help="write the tables from the finished seed × setting results only (computes nothing)")
    p.add_argument("--images", help="a folder of trained image runs seed*/ (FD instead of exact xent)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.images:
        return images(a)
    if a.quick:
        a.seeds, a.steps, a.n, a.n_opt, a.candidates, a.train_steps = 2, "5", 300, 100, 16, 100
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    ks, samplers, names = [int(k) for k in a.steps.split(",")], a.samplers.split(","), a.data.split(",")
    out = Path(a.out) / ("quick" if a.quick else "full")
    results: dict = {}
    for data in names:
        for seed in range(a.seeds):
            cfg = config_mod.load(overrides=DATA[data] + MIXTURE_MODEL + [
                f"train.steps={a.train_steps}", f"train.ckpt_every={a.train_steps}", f"train.seed={seed}"])
            run_dir = out / data / f"seed{seed}"
            if not a.report:
                train_to_end(cfg, run_dir, progress=False)
                run, mixture = load_run(run_dir), load_data(cfg, "train")
            for sampler in samplers:
                for k in ks:
                    key = {"n": a.n, "n_opt": a.n_opt, "candidates": a.candidates, "sampler": sampler,
                           "steps": k, "version": VERSION}
                    cache = run_dir / f"b8_{sampler}{k}.json"
                    res = read_cached(cache, key)
                    if res is None and a.report:
                        continue
                    if res is None:
                        print(f"[b8] {data} seed {seed} {sampler}-{k}", flush=True)
                        res = write_cached(cache, key, measure(run, mixture, sampler, k, a, seed))
                    results.setdefault(data, {}).setdefault(f"{sampler}-{k}", {})[seed] = res
    write(a, out, results, names, samplers, ks,
          name="b8_optimal_grids" + ("" if a.data == "ring8,random16" else "_" + a.data.replace(",", "_")))


def images(a) -> None:
    """The Fashion-MNIST half: FD (n = a.n, with its floor) of every grid on each trained run."""
    import dataclasses

    from errprop.evaluate import evaluate, row

    runs = sorted(Path(a.images).glob("seed*"))[:a.seeds]
    if not runs:
        sys.exit(f"[b8] no seed*/ runs in {a.images}")
    ks, samplers = [int(k) for k in a.steps.split(",")], a.samplers.split(",")
    results: dict = {}
    for run_dir in runs:
        seed = int(run_dir.name[4:])
        run = load_run(run_dir, device=a.device)
        for sampler in samplers:
            for k in ks:
                # version 2: version 1 read every grid's score from the first row of evaluate's file
                # (ddim-5's, once other settings had been merged in), not from this setting's row.
                key = {"n": a.n, "n_opt": a.n_opt, "candidates": a.candidates, "sampler": sampler, "steps": k,
                       "version": 2}
                cache = run_dir / f"b8_fd_{sampler}{k}.json"
                res = read_cached(cache, key)
                if res is None:
                    print(f"[b8] {run_dir} {sampler}-{k}", flush=True)
                    opt = optimize(run, sampler, k, "klub", n=a.n_opt, seed=seed, m=a.candidates,
                                   device=a.device)
                    grids = {name: dataclasses.replace(run.config.sample, grid=g, **opts)
                             for name, (g, opts) in HAND.items()}
                    grids["opt-klub"] = dataclasses.replace(run.config.sample, grid="list",
                                                            sigmas=opt["sigmas"])
                    res = {"scores": {}, "cost": {"opt-klub": {
                        "network_evaluations": opt["network_evaluations"], "sampling_runs": 0}}}
                    for name, sc in grids.items():
                        cfg = dataclasses.replace(run.config, sample=sc)
                        r = evaluate(dataclasses.replace(run, config=cfg), [k], [sampler], "fd", n=a.n,
                                     seed=1000 + seed, device=a.device, progress=False)
                        res["scores"][name] = {METRIC: row(r, sampler, k)["value"], "floor": r["floor"]}
                    write_cached(cache, key, res)
                results.setdefault("fashion-mnist", {}).setdefault(f"{sampler}-{k}", {})[seed] = res
    write(a, Path(a.images), results, ["fashion-mnist"], samplers, ks, metric_label="FD (classifier "
          "features)", name="b8_optimal_grids_fmnist")


def write(a, out: Path, results: dict, names, samplers, ks, metric_label: str | None = None,
          name: str = "b8_optimal_grids") -> None:
    prov = provenance()
    command = shlex.join(["python", "benchmarks/b8_optimal_grids.py", *sys.argv[1:]])
    lines = ["# B8 — error-optimal grids vs hand-made grids (exact, Gaussian mixtures)", "",
             f"Command: `{command}`  ", f"Commit {prov['commit']}, {prov['machine']}, {prov['date']}.  ",
             f"Baseline ε-model per seed (MLP 128×2, {a.train_steps} steps, E1's settings); every grid "
             f"scored by the exact excess cross-entropy (nats, 1 %-trimmed mean; lower is better) of "
             f"n = {a.n} samples drawn with a sample seed no optimisation saw; optimisation estimates "
             f"use n = {a.n_opt} and {a.candidates} log-uniform candidate levels plus the hand-made "
             "grids' levels. mean ± sd over seeds; Δ = optimised − best hand-made grid (the one with the "
             "lowest mean for that setting) paired on seeds, 95 % t-interval; **beats** = the interval is "
             "below 0 and |Δ| exceeds the best hand-made grid's sd over seeds.", ""]
    verdicts = {}
    for data in names:
        lines += [f"## {data}", ""]
        grids = list(dict.fromkeys(g for by_seed in results[data].values() for r in by_seed.values()
                                   for g in r["scores"]))
        hand = [g for g in grids if not g.startswith("opt-")]
        lines.append("| setting | " + " | ".join(grids) + " | Δ of each optimised grid vs the best "
                     "hand-made |")
        lines.append("|---|" + "---|" * (len(grids) + 1))
        for setting, by_seed in results[data].items():
            seeds = sorted(by_seed)

            def vals(g, by_seed=by_seed, seeds=seeds):
                return [by_seed[s]["scores"][g][METRIC] for s in seeds]

            best = min(hand, key=lambda g: summary(vals(g))["mean"])
            present = [g for g in grids if g in by_seed[seeds[0]]["scores"]]
            cells = [f"{summary(vals(g))['mean']:.3g} ± {summary(vals(g))['std']:.2g}" if g in present
                     else "–" for g in grids]
            notes = []
            spread = summary(vals(best))["std"]
            for g in present:
                if g.startswith("opt-"):
                    d = paired(vals(g), vals(best))
                    beats = len(seeds) > 1 and d["hi"] < 0 and abs(d["mean"]) > spread
                    verdicts[f"{data} {setting} {g}"] = beats
                    ci = f"[{d['lo']:+.3g}, {d['hi']:+.3g}]" if len(seeds) > 1 else "(1 seed: no interval)"
                    notes.append(f"{g}: {d['mean']:+.3g} {ci} " + ("**beats**" if beats else "does not beat"))
            label = setting + (f" ({len(seeds)} of {a.seeds} seeds)" if len(seeds) != a.seeds else "")
            lines.append(f"| {label} | " + " | ".join(cells)
                         + f" | best hand-made: {best}; " + "; ".join(notes) + " |")
        cost = {g: c for by_seed in results[data].values() for r in by_seed.values()
                for g, c in r["cost"].items()}
        lines += ["", "Cost of one optimisation (last setting measured): "
                  + "; ".join(f"{g}: {c['network_evaluations']} network evaluations, {c['sampling_runs']} "
                              f"sampling runs, {c.get('seconds', '?')} s" for g, c in cost.items()), ""]
    ten = {k: v for k, v in verdicts.items() if "-10 " in k}
    lines += ["## At 10 steps", "",
              f"Optimised grids that beat the best hand-made grid by more than the seed spread: "
              f"{sum(ten.values())} of {len(ten)} ({', '.join(k for k, v in ten.items() if v) or 'none'}); "
              f"not: {', '.join(k for k, v in ten.items() if not v) or 'none'}.", ""]
    docs = Path(a.docs) if not a.quick else out
    docs.mkdir(parents=True, exist_ok=True)
    if metric_label:
        floors = [sc["floor"] for r in results[names[0]].values() for by in r.values()
                  for sc in by["scores"].values() if "floor" in sc]
        lines[0] = "# B8 — error-optimal grids vs hand-made grids (Fashion-MNIST, FD)"
        lines[4] = (f"Trained runs in `{a.images}` (one per seed); every grid scored by {metric_label} of "
                    f"n = {a.n} samples (sample seed 1000 + seed; floor, data against data at the same n: "
                    f"{min(floors):.3g}–{max(floors):.3g}); the optimised grid is the KLUB DP "
                    f"(n = {a.n_opt}, {a.candidates} candidates). Rest as in B8.")
    (docs / f"{name}.md").write_text("\n".join(lines) + "\n")
    (docs / f"{name}.json").write_text(json.dumps(
        {"command": command, **prov, "results": results, "verdicts": verdicts}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
