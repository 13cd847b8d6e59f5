"""The result files of a study measured at several training budgets (E4) and with several solvers (E6).

From a finished :func:`errprop.study.run_study` with ``Settings.budgets`` it writes, through
:func:`errprop.results.write_result` (so every number carries its command, commit, machine and date):

- ``e4_budget_<data>``: the primary endpoint at every budget (each arm against the baseline, paired
  over seeds, Holm-adjusted over arms × budgets), how close the baseline has come to the exact
  denoiser, the compute-matched comparisons (an arm at budget b against the baseline at the smallest
  budget that cost at least as much, by the measured cost ratio), and the split of each arm's error
  into its discretization part (the exact denoiser on the same grid) and its learned part;
- ``e6_solvers_<data>``: at the last budget, every solver and step count, each arm against the
  baseline (Holm-adjusted over arms × solvers × steps), with the exact denoiser's error beside it;
- ``e4_budget_<data>/study.json``: the study's settings, arms and summaries (no per-seed raw data),
  what the claims table (:func:`errprop.findings.claim_row`) reads.

Every sentence of the notes is computed from those numbers (:func:`errprop.findings.verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import config as config_mod  # noqa: E402
from .config_diff import arms_differences, arms_sentence  # noqa: E402
from .findings import interval  # noqa: E402
from .findings import verdict as claim_verdict  # noqa: E402
from .plots import save_figure  # noqa: E402
from .results import write_result, write_study_summary  # noqa: E402
from .stats import holm_adjust, paired, summary  # noqa: E402
from .study import Arm, Settings, scalar_metrics  # noqa: E402

#: The primary endpoints, declared before the runs (issue 19 §4, issue 21 §4).
PRIMARY = "xent_median ddim-10"
SOLVER_PRIMARY_STEPS = 10
#: How close (nats, median excess cross-entropy at DDIM-50) the baseline must come to the exact
#: denoiser to count as converged.
CONVERGED = 0.2


def _ms(s: dict) -> str:
    return f"{s['mean']:.3g} ± {s['std']:.2g}"


def _per_seed(results: dict, arm: str, seeds: Sequence[int]) -> list[dict[str, float]]:
    return [scalar_metrics(results[arm][s]) for s in seeds]


def budget_numbers(study: dict, arms: Sequence[Arm], settings: Settings,
                   cost_ratio: dict[str, float]) -> dict:
    """Every number of the E4 and E6 result files, from a study with budgets and the measured cost
    of each arm's training step relative to the baseline's (:func:`errprop.study.step_costs`)."""
    seeds = settings.seeds
    steps = config_mod.load(overrides=settings.base).train.steps
    budgets = [*settings.budgets, steps]
    at = {**study["results_at"], steps: study["results"]}
    rows = {b: {a.name: _per_seed(at[b], a.name, seeds) for a in arms} for b in budgets}
    exact = _per_seed(study["results"], "exact", seeds)
    name = [a.name for a in arms]
    fine = f"ddim-{max(settings.sampling_steps)}"  # where the baseline's convergence is judged

    def values(b, arm, metric):
        return [r[metric] for r in rows[b][arm]]

    # E4: the primary endpoint at every budget; the family is every arm × budget.
    e4 = holm_adjust({(a, b): paired(values(b, a, PRIMARY), values(b, "baseline", PRIMARY))
                     for a in name[1:] for b in budgets})
    per_budget = {b: {"arms": {a: summary(values(b, a, PRIMARY)) for a in name},
                      "paired": {a: e4[(a, b)] for a in name[1:]},
                      # convergence: the baseline's excess over the exact denoiser, finest DDIM
                      "gap_fine": {m: summary([r[f"{m} {fine}"] - e[f"{m} {fine}"]
                                            for r, e in zip(rows[b]["baseline"], exact)])
                                for m in ("xent_median", "xent")}}
                  for b in budgets}
    ratio = dict(cost_ratio)
    matched = {}
    for a in name[1:]:
        out = []
        for b in budgets:
            need = ratio.get(a, math.nan) * b
            fair = [c for c in budgets if c >= need]
            if not fair:
                continue
            c = fair[0]
            out.append({"budget": b, "baseline_budget": c,
                        **paired(values(b, a, PRIMARY), values(c, "baseline", PRIMARY))})
        matched[a] = out
    # The split at the last budget: discretization (the exact denoiser) and learned (the excess).
    split = {a: {} for a in name}
    for a in name:
        for s in settings.samplers:
            for k in settings.sampling_steps:
                m = f"xent_median {s}-{k}"
                split[a][f"{s}-{k}"] = {
                    "total": summary(values(steps, a, m)),
                    "discretization": summary([e[m] for e in exact]),
                    "learned": summary([r[m] - e[m] for r, e in zip(rows[steps][a], exact)]),
                    # the model against the exact denoiser on the same grid, paired by sampling seed
                    "learned_ci": paired(values(steps, a, m), [e[m] for e in exact])}
    # E6: at the last budget, every solver × steps; the family is arms × solvers × steps.
    e6 = holm_adjust({(a, s, k): paired(values(steps, a, f"xent_median {s}-{k}"),
                                       values(steps, "baseline", f"xent_median {s}-{k}"))
                     for a in name[1:] for s in settings.samplers for k in settings.sampling_steps})
    return {"primary": PRIMARY, "fine": fine, "budgets": budgets, "steps": steps, "arms": name,
            "labels": {a.name: a.label for a in arms}, "seeds": seeds, "per_budget": per_budget,
            "cost_ratio": ratio, "compute_matched": matched, "split": split,
            "exact": {f"{s}-{k}": summary([e[f"xent_median {s}-{k}"] for e in exact])
                      for s in settings.samplers for k in settings.sampling_steps},
            "solvers": {f"{a} {s}-{k}": v for (a, s, k), v in e6.items()},
            "samplers": list(settings.samplers), "sampling_steps": list(settings.sampling_steps)}


def _verdict_line(label: str, p: dict, where: str) -> str:
    word = claim_verdict(p["lo"], p["hi"], "lower")
    return f"{label} lowers it {where}: **{word}** (Δ {interval(p)})."


def e4_notes(d: dict) -> str:
    """The E4 findings, each sentence computed from ``d``."""
    last, first = d["budgets"][-1], d["budgets"][0]
    lab, pb = d["labels"], d["per_budget"]
    lines = [f"Primary endpoint (declared before the run): {d['primary']}, nats, at the last budget "
             f"({last} steps); {len(d['seeds'])} paired seeds; p_Holm over {len(d['arms']) - 1} arms × "
             f"{len(d['budgets'])} budgets. Verdict rule: errprop.findings.verdict."]
    for a in d["arms"][1:]:
        lines.append("- " + _verdict_line(lab[a], pb[last]["paired"][a], f"at {last} steps")
                     + f" At {first} steps: Δ {interval(pb[first]['paired'][a])}.")
    conv = [b for b in d["budgets"] if pb[b]["gap_fine"]["xent_median"]["mean"] <= CONVERGED]
    g = [f"{pb[b]['gap_fine']['xent_median']['mean']:.3g}" for b in d["budgets"]]
    lines.append(f"- Convergence: the baseline's median excess cross-entropy at {d['fine']} above the exact "
                 f"denoiser's is {', '.join(g)} nats at {', '.join(map(str, d['budgets']))} steps; "
                 + (f"within {CONVERGED} nats from {conv[0]} steps." if conv else
                    f"not within {CONVERGED} nats by {last} steps."))
    for a in d["arms"][1:]:
        m = d["compute_matched"].get(a)
        if m:
            x = m[-1]
            lines.append(f"- Compute-matched: {lab[a]} (a step costs {d['cost_ratio'][a]:.2f}× the "
                         "baseline's, measured A B A B on this machine) at"
                         f" {x['budget']} steps against the baseline at "
                         f"{x['baseline_budget']}: Δ {interval(x)}, "
                         f"{claim_verdict(x['lo'], x['hi'], 'lower')}.")
    sp = d["split"]
    k, fine = "ddim-10", d["fine"]
    lines.append(f"- Split at {last} steps, DDIM-10 (median, nats): discretization (exact denoiser) "
                 f"{sp['baseline'][k]['discretization']['mean']:.3g}; learned part "
                 + ", ".join(f"{lab[a]} {sp[a][k]['learned']['mean']:+.3g}" for a in d["arms"]) + ".")
    side = {"lower": "below the exact denoiser", "higher": "above the exact denoiser",
            "no difference": "not different from the exact denoiser"}
    for a in d["arms"]:
        few, many = sp[a][k]["learned_ci"], sp[a][fine]["learned_ci"]
        text = (f"- {lab[a]} against the exact denoiser on the same grid: at DDIM-10 "
                f"{side[few['verdict']]} ({few['mean']:+.3g} [{few['lo']:+.3g}, {few['hi']:+.3g}]), at "
                f"{fine.upper()} {side[many['verdict']]} ({many['mean']:+.3g} [{many['lo']:+.3g}, "
                f"{many['hi']:+.3g}])")
        if few["verdict"] == "lower" and many["verdict"] == "higher":
            text += (": it beats the exact denoiser at few steps and loses to it at many — its few-step "
                     "gain corrects the sampler's discretization error rather than lowering the learned "
                     "error")
        lines.append(text + ".")
    return "\n".join(lines)


def e4_table(d: dict) -> list[list[str]]:
    lab, pb = d["labels"], d["per_budget"]
    head = ["training steps", f"baseline: {d['primary']}", f"baseline − exact at {d['fine']} (median)"]
    head += [f"Δ {lab[a]} (95 % CI; p_Holm)" for a in d["arms"][1:]]
    rows = [head]
    for b in d["budgets"]:
        rows.append([str(b), _ms(pb[b]["arms"]["baseline"]), _ms(pb[b]["gap_fine"]["xent_median"])]
                    + [interval(pb[b]["paired"][a]) for a in d["arms"][1:]])
    ex = d["exact"]["ddim-10"]
    rows.append(["exact denoiser", _ms(ex), "0"] + ["—"] * (len(d["arms"]) - 1))
    return rows


def e6_table(d: dict) -> list[list[str]]:
    lab = d["labels"]
    rows = [["solver, NFE", "exact denoiser (discretization)", "baseline"]
            + [f"Δ {lab[a]} (95 % CI; p_Holm)" for a in d["arms"][1:]]]
    last = d["steps"]
    for s in d["samplers"]:
        for k in d["sampling_steps"]:
            key = f"{s}-{k}"
            rows.append([key, _ms(d["exact"][key]), _ms(d["split"]["baseline"][key]["total"])]
                        + [interval(d["solvers"][f"{a} {key}"]) for a in d["arms"][1:]])
    rows.append([f"(all at {last} training steps)"] + [""] * (len(rows[0]) - 1))
    return rows


def e6_notes(d: dict) -> str:
    lab, k = d["labels"], SOLVER_PRIMARY_STEPS
    lines = [f"Primary endpoint (declared before the run): median excess cross-entropy (nats) at {k} "
             f"NFE for each solver, at the last budget ({d['steps']} steps); {len(d['seeds'])} paired "
             f"seeds; p_Holm over {len(d['arms']) - 1} arms × {len(d['samplers'])} solvers × "
             f"{len(d['sampling_steps'])} step counts."]
    for s in d["samplers"]:
        ex = d["exact"][f"{s}-{k}"]["mean"]
        base = d["split"]["baseline"][f"{s}-{k}"]["total"]["mean"]
        lines.append(f"- {s}-{k}: exact denoiser {ex:.3g}, baseline {base:.3g}; "
                     + "; ".join(f"{lab[a]} **{claim_verdict(p['lo'], p['hi'], 'lower')}** "
                                 f"(Δ {p['mean']:+.3g} [{p['lo']:+.3g}, {p['hi']:+.3g}])"
                                 for a in d["arms"][1:] for p in [d["solvers"][f"{a} {s}-{k}"]]) + ".")
    return "\n".join(lines)


def plot_budget(d: dict, path: Path) -> Path:
    """Left: the primary endpoint against the training budget per arm (band = min–max over seeds is
    not kept: ± sd), the exact denoiser dashed. Right: Δ arm − baseline with 95 % intervals."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.9))
    b = np.array(d["budgets"])
    for i, a in enumerate(d["arms"]):
        m = np.array([d["per_budget"][x]["arms"][a]["mean"] for x in d["budgets"]])
        s = np.array([d["per_budget"][x]["arms"][a]["std"] for x in d["budgets"]])
        ax.plot(b, m, "o-", color=f"C{i}", label=d["labels"][a], ms=3)
        ax.fill_between(b, m - s, m + s, color=f"C{i}", alpha=0.15, lw=0)
        if i:
            p = [d["per_budget"][x]["paired"][a] for x in d["budgets"]]
            off = b * (1 + 0.04 * (i - len(d["arms"]) / 2))
            mean = np.array([q["mean"] for q in p])
            err = np.array([[q["mean"] - q["lo"] for q in p], [q["hi"] - q["mean"] for q in p]])
            bx.errorbar(off, mean, yerr=np.nan_to_num(err), fmt="o", color=f"C{i}", capsize=3,
                        label=d["labels"][a])
    ax.axhline(d["exact"]["ddim-10"]["mean"], color="k", ls="--", label="exact denoiser")
    bx.axhline(0, color="k", lw=0.8)
    for x in (ax, bx):
        x.set_xscale("log")
        x.set_xticks(b, [str(v) for v in b])
        x.set_xlabel("training steps")
        x.grid(alpha=0.3)
    ax.set_ylabel(f"{d['primary']} (nats)")
    bx.set_ylabel("Δ arm − baseline (< 0 is better)")
    ax.legend(fontsize=8)
    ax.set_title(f"mean ± sd over {len(d['seeds'])} seeds")
    bx.set_title("paired differences, 95 % t-intervals")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_budget_results(out: Path, docs: Path, study: dict, arms: Sequence[Arm], settings: Settings,
                         data: str, label: str, command: str, cost_ratio: dict[str, float]) -> list[Path]:
    """Write the E4 and E6 result files of a finished budget study to ``docs``; returns their paths.
    ``cost_ratio``: each arm's step cost over the baseline's, measured on this machine."""
    docs = Path(docs)
    d = budget_numbers(study, arms, settings, cost_ratio)
    d["config_diff"] = arms_differences(settings.base, arms)
    same = arms_sentence(d["config_diff"], d["labels"])
    d["data"] = label
    plot = plot_budget(d, docs / f"e4_budget_{data}.png")
    write_result(docs, f"e4_budget_{data}", f"E4 — the objectives against the training budget, {label}",
                      command, d, e4_table(d),
                      e4_notes(d) + f"\n\n{same}\n\n![E4]({plot.name})")
    write_result(docs, f"e6_solvers_{data}", f"E6 — the objectives under better solvers, {label}",
                 command, {k: d[k] for k in ("primary", "steps", "arms", "labels", "seeds", "exact",
                                             "solvers", "samplers", "sampling_steps")},
                 e6_table(d), e6_notes(d) + f"\n\n{same}")
    study_json = write_study_summary(docs / f"e4_budget_{data}", study, arms, settings, command)
    return [docs / f"e4_budget_{data}.md", docs / f"e6_solvers_{data}.md", plot, study_json]
