"""E8 — SA and EP on images a CPU trains to a plateau: scikit-learn's 8×8 digits, FD against the budget.

One long training per objective × seed (16-channel U-Net, ε-loss or SA-2 / SA-2 uniform-t / EP at
λ = D = 64; the baseline trains twice as long as the arms), scored at checkpoints spaced ×2 by the
Fréchet distance on errprop's digits classifier features (n samples against the 360 test images,
beside its floor: n training images against the same test images), with DDIM at 10/20/50 steps and
DPM-Solver++ 2M at 10. The baseline's FD against its training steps shows where it plateaus; the
arms are compared with it at their last budget (the same steps), paired on seeds (same initial
weights, data order, training noise and sampling noise), and compute-matched: an arm at budget b
against the baseline at the smallest budget that cost at least as much (each arm's step cost over
the baseline's measured here, A B A B) — what the baseline's longer training is for.

Primary endpoint, declared before the run: FD at DDIM-10 at the arms' last budget (:data:`PRIMARY`),
Holm-adjusted over the arms; every other setting is in the table, adjusted over its own family.

    python experiments/e8_digits.py                  # 5 seeds, 2,000 steps (baseline 4,000; ≈ 1 h on 2 cores)
    python experiments/e8_digits.py --steps 4000     # the same trainings, trained on to twice the steps
    python experiments/e8_digits.py --quick          # smoke run; numbers not meaningful

Resumable: rerun the same command after an interruption (trainings continue from their last
checkpoint, finished measurements are read back). A larger ``--steps`` trains the runs of a smaller
one on (:func:`errprop.train.train_to_end` with ``extend``: exact, the checkpoint at step k does not
depend on how long its run was meant to train), so each budget is measured once. Writes ``<out>/`` (runs) and
``docs/results/e8_digits.{json,md,png}`` with ``docs/results/e8_digits/study.json`` (what the
claims table reads).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from errprop import config as config_mod
from errprop.config_diff import arms_differences, arms_sentence
from errprop.demo import default_jobs
from errprop.files import cached
from errprop.findings import interval
from errprop.findings import verdict as claim_verdict
from errprop.results import write_result, write_study_summary
from errprop.stats import holm_adjust, paired, summary
from errprop.study import Arm, objective_arms, pool_task, step_costs, training_cost

ROOT = Path(__file__).resolve().parents[1]
D = 64  # 8 × 8 pixels
#: The model and training every arm shares (configs/digits.yaml at 16 channels, as overrides so
#: that the report can diff the arms' resolved configs).
DIGITS_MODEL = ["data.name=digits", "model.net=unet", "model.parameterization=eps", "model.channels=16",
                "model.channel_mult=[1,2]", "model.num_res_blocks=1", "train.batch_size=128",
                "train.lr=5e-4", "train.warmup=200", "train.ema_decay=0.999", "train.log_every=100"]
ARMS = ["sa2", "sa2_uniform", "ep"]
SETTINGS = [("ddim", 10), ("ddim", 20), ("ddim", 50), ("dpmpp_2m", 10)]
#: The primary endpoint, declared before the run.
PRIMARY = "ddim-10"
#: A budget counts as the plateau when doubling it moves the baseline's FD at DDIM-50 by less than
#: this fraction of its value.
PLATEAU = 0.05


def budgets(steps: int, first: int) -> list[int]:
    """Every checkpoint measured: first, 2·first, 4·first, … and ``steps`` (a multiple of first)."""
    out, b = [], first
    while b < steps:
        out.append(b)
        b *= 2
    return [*out, steps]


def _config(arm: Arm, seed: int, steps: int, first: int) -> config_mod.Config:
    return config_mod.load(overrides=[*DIGITS_MODEL, *arm.overrides, f"train.steps={steps}",
                                      f"train.ckpt_every={first}", f"train.keep_last={steps // first}",
                                      f"train.seed={seed}"])


def arm_steps(arm: Arm, steps: int) -> int:
    """The training steps of an arm: the baseline trains twice as long (its curve and the
    compute-matched comparisons)."""
    return 2 * steps if arm.name == "baseline" else steps


@pool_task
def _unit(arm: Arm, seed: int, steps: int, first: int, out: str, n: int) -> dict:
    """Train one arm × seed to the end and score every budget's checkpoint (in a worker process:
    one thread). Returns {budget: {setting: FD, "floor": FD}}."""
    torch.set_num_threads(1)
    steps = arm_steps(arm, steps)
    from errprop import checkpoint
    from errprop.builders import load_run, sampler_settings
    from errprop.evaluate import Scorer
    from errprop.generate import generate
    from errprop.train import NUMERICS, train_to_end

    cfg = _config(arm, seed, steps, first)
    run_dir = Path(out) / arm.name / f"seed{seed}"
    train_to_end(cfg, run_dir, progress=False, extend=True)
    by_step = {checkpoint._step_of(p): p for p in checkpoint.list_checkpoints(run_dir)}
    res: dict = {}
    scorer = None
    for b in budgets(steps, first):
        key = {"n": n, "seed": seed, "settings": SETTINGS, "numerics": NUMERICS, "step": b}

        def score(b=b):
            nonlocal scorer
            if b not in by_step:  # (only a budget not yet measured needs its checkpoint)
                raise RuntimeError(f"{run_dir}: no checkpoint at step {b} to measure (train.keep_last "
                                   "too small?)")
            run = load_run(by_step[b])
            scorer = scorer or Scorer(run, "fd", n, seed, "cpu")
            row = {}
            for sampler, k in SETTINGS:
                x = generate(run.denoiser, run.process, run.shape, n, seed=seed, sampler=sampler, steps=k,
                             grid=run.config.sample.grid, batch_size=500, progress=False,
                             **sampler_settings(run.config))
                row[f"{sampler}-{k}"] = scorer(x)["value"]
            row["floor"] = scorer.floor()["value"]
            return row

        res[b] = cached(run_dir / f"e8_fd_step{b}.json", key, score)
    return res


def numbers(fd: dict, arms: list[Arm], seeds: list[int], steps: int, first: int, ratio: dict) -> dict:
    """Every number of the result: per budget and arm the FDs (the baseline's up to twice the arms'
    steps), the paired differences at the arms' last budget (Holm over arms for the primary endpoint;
    over arms × settings for the table), the compute-matched comparisons and the baseline's plateau."""
    bud = budgets(steps, first)
    base_bud = budgets(2 * steps, first)
    names = [a.name for a in arms]
    settings = [f"{s}-{k}" for s, k in SETTINGS]

    def vals(arm, b, setting):
        return [fd[arm][s][b][setting] for s in seeds]

    per_budget = {b: {a: {st: summary(vals(a, b, st)) for st in settings} for a in names
                      if a == "baseline" or b in bud} for b in base_bud}
    floor = summary([fd["baseline"][s][base_bud[-1]]["floor"] for s in seeds])
    primary = holm_adjust({a: paired(vals(a, steps, PRIMARY), vals("baseline", steps, PRIMARY))
                           for a in names[1:]})
    table = holm_adjust({(a, st): paired(vals(a, steps, st), vals("baseline", steps, st))
                         for a in names[1:] for st in settings})
    matched = {}
    for a in names[1:]:
        rows = []
        for b in bud:
            fair = [c for c in base_bud if c >= ratio.get(a, math.nan) * b]
            if fair:
                rows.append({"budget": b, "baseline_budget": fair[0],
                             **paired(vals(a, b, PRIMARY), vals("baseline", fair[0], PRIMARY))})
        matched[a] = rows
    curve = [per_budget[b]["baseline"]["ddim-50"]["mean"] for b in base_bud]
    plateau = next((b for b, x, y in zip(base_bud, curve, curve[1:]) if abs(y - x) < PLATEAU * x), None)
    return {"budgets": base_bud, "steps": steps, "seeds": seeds, "arms": names,
            "labels": {a.name: a.label for a in arms}, "settings": settings, "primary": PRIMARY,
            "per_budget": per_budget, "floor": floor, "paired_primary": primary,
            "paired": {f"{a} {st}": v for (a, st), v in table.items()}, "compute_matched": matched,
            "cost_ratio": ratio, "plateau": plateau, "plateau_rule": PLATEAU}


