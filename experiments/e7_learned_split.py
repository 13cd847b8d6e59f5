"""E7 — discretization or learned? The split of a trained image model's error against the ideal
denoiser of its training set, at 10/20/50 DDIM steps.

For one trained run (an errprop run folder or ``diffusers:PATH`` with ``--data``), at each step
count the model's DDIM chain and the same chain with the ideal denoiser D* of the training set
(:class:`errprop.data.empirical.EmpiricalDenoiser`; same start, same noise) are compared with data
noised to each σ (:func:`errprop.diagnostics.learned.learned_split`): the learned error
E‖D_θ − D*‖² per step at the model chain's states, and at the end DS's E_D (the sampler with D*)
and E_S (model chain vs D* chain), the final distance and the share that is discretization, with
90 % bootstrap intervals over chains. Where D* memorises (so that the learned error there is
generalisation, not error) is measured once on held-out (test) images
(:func:`errprop.diagnostics.learned.memorisation`).

    python experiments/e7_learned_split.py runs/fm-c16-s1500 --n 256      # ≈ 10 min on one core
    python experiments/e7_learned_split.py diffusers:PATH --data fashion-mnist
    python experiments/e7_learned_split.py RUN --quick                    # smoke run

Writes ``docs/results/e7_learned_split_<label>.{md,json}`` (``--docs`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from errprop.builders import grid_options, load_data, load_run, sample_clip
from errprop.data.empirical import EmpiricalDenoiser
from errprop.diagnostics.learned import learned_split, memorisation, memorisation_grid
from errprop.files import atomic_write_text, to_jsonable
from errprop.grids import make_grid
from errprop.provenance import provenance
from errprop.samplers import step_options

ROOT = Path(__file__).resolve().parents[1]


def _ci(t: dict, pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.0f} %") if pct else (lambda v: f"{v:.3g}")
    return f"{f(t['value'])} [{f(t['lo'])}, {f(t['hi'])}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="run folder, checkpoint, or diffusers:PATH")
    p.add_argument("--data", help="diffusers:PATH models: the data set (e.g. fashion-mnist)")
    p.add_argument("--steps", default="10,20,50", help="DDIM step counts")
    p.add_argument("--n", type=int, default=256, help="chains per step count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="fmnist", help="results file suffix")
    p.add_argument("--note", default="", help="a line on the model (size, training) for the report")
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="n = 32, steps 4,8 (numbers not meaningful)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # the D* products are large but this machine is shared
    t0 = time.perf_counter()
    data = {"name": a.data} if a.data else None
    run = load_run(a.run, device="cpu", data=data)
    train, test = load_data(run.config, "train"), load_data(run.config, "test")
    exact = EmpiricalDenoiser(train)
    steps = [4, 8] if a.quick else [int(v) for v in a.steps.split(",")]
    n = 32 if a.quick else a.n
    sc = run.config.sample
    rows, per_steps = [], {}
    for k in steps:
        sigmas = make_grid("uniform" if sc.grid is None else sc.grid, run.process, k,
                           **grid_options(run.config))
        opts = step_options("ddim", k, run.process, eta=0.0, clip=sample_clip(run.config))
        t1 = time.perf_counter()
        res = learned_split(run.denoiser, exact, run.process, train, sigmas, step="ddim",
                            options=opts, n=n, seed=a.seed)
        res["seconds"] = time.perf_counter() - t1
        per_steps[k] = res
        print(f"[e4] {k} steps: {res['final']['total']['value']:.3g} total, share "
              f"{res['final']['discretization_share']['value']:.2f} ({res['seconds']:.0f} s)",
              flush=True)
        rows.append((k, res))
    process = run.process
    mem = memorisation(exact, test, memorisation_grid(process, make_grid("uniform", process, 50)),
                       model=run.denoiser, n=n, seed=a.seed)
    valid = mem["reference_valid_from"]
    argv_ = sys.argv[1:] if argv is None else argv
    command = "python experiments/e7_learned_split.py " + shlex.join(argv_)
    prov = provenance()
    md = [f"# E7 — discretization or learned: {a.label}, DDIM at {', '.join(map(str, steps))} steps",
          "", f"Command: `{command}`  ",
          f"Commit {prov['commit']}, {prov['machine']}, {prov['date']}; wall-clock "
          f"{time.perf_counter() - t0:.0f} s.", ""]
    if a.note:
        md += [a.note, ""]
    if a.quick:
        md += ["**--quick: n = 32, numbers not meaningful.**", ""]
    md += [f"Run `{a.run}` (training step {run.step}); reference: the ideal denoiser D* of its "
           f"{len(train):,} training images (exact for their empirical distribution). n = {n} chains "
           "per step count, model and D* chains from the same start with the same noise; distances "
           "√ of the unbiased MMD² on the final samples against training images (floor: two data "
           "sets, i.e. sampling noise); 90 % bootstrap intervals over chains.", "",
           "| DDIM steps | final distance | E_D: sampler with D* | E_S: model vs D* chain | floor "
           "| share that is discretization | mean ‖x_θ − x_D*‖ | error enters at σ ∈ | seconds |",
           "|---|---|---|---|---|---|---|---|---|"]
    for k, r in rows:
        f, e = r["final"], r["enters"]
        enters = ("—" if e["sigma_hi"] is None
                  else f"[{e['sigma_lo']:.3g}, {e['sigma_hi']:.3g}] ({100 * e['share']:.0f} %)")
        md.append(f"| {k} | {_ci(f['total'])} | {_ci(f['E_D'])} | {_ci(f['E_S'])} | "
                  f"{f['floor']['value']:.3g} | {_ci(f['discretization_share'], pct=True)} | "
                  f"{_ci(f['path'])} | {enters} | {r['seconds']:.0f} |")
    md += ["", "Learned error per step, E‖D_θ − D*‖² at the model chain's states (σ: value):", ""]
    for k, r in rows:
        md.append(f"- {k} steps: " + ", ".join(
            f"{s:.3g}: {v:.3g}" for s, v in zip(r["step_sigma"], r["learned"])))
    md += ["", "The same in ε units, E‖ε̂_θ − ε̂*‖² = E‖D_θ − D*‖²/σ² (comparable across σ):", ""]
    for k, r in rows:
        md.append(f"- {k} steps: " + ", ".join(
            f"{s:.3g}: {v:.3g}" for s, v in zip(r["step_sigma"], r["learned_eps"])))
    md += ["", "Where D* memorises (held-out test images noised to σ; ratio: distance of D*'s answer "
           "to its nearest training image over a fresh test image's; model: the same for D_θ):", "",
           "| σ | ratio D* | ratio model | w_max | ess | E‖D* − x‖² | E‖D_θ − x‖² |",
           "|---|---|---|---|---|---|---|"]
    for i, s in enumerate(mem["sigma"]):
        md.append(f"| {s:.3g} | {mem['ratio'][i]:.3g} | {mem['ratio_model'][i]:.3g} | "
                  f"{mem['w_max'][i]:.3g} | {mem['ess'][i]:.3g} | {mem['mse_exact'][i]:.3g} | "
                  f"{mem['mse_model'][i]:.3g} |")
    md += ["", ("D* memorises at every measured σ." if valid is None else
                f"D* stands for the data distribution from σ ≈ {valid:.3g} up (ratio ≥ "
                f"{mem['threshold']}); below, the learned error measures how the model generalises, "
                "not its error.")]
    docs = Path(a.docs)
    docs.mkdir(parents=True, exist_ok=True)
    name = f"e7_learned_split_{a.label}" + ("_quick" if a.quick else "")
    atomic_write_text(docs / f"{name}.md", "\n".join(md) + "\n")
    payload = {"command": command, **prov, "run": a.run, "train_step": run.step, "n": n,
               "note": a.note, "steps": {str(k): r for k, r in per_steps.items()},
               "memorisation": mem}
    atomic_write_text(docs / f"{name}.json", json.dumps(to_jsonable(payload), indent=1) + "\n")
    print(docs / f"{name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
