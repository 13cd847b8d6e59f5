"""E5 — does SA's or EP's effect change with the data's dimension? Exact answers at any D.

Random mixtures of 8 Gaussians at D = 2, 8, 32, 128, 512 (the oracle is exact at any D), the same
network, budget and seeds for every arm at every D; each arm against the baseline by paired
differences over seeds. Primary endpoint, declared before the run: the median excess
cross-entropy at 10 DDIM steps; Holm-adjusted over arms × dimensions. The excess cross-entropy of a
D-dimensional density grows with D, so Δ is also given per dimension (Δ / D).

    python experiments/e5_dimension.py --seeds 5 --steps 4000
    python experiments/e5_dimension.py --dims 2,8 --seeds 2 --quick   # smoke run
    python experiments/e5_dimension.py --dims 128,512 --width 512      # a wider network for large D

Resumable (each D is a cached study under ``<out>/random<D>/``). Writes the result files
``docs/results/e5_dimension.*`` and each D's summary under ``docs/results/e5_dimension/`` (with
``--width W`` other than the mixtures' 128: ``e5_dimension_wW``, its runs under ``random<D>_wW/``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from errprop.budget_report import CONVERGED  # noqa: E402
from errprop.config_diff import arms_differences, arms_sentence  # noqa: E402
from errprop.demo import default_jobs  # noqa: E402
from errprop.errors import ErrpropError  # noqa: E402
from errprop.findings import interval, verdict  # noqa: E402
from errprop.plots import save_figure  # noqa: E402
from errprop.results import write_result, write_study_summary  # noqa: E402
from errprop.stats import holm_adjust, summary  # noqa: E402
from errprop.study import (  # noqa: E402
    MIXTURE_WIDTH,
    Settings,
    mixture,
    mixture_model,
    objective_arms,
    run_study,
    scalar_metrics,
    sizes,
)

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["sa2", "sa2_uniform", "sa3", "ep"]
PRIMARY = "xent_median ddim-10"


def learned_gap(study: dict, seeds: list[int], k: int) -> dict:
    """The baseline's excess over the exact denoiser at ``k`` DDIM steps (E4 takes 50, where the
    discretization part is small), mean ± sd over seeds: the learned part of its error, E4's
    convergence test."""
    res, m = study["results"], f"xent_median ddim-{k}"
    return summary([scalar_metrics(res["baseline"][s])[m] - scalar_metrics(res["exact"][s])[m]
                    for s in seeds])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", default="2,8,32,128,512", help="comma-separated dimensions D")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=4000, help="training steps of every arm at every D")
    p.add_argument("--width", type=int, default=MIXTURE_WIDTH,
                   help=f"the MLP's width at every D (the mixtures' network: {MIXTURE_WIDTH}); a study of "
                        "another width is a result of its own")
    p.add_argument("--only", default=None, help="comma-separated arm names (baseline is always run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "e5"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; numbers not meaningful")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="single-thread worker processes (default: one per core)")
    a = p.parse_args()
    try:
        dims = [int(d) for d in a.dims.split(",")]
        if min(dims) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--dims: expected comma-separated positive integers, got {a.dims!r}")
    try:
        model, tag = mixture_model(a.width)
    except ErrpropError as e:
        p.error(f"--width: {e}")
    steps = 100 if a.quick else a.steps
    name = f"e5_dimension{tag}"
    command = shlex.join(["python", "experiments/e5_dimension.py", *sys.argv[1:]])
    docs = Path(a.out) / "quick" if a.quick else Path(a.docs)
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    studies = {}
    for d in dims:
        data, dim, label = mixture(f"random{d}")
        arms = objective_arms(dim, a.only.split(",") if a.only else ARMS)
        settings = Settings(
            base=data + model + [f"train.steps={steps}", f"train.ckpt_every={steps}"],
            seeds=list(range(a.seeds)), samplers=["ddim"], **sizes(a.quick))
        print(f"[e5] D = {d}: {label}", flush=True)
        studies[d] = run_study(Path(a.out) / f"random{d}{tag}", arms, settings, progress=False, jobs=a.jobs)
        write_study_summary(docs / name / f"random{d}", studies[d], arms, settings, command)
    names = [x.name for x in arms]
    labels = {x.name: x.label for x in arms} | ({"ep": "EP (L=5, λ=D)"} if "ep" in names else {})
    # The family: every arm × every D on the primary endpoint.
    tests = holm_adjust({(n, d): dict(studies[d]["summary"]["paired"][n][PRIMARY])
                         for n in names[1:] for d in dims})
    fine = max(sizes(a.quick)["sampling_steps"])
    gaps = {d: learned_gap(studies[d], list(range(a.seeds)), fine) for d in dims}
    converged = [d for d in dims if gaps[d]["mean"] <= CONVERGED]
    short = [d for d in dims if d not in converged]
    rows = [["D", "exact denoiser", "baseline", f"baseline − exact, DDIM-{fine}"]
            + [f"Δ {labels[n]} (95 % CI; p_Holm)" for n in names[1:]]
            + [f"Δ/D {labels[n]}" for n in names[1:]]]
    for d in dims:
        s = studies[d]["summary"]
        base = s["arms"]["baseline"][PRIMARY]
        rows.append([str(d), f"{s['exact'][PRIMARY]['mean']:.3g}", f"{base['mean']:.3g} ± {base['std']:.2g}",
                     f"{gaps[d]['mean']:.3g} ± {gaps[d]['std']:.2g}"]
                    + [interval(tests[(n, d)]) for n in names[1:]]
                    + [f"{tests[(n, d)]['mean'] / d:+.3g}" for n in names[1:]])
    notes = [f"Primary endpoint (declared before the run): {PRIMARY} (nats); {a.seeds} paired seeds; "
             f"{steps} training steps for every arm at every D (MLP of width {a.width}, depth 2); "
             f"p_Holm over {len(names) - 1} arms × {len(dims)} dimensions. Verdict rule: "
             "errprop.findings.verdict (does the arm lower it?).",
             f"Converged (E4's test: the baseline within {CONVERGED} nats of the exact denoiser at "
             f"DDIM-{fine}) at D = {', '.join(map(str, converged)) or 'none'}; "
             f"not at D = {', '.join(map(str, short)) or 'none'} "
             f"after {steps} steps: there the arms are compared short of convergence."]
    # the arms at the largest D (they differ across D only in EP's λ = D)
    diffs = arms_differences(settings.base, arms)
    for n in names[1:]:
        words = [verdict(tests[(n, d)]["lo"], tests[(n, d)]["hi"], "lower") for d in dims]
        signs = [np.sign(tests[(n, d)]["mean"]) for d in dims]
        flips = [f"{dims[i]}→{dims[i + 1]}" for i in range(len(dims) - 1) if signs[i] != signs[i + 1]]
        notes.append(f"- {labels[n]}: " + ", ".join(f"D={d} **{w}**" for d, w in zip(dims, words))
                     + (f"; the mean difference changes sign at D {', '.join(flips)}." if flips else
                        "; the mean difference keeps its sign across D."))
    notes.append(f"\nAt D = {dims[-1]}: {arms_sentence(diffs, labels)}")
    fig, ax = plt.subplots(figsize=(7, 3.9))
    for i, n in enumerate(names[1:]):
        t = [tests[(n, d)] for d in dims]
        x = np.array(dims, float) * (1 + 0.05 * (i - (len(names) - 2) / 2))
        mean = np.array([q["mean"] / d for q, d in zip(t, dims)])
        err = np.array([[(q["mean"] - q["lo"]) / d for q, d in zip(t, dims)],
                        [(q["hi"] - q["mean"]) / d for q, d in zip(t, dims)]])
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o-", color=f"C{i + 1}", capsize=3,
                    label=labels[n])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("data dimension D")
    ax.set_ylabel("Δ / D, arm − baseline (nats per dim.)")
    ax.set_title(f"{PRIMARY}: paired differences over {a.seeds} seeds, 95 % intervals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plot = save_figure(fig, docs / f"{name}.png", dpi=110)
    write_result(docs, name, "E5 — the objectives against the data's dimension (random mixtures"
                 + (f", MLP width {a.width})" if tag else ")"), command,
                 {"primary": PRIMARY, "dims": dims, "steps": steps, "seeds": list(range(a.seeds)),
                           "arms": names, "labels": labels, "width": a.width,
                           "paired": {f"{n} D={d}": t for (n, d), t in tests.items()},
                           "baseline": {str(d): studies[d]["summary"]["arms"]["baseline"][PRIMARY]
                                        for d in dims},
                           "exact": {str(d): studies[d]["summary"]["exact"][PRIMARY] for d in dims},
                           f"learned_gap_ddim{fine}": {str(d): gaps[d] for d in dims},
                           "converged_within": CONVERGED, "config_diff": diffs},
                 rows, "\n".join(notes) + f"\n\n![E5]({plot.name})")
    print(docs / f"{name}.md")


if __name__ == "__main__":
    main()