def notes(d: dict) -> str:
    """The findings, each sentence computed from ``d``."""
    bud, lab, pb, fl = d["budgets"], d["labels"], d["per_budget"], d["floor"]["mean"]
    base = [pb[b]["baseline"]["ddim-50"]["mean"] for b in bud]
    out = [f"Primary endpoint (declared before the run): FD at {d['primary']} at the arms' last budget "
           f"({d['steps']} steps, the baseline at the same steps); {len(d['seeds'])} paired seeds; p_Holm "
           f"over the {len(d['arms']) - 1} arms. Lower is better."]
    where = (f"doubling the steps from {d['plateau']} moves it by less than {d['plateau_rule']:.0%}"
             if d["plateau"] else f"it still moves by more than {d['plateau_rule']:.0%} per doubling")
    out.append(f"The baseline's FD at DDIM-50 goes from {base[0]:.3g} ({bud[0]} steps) to {base[-1]:.3g} "
               f"({bud[-1]} steps), {base[-1] / fl:.2g}× its floor of {fl:.3g}: {where}.")
    if base[-1] <= fl + d["floor"]["std"]:
        out.append(f"At {bud[-1]} steps it is at the floor (training images against the same test images "
                   f"score {fl:.3g} ± {d['floor']['std']:.2g} over seeds): a further gain at DDIM-50 is "
                   "beyond what this FD resolves, whatever the trend.")
    for a in d["arms"][1:]:
        p = d["paired_primary"][a]
        out.append(f"{lab[a]} lowers the primary endpoint: **{claim_verdict(p['lo'], p['hi'], 'lower')}** "
                   f"(Δ {interval(p)}).")
        m = [r for r in d["compute_matched"][a] if r["budget"] == d["steps"]]
        if m:
            r = m[0]
            out.append(f"At equal compute ({lab[a]} at {r['budget']} steps against the baseline at "
                       f"{r['baseline_budget']}, step cost {d['cost_ratio'][a]:.2f}×): "
                       f"**{claim_verdict(r['lo'], r['hi'], 'lower')}** (Δ {interval(r)}).")
    if "config_diff" in d:
        out.append(arms_sentence(d["config_diff"], lab))
    return " ".join(out)


