"""B8 — error-optimal grids against every hand-made grid, scored exactly on Gaussian mixtures.

For each data set and seed a baseline model is trained (E1's network and budget); for each sampler
and step count the optimised grids (``errprop.optimal_grid``: DP over the exact modular KL for a
Gaussian step — DDPM, DDIM with η > 0 —, DP over the path KL ``KL(q ‖ p_θ)`` per step for every
sampler — a sampler without a Gaussian step, e.g. DPM-Solver++ or UniPC, is scored with DDPM's step
on the same levels and gets that grid —, DP over the AYS-style KLUB, coordinate descent on the final
excess cross-entropy) and the hand-made grids (uniform-t trailing / leading / linspace, quadratic-t,
EDM-ρ = 7, exponential σ) are scored by the exact excess cross-entropy of n samples drawn with a
sample seed that no optimisation saw. Per setting: mean ± sd over seeds, and the paired difference
(same model, same noise) between each optimised grid and the hand-made grid that is best on
average, with a 95 % t-interval. Settings are labelled sampler-steps; the table says NFE where every
sampler makes one network evaluation per step (all but Heun: multistep solvers too), and the
summary is at 10 NFE.

    python benchmarks/b8_optimal_grids.py                       # ring8 + random16, 5 seeds
    python benchmarks/b8_optimal_grids.py --quick               # smoke run
    python benchmarks/b8_optimal_grids.py --data ring8,random16,grid25 --samplers dpmpp_2m,unipc_2 --steps 10
    python benchmarks/b8_optimal_grids.py --images runs/e2/c16-s1500/baseline   # Fashion-MNIST, FD
    python benchmarks/b8_optimal_grids.py --images runs/e2/c16-s1500/baseline --seeds 1 --n 1000

``--data`` takes any mixture :func:`errprop.study.mixture` knows (ring8, grid25, randomD).
``--images FOLDER`` scores trained image runs instead (``FOLDER/seed*``, e.g. E2's baselines): the
grids of every objective that needs no density (the path KL given x0, KLUB) against the hand-made
ones by FD on the classifier features with its floor.

Result files (``.md`` and ``.json`` in ``--docs``; in the out folder with ``--quick``), so that one
run never overwrites another's: ``b8_optimal_grids`` + ``_<samplers>_<unit><steps>`` when the
samplers or step counts are not the defaults (ddim,ddpm at 5,10,20) — samplers joined by ``-``,
steps by ``-``, unit ``nfe`` when every sampler makes one network evaluation per step, else
``steps`` — + ``_<data>`` when the mixtures are not the default ring8,random16 (joined by ``_``),
or ``_<data>`` for ``--images`` (the runs' data set; ``_fmnist`` for Fashion-MNIST). E.g.
``--samplers dpmpp_2m,unipc_2 --steps 10 --data
ring8,random16,grid25`` writes ``b8_optimal_grids_dpmpp_2m-unipc_2_nfe10_ring8_random16_grid25``;
the defaults write ``b8_optimal_grids``, ``--data ring8`` ``b8_optimal_grids_ring8``.
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
from errprop.errors import ErrpropError
from errprop.files import atomic_write_text, read_cached, write_cached
from errprop.grids import make_grid
from errprop.optimal_grid import final_xent, optimize
from errprop.provenance import provenance
from errprop.samplers import get_sampler, is_gaussian, is_stochastic, nfe, step_options
from errprop.stats import paired, summary
from errprop.study import MIXTURE_MODEL, mixture
from errprop.train import train_to_end

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA, DEFAULT_SAMPLERS, DEFAULT_STEPS = "ring8,random16", "ddim,ddpm", "5,10,20"
HAND = {"trailing": ("uniform", {"spacing": "trailing"}), "leading": ("uniform", {"spacing": "leading"}),
        "linspace": ("uniform", {"spacing": "linspace"}), "quadratic": ("quadratic", {}),
        "edm": ("edm", {}), "exponential": ("exponential", {})}
# 3: path_kl for every sampler, modular for every Gaussian step; 2: the DP's first level is free on
# mixtures (prior KL added); 1: fixed at σ_max
VERSION = 3
METRIC = "trimmed"  # the 1 %-trimmed excess cross-entropy: the mean is ruled by a few far samples


def objectives(gaussian: bool, stochastic: bool, exact: bool = True) -> list[str]:
    """The optimisers scored for a sampler: ``modular`` for a Gaussian step only (it is that step's
    KL), ``path_kl`` for every sampler (DDPM's step, transferred, where the sampler has no Gaussian
    step), ``klub``, ``local`` (the ODE's local error) for a deterministic sampler, ``xent``; without
    an exact density (images) only those that need none: ``path_kl`` in its form given x0 (the same
    optimum from σ_max), ``klub`` and ``local``."""
    out = (["modular"] if gaussian and exact else []) + ["path_kl", "klub"]
    return out + ([] if stochastic else ["local"]) + (["xent"] if exact else [])


def shared_key(obj: str, steps: int, gaussian: bool, stochastic: bool) -> tuple | None:
    """Samplers whose optimisation is the same computation share it: the transferred path KL
    (DDPM's step) per kind of sampler, the local error (DDIM's step) for every deterministic one,
    and KLUB (no step in it) for every sampler."""
    if obj == "path_kl" and not gaussian:
        return steps, "transferred", stochastic
    if obj in ("local", "klub"):
        return steps, obj
    return None


def optimised(run, sampler: str, steps: int, todo: list[str], a, seed: int, shared: dict,
              device: str = "cpu") -> dict[str, tuple[dict, dict]]:
    """{objective: (optimize's result, its cost entry)} for the objectives in ``todo``, each
    optimised once per run and :func:`shared_key` (``shared`` holds them across samplers)."""
    gaussian, stochastic = step_kind(run, sampler, steps)
    out = {}
    for obj in todo:
        key = shared_key(obj, steps, gaussian, stochastic)
        if key is not None and key in shared:
            res, seconds = shared[key]
        else:
            t0 = time.perf_counter()
            res = optimize(run, sampler, steps, obj, n=a.n_opt, seed=seed, m=a.candidates, device=device)
            seconds = round(time.perf_counter() - t0, 1)
            if key is not None:
                shared[key] = res, seconds
        out[obj] = res, {"network_evaluations": res["network_evaluations"],
                         "sampling_runs": res["sampling_runs"], "seconds": seconds,
                         **({"step": res["step"]} if "step" in res else {})}
    return out


def step_kind(run, sampler: str, steps: int) -> tuple[bool, bool]:
    """Whether the run's sampler step is Gaussian (given x̂ alone) and whether it is stochastic."""
    opts = step_options(sampler, steps, run.process, **sampler_settings(run.config))
    return is_gaussian(sampler, opts), is_stochastic(sampler, opts)


def result_name(samplers: str, steps: str, data: str) -> str:
    """The result files' name (module docstring): a suffix for non-default samplers or step counts,
    then one for the data."""
    name = "b8_optimal_grids"
    if (samplers, steps) != (DEFAULT_SAMPLERS, DEFAULT_STEPS):
        ks = [int(k) for k in steps.split(",")]
        unit = "nfe" if all(nfe(s, k) == k for s in samplers.split(",") for k in ks) else "steps"
        name += f"_{samplers.replace(',', '-')}_{unit}{'-'.join(map(str, ks))}"
    return name + ("" if data == DEFAULT_DATA else "_" + data.replace(",", "_"))


def measure(run, mix, sampler: str, steps: int, a, seed: int, shared: dict, have: dict | None = None,
            label: str = "") -> dict:
    """Every grid of one setting, scored on sample seed 1000 + seed (unseen by the optimisation).

    ``shared`` holds this run's optimisations that several samplers share (:func:`shared_key`).
    ``have``: this setting's cached result; only the grids it lacks (an objective added since) are
    optimised and scored, and merged into it."""
    have = have or {"scores": {}, "cost": {}, "grids": {}}
    grids, cost = {}, {}
    for name, (grid, opts) in HAND.items():
        if name not in have["scores"]:
            grids[name] = make_grid(grid, run.process, steps, **opts)
    todo = [obj for obj in objectives(*step_kind(run, sampler, steps)) if f"opt-{obj}" not in have["scores"]]
    if grids or todo:
        print(f"[b8] {label}: {', '.join([*grids, *(f'opt-{o}' for o in todo)])}", flush=True)
    for obj, (res, entry) in optimised(run, sampler, steps, todo, a, seed, shared).items():
        grids[f"opt-{obj}"] = torch.tensor([*res["sigmas"], 0.0], dtype=torch.float64)
        cost[f"opt-{obj}"] = entry
    opts = sampler_settings(run.config)  # any registered sampler (dpmpp_2m, unipc_2: NFE = steps)
    scores = {name: final_xent(run.denoiser, run.process, mix, g, sampler, a.n, 1000 + seed, opts)
              for name, g in grids.items()}
    return {"scores": {**have["scores"], **scores}, "cost": {**have["cost"], **cost},
            "grids": {**have["grids"], **{k: g.tolist() for k, g in grids.items()}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="mixtures: ring8, grid25, randomD (e.g. random16)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (with --images: the first N runs)")
    p.add_argument("--steps", default=DEFAULT_STEPS, help="sampling step counts")
    p.add_argument("--samplers", default=DEFAULT_SAMPLERS)
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
    # the command line that ran this benchmark, recorded in its results and in each FD it asks for
    a.command = shlex.join(["python", "benchmarks/b8_optimal_grids.py", *sys.argv[1:]])
    try:
        for sampler in a.samplers.split(","):
            get_sampler(sampler)
        if min(int(k) for k in a.steps.split(",")) < 2:
            raise ValueError(f"--steps: every step count must be ≥ 2, got {a.steps}")
        overrides = {name: mixture(name)[0] for name in a.data.split(",")}
    except (ErrpropError, ValueError) as e:
        p.error(str(e))
    if a.images:
        return images(a)
    if a.quick:
        a.seeds, a.n, a.n_opt, a.candidates, a.train_steps = 2, 300, 100, 16, 100
        a.steps = "5" if a.steps == DEFAULT_STEPS else a.steps
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    ks, samplers, names = [int(k) for k in a.steps.split(",")], a.samplers.split(","), a.data.split(",")
    out = Path(a.out) / ("quick" if a.quick else "full")
    results: dict = {}
    for data in names:
        for seed in range(a.seeds):
            cfg = config_mod.load(overrides=overrides[data] + MIXTURE_MODEL + [
                f"train.steps={a.train_steps}", f"train.ckpt_every={a.train_steps}", f"train.seed={seed}"])
            run_dir = out / data / f"seed{seed}"
            shared: dict = {}
            if not a.report:
                train_to_end(cfg, run_dir, progress=False)
                run, mix = load_run(run_dir), load_data(cfg, "train")
            for sampler in samplers:
                for k in ks:
                    key = {"n": a.n, "n_opt": a.n_opt, "candidates": a.candidates, "sampler": sampler,
                           "steps": k, "version": VERSION}
                    cache = run_dir / f"b8_{sampler}{k}.json"
                    res = read_cached(cache, key)
                    if res is None and a.report:
                        continue
                    if not a.report:  # computes only what the cache lacks (nothing, usually)
                        new = measure(run, mix, sampler, k, a, seed, shared, res,
                                      label=f"{data} seed {seed} {sampler}-{k}")
                        if new != res:
                            res = write_cached(cache, key, new)
                    results.setdefault(data, {}).setdefault(f"{sampler}-{k}", {})[seed] = res
    write(a, out, results, names, samplers, ks, name=result_name(a.samplers, a.steps, a.data))


def images(a) -> None:
    """The image half: FD (n = a.n, with its floor) of every grid on each trained run (Fashion-MNIST,
    digits, … — the runs' own data set, which names the result)."""
    import dataclasses

    from errprop.evaluate import evaluate, row

    runs = sorted(Path(a.images).glob("seed*"))[:a.seeds]
    if not runs:
        sys.exit(f"[b8] no seed*/ runs in {a.images}")
    ks, samplers = [int(k) for k in a.steps.split(",")], a.samplers.split(",")
    results: dict = {}
    data = None
    for run_dir in runs:
        seed = int(run_dir.name[4:])
        shared: dict = {}  # this run's optimisations several samplers share (shared_key)
        run = load_run(run_dir, device=a.device)
        if data not in (None, run.config.data.name):
            sys.exit(f"[b8] {run_dir} trains on {run.config.data.name}, the runs before it on {data}")
        data = run.config.data.name
        for sampler in samplers:
            for k in ks:
                # version 2: version 1 read every grid's score from the first row of evaluate's file
                # (ddim-5's, once other settings had been merged in), not from this setting's row.
                # Objectives added since (the path KL given x0, the local error) are merged in.
                # The checkpoint's step too: a run trained on since (E8's, by a longer study) is
                # another model, measured again rather than mixed with the shorter one's scores.
                key = {"n": a.n, "n_opt": a.n_opt, "candidates": a.candidates, "sampler": sampler, "steps": k,
                       "version": 2, "checkpoint_step": run.step}
                cache = run_dir / f"b8_fd_{sampler}{k}.json"
                res = read_cached(cache, key) or {"scores": {}, "cost": {}}
                grids = {name: dataclasses.replace(run.config.sample, grid=g, **opts)
                         for name, (g, opts) in HAND.items() if name not in res["scores"]}
                todo = [obj for obj in objectives(*step_kind(run, sampler, k), exact=False)
                        if f"opt-{obj}" not in res["scores"]]
                if todo:
                    print(f"[b8] {run_dir} {sampler}-{k}: optimising {', '.join(todo)}", flush=True)
                for obj, (opt, entry) in optimised(run, sampler, k, todo, a, seed, shared,
                                                   a.device).items():
                    grids[f"opt-{obj}"] = dataclasses.replace(run.config.sample, grid="list",
                                                              sigmas=opt["sigmas"])
                    res["cost"][f"opt-{obj}"] = entry
                for name, sc in grids.items():
                    print(f"[b8] {run_dir} {sampler}-{k}: FD of {name}", flush=True)
                    cfg = dataclasses.replace(run.config, sample=sc)
                    r = evaluate(dataclasses.replace(run, config=cfg), [k], [sampler], "fd", n=a.n,
                                 seed=1000 + seed, device=a.device, progress=False,
                                 command=a.command)
                    res["scores"][name] = {METRIC: row(r, sampler, k)["value"], "floor": r["floor"]}
                    write_cached(cache, key, res)  # after every grid: an interruption loses one FD
                results.setdefault(data, {}).setdefault(f"{sampler}-{k}", {})[seed] = res
    name = result_name(a.samplers, a.steps, DEFAULT_DATA) + "_" + {"fashion-mnist": "fmnist"}.get(data, data)
    write(a, Path(a.images), results, [data], samplers, ks, metric_label="FD (classifier "
          "features)", name=name)


def nfe_of(setting: str) -> tuple[int, int]:
    """(steps, NFE) of a setting label ``<sampler>-<steps>``."""
    sampler, steps = setting.rsplit("-", 1)
    return int(steps), nfe(sampler, int(steps))


def write(a, out: Path, results: dict, names, samplers, ks, metric_label: str | None = None,
          name: str = "b8_optimal_grids") -> None:
    prov = provenance()
    command = a.command
    per_step = all(nfe(s, k) == k for s in samplers for k in ks)  # NFE = steps: say NFE
    lines = ["# B8 — error-optimal grids vs hand-made grids (exact, Gaussian mixtures)", "",
             f"Command: `{command}`  ", f"Commit {prov['commit']}, {prov['machine']}, {prov['date']}.  ",
             f"Baseline ε-model per seed (MLP 128×2, {a.train_steps} steps, E1's settings); every grid "
             f"scored by the exact excess cross-entropy (nats, 1 %-trimmed mean; lower is better) of "
             f"n = {a.n} samples drawn with a sample seed no optimisation saw; optimisation estimates "
             f"use n = {a.n_opt} and {a.candidates} log-uniform candidate levels plus the hand-made "
             "grids' levels; opt-path_kl is the DP over the per-step KL(q ‖ p_θ) of the sampler's "
             "Gaussian step, or of DDPM's on the same levels for a sampler without one (transferred). "
             "mean ± sd over seeds; Δ = optimised − best hand-made grid (the one with the "
             "lowest mean for that setting) paired on seeds, 95 % t-interval; **beats** = the interval is "
             "below 0 and |Δ| exceeds the best hand-made grid's sd over seeds.", ""]
    verdicts, at_ten = {}, {}
    for data in names:
        lines += [f"## {data}", ""]
        grids = list(dict.fromkeys(g for by_seed in results[data].values() for r in by_seed.values()
                                   for g in r["scores"]))
        hand = [g for g in grids if not g.startswith("opt-")]
        lines.append(f"| sampler-{'NFE' if per_step else 'steps'} | " + " | ".join(grids)
                     + " | Δ of each optimised grid vs the best hand-made |")
        lines.append("|---|" + "---|" * (len(grids) + 1))
        for setting, by_seed in results[data].items():
            seeds = sorted(by_seed)
            steps, evals = nfe_of(setting)

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
                    if evals == 10:
                        at_ten[f"{data} {setting} {g}"] = beats
                    ci = f"[{d['lo']:+.3g}, {d['hi']:+.3g}]" if len(seeds) > 1 else "(1 seed: no interval)"
                    notes.append(f"{g}: {d['mean']:+.3g} {ci} " + ("**beats**" if beats else "does not beat"))
            label = setting + (f" ({evals} NFE)" if evals != steps else "")
            label += f" ({len(seeds)} of {a.seeds} seeds)" if len(seeds) != a.seeds else ""
            lines.append(f"| {label} | " + " | ".join(cells)
                         + f" | best hand-made: {best}; " + "; ".join(notes) + " |")
        cost = {g: c for by_seed in results[data].values() for r in by_seed.values()
                for g, c in r["cost"].items()}
        lines += ["", "Cost of one optimisation (last setting measured): "
                  + "; ".join(f"{g}: {c['network_evaluations']} network evaluations, {c['sampling_runs']} "
                              f"sampling runs, {c.get('seconds', '?')} s" for g, c in cost.items()), ""]
    lines += ["## At 10 NFE", "",
              f"Optimised grids that beat the best hand-made grid by more than the seed spread: "
              f"{sum(at_ten.values())} of {len(at_ten)} "
              f"({', '.join(k for k, v in at_ten.items() if v) or 'none'}); "
              f"not: {', '.join(k for k, v in at_ten.items() if not v) or 'none'}.", ""]
    docs = Path(a.docs) if not a.quick else out
    docs.mkdir(parents=True, exist_ok=True)
    if metric_label:
        floors = [sc["floor"] for r in results[names[0]].values() for by in r.values()
                  for sc in by["scores"].values() if "floor" in sc]
        lines[0] = f"# B8 — error-optimal grids vs hand-made grids ({names[0]}, FD)"
        lines[4] = (f"Trained runs in `{a.images}` (one per seed); every grid scored by {metric_label} of "
                    f"n = {a.n} samples (sample seed 1000 + seed; floor, data against data at the same n: "
                    f"{min(floors):.3g}–{max(floors):.3g}); the optimised grids are the DP "
                    f"over the path KL given x0 (Ho et al.'s terms; DDPM's step, transferred, for a "
                    f"deterministic sampler) and over KLUB, both from σ_max, and over the ODE's local error "
                    f"against the model's own trajectories (GITS; first-order step, free start), n = "
                    f"{a.n_opt}, {a.candidates} candidates. Rest as in B8.")
    atomic_write_text(docs / f"{name}.md", "\n".join(lines) + "\n")
    atomic_write_text(docs / f"{name}.json", json.dumps(
        {"command": command, **prov, "results": results, "verdicts": verdicts}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