def claims_summary(d: dict) -> dict:
    """What the claims table reads (:func:`errprop.findings.claim_row`): the primary endpoint of
    each arm against the baseline at the same steps, and against the baseline's longer run
    (``cm``, twice the steps) for the arms whose measured step cost makes that a fair match."""
    m, last, top = f"fd {d['primary']}", d["steps"], d["budgets"][-1]
    out = {"arms": {x: {m: d["per_budget"][last][x][d["primary"]]} for x in d["arms"]},
           "paired": {x: {m: d["paired_primary"][x]} for x in d["arms"][1:]}}
    out["arms"]["cm"] = {m: d["per_budget"][top]["baseline"][d["primary"]]}
    out["paired_against"] = {"cm": {x: {m: r} for x in d["arms"][1:] for r in d["compute_matched"][x]
                                    if r["budget"] == last and r["baseline_budget"] == top}}
    return out


def table(d: dict) -> list[list[str]]:
    """Budget × setting rows: each arm's FD (mean ± sd) and, at the arms' last budget, Δ with its
    interval; "–" where an arm did not train that long."""
    rows = [["steps", "setting", *(d["labels"][a] for a in d["arms"])]]
    for b in d["budgets"]:
        for st in d["settings"]:
            cells = []
            for a in d["arms"]:
                if a not in d["per_budget"][b]:
                    cells.append("–")
                    continue
                s = d["per_budget"][b][a][st]
                cell = f"{s['mean']:.3g} ± {s['std']:.2g}"
                if a != "baseline" and b == d["steps"]:
                    cell += f"<br>Δ {interval(d['paired'][f'{a} {st}'])}"
                cells.append(cell)
            rows.append([str(b), st, *cells])
    return rows


def plot(d: dict, path: Path) -> Path:
    """FD at DDIM-10 and DDIM-50 against training steps, every arm, with the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from errprop.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, st in zip(axes, ("ddim-10", "ddim-50")):
        for a in d["arms"]:
            bud = [b for b in d["budgets"] if a in d["per_budget"][b]]
            m = [d["per_budget"][b][a][st]["mean"] for b in bud]
            s = [d["per_budget"][b][a][st]["std"] for b in bud]
            ax.errorbar(bud, m, yerr=s, marker="o", capsize=3, label=d["labels"][a])
        ax.axhline(d["floor"]["mean"], color="k", ls=":", label="floor (train vs test images)")
        ax.set(xscale="log", yscale="log", xlabel="training steps", title=f"FD at {st}")
        ax.set_xticks(d["budgets"], [str(b) for b in d["budgets"]])
        ax.minorticks_off()  # log-axis minor labels (3×10², …) overprint the budgets
    axes[0].set_ylabel("FD (digits classifier features)")
    axes[1].legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=2000,
                   help="training steps of every arm (the baseline trains twice as many)")
    p.add_argument("--first", type=int, default=250, help="the first budget measured; then ×2 up to --steps")
    p.add_argument("--n", type=int, default=1000,
                   help="samples per FD (the floor uses as many training images)")
    p.add_argument("--only", default=None, help="comma-separated arm names (baseline is always run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "e8"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; numbers not meaningful")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="single-thread worker processes (default: one per core)")
    a = p.parse_args(argv)
    steps, first, n, seeds = (20, 10, 60, min(a.seeds, 2)) if a.quick else (a.steps, a.first, a.n, a.seeds)
    if steps % first or steps < first or (steps // first) & (steps // first - 1):
        p.error(f"--steps {steps} must be --first {first} times a power of 2")
    if seeds < 2:
        p.error("--seeds must be ≥ 2 (a paired interval needs two)")
    arms = objective_arms(D, a.only.split(",") if a.only else ARMS)
    # one folder for every --steps: a longer study trains the shorter one's runs on
    out = Path(a.out) / ("quick" if a.quick else f"n{n}")
    # The feature classifier is trained (once, cached) here, not by two workers at once.
    from errprop.metrics.features import load_or_train_classifier

    load_or_train_classifier("digits", None, progress=False)
    units = [(arm, s) for arm in arms for s in range(seeds)]
    # Seed by seed (an interrupted run has whole seeds to report with --seeds), longest first
    # within a seed (the last units to finish are then short ones)
    units.sort(key=lambda u: (u[1], -training_cost(_config(u[0], u[1], arm_steps(u[0], steps), first))))
    fd: dict = {}
    if a.jobs == 1:  # in this process (what the tests run)
        results = ((u, _unit(*u, steps, first, str(out), n)) for u in units)
    else:  # spawn: fork would copy torch's thread pools and locks
        pool = ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = [(u, pool.submit(_unit, *u, steps, first, str(out), n)) for u in units]
        results = ((u, f.result()) for u, f in futures)  # re-raises a worker's error
    for (arm, s), res in results:
        fd.setdefault(arm.name, {})[s] = {int(b): v for b, v in res.items()}
        print(f"[e8] {arm.label}, seed {s}: trained and scored", flush=True)
    if a.jobs > 1:
        pool.shutdown()
    torch.set_num_threads(1)
    base = [*DIGITS_MODEL, f"train.steps={steps}"]
    # keyed without train.steps: a step costs the same whatever the run's length, and a longer
    # study keeps the ratios its compute-matched pairs were chosen by
    ratio = cached(out / "step_costs.json", {"base": DIGITS_MODEL, "arms": [x.name for x in arms]},
                   lambda: step_costs(base, arms, steps=30 if a.quick else 200, skip=10 if a.quick else 60,
                                      repeats=1 if a.quick else 3))
    print("[e8] step cost over the baseline's: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    d = numbers(fd, arms, list(range(seeds)), steps, first, ratio)
    d["config_diff"] = arms_differences(base, arms)
    command = shlex.join(["python", "experiments/e8_digits.py", *(sys.argv[1:] if argv is None else argv)])
    docs = Path(a.docs)
    name = "e8_digits" + ("_quick" if a.quick else "")
    intro = (f"8×8 digits (1,437 training images, 360 test), U-Net with 16 channels (mult 1, 2), batch 128, "
             f"AdamW 5e-4, EMA 0.999; FD on errprop's digits classifier features, n = {n} samples "
             f"(sampling seed = training seed) against the test images; floor {d['floor']['mean']:.3g} ± "
             f"{d['floor']['std']:.2g}. Mean ± sd over {seeds} seeds; Δ = arm − baseline paired on seeds, "
             f"95 % t-interval, p_Holm over arms × settings. Plot: `{name}.png`.")
    write_result(docs, name, "E8 — 8×8 digits to a plateau: FD of SA-2, SA-2 uniform-t and EP against the "
                 "training budget", command, d, table(d), notes(d), intro)
    plot(d, docs / f"{name}.png")
    summary_ = claims_summary(d)
    cm = Arm("cm", f"baseline at {2 * steps} steps (compute-matched)", ["loss.name=simple",
                                                                         f"train.steps={2 * steps}"])
    settings = argparse.Namespace(base=[*DIGITS_MODEL, f"train.steps={steps}"], seeds=list(range(seeds)),
                                  budgets=d["budgets"], n=n, settings=SETTINGS)
    write_study_summary(docs / name, {"summary": summary_}, [*arms, cm], settings, command)
    print((docs / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
