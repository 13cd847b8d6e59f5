"""``errprop compare RUN...``: the evaluations and diagnostics of several runs in one table and plots.

Reads what ``evaluate`` and ``diagnose`` wrote into each run (``eval/*.json``,
``diagnostics/*.json``) and the training log; computes nothing new, so every number in the
comparison traces back to a file of a run.

Like with like, or said plainly: the report opens with a list of what differs between the runs
beyond their objective (training budget, data, process, network, the loss's other settings — the
settings a training uses, as :mod:`errprop.config_diff` defines them; evaluation n, seed, grid or
training step) and of runs that have no evaluation. Where a run has several results for a metric
(other n, seeds or grids), the one shown is the latest training step, then the largest n, then the
most settings; the table says which file it is. Training loss is shown as the base ε-loss part
(``loss_simple``), which is comparable between objectives with the same weighting — the
objective's own loss includes SA's or EP's extra term and is not. Wall-clock training time is not
shown: it restarts on resume and follows machine load (``benchmarks/`` measures cost).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import from_dict, read_yaml
from .config_diff import differing, is_objective
from .errors import ErrpropError
from .evaluate import LABELS, plot_metric_vs_steps, read_results
from .files import write_json
from .report import Report
from .samplers import nfe
from .train import read_metrics


def describe_loss(cfg) -> str:
    """A short name of a run's objective, e.g. ``SA-2 (λ=1)`` or ``EP (L=5, λ=1)``."""
    lc = cfg.loss
    if lc.name == "sa":
        return f"SA-{lc.sa.K} (λ={lc.sa.lam:g})"
    if lc.name == "ep":
        return f"EP (L={lc.ep.L}, λ={lc.ep.lam:g})"
    ip = f", IP γ={lc.input_perturbation:g}" if lc.input_perturbation else ""
    return f"baseline ({lc.weighting or cfg.model.parameterization}{ip})"


def _summary(run: Path) -> dict:
    if not (run / "config.yaml").is_file():
        raise ErrpropError(f"{run} is not a run folder (no config.yaml)")
    cfg = from_dict(read_yaml(run / "config.yaml"))
    rows = read_metrics(run / "metrics.jsonl")
    diags = {}
    for p in sorted((run / "diagnostics").glob("*.json")):
        try:
            diags[p.stem] = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ErrpropError(f"{p} is not valid JSON (cut off?); delete it and rerun diagnose") \
                from None
    last = rows[-1] if rows else {}
    return {"run": str(run), "name": run.name, "config": cfg.to_dict(), "objective": describe_loss(cfg),
            "weighting": cfg.loss.weighting or cfg.model.parameterization,
            "steps": last.get("step", 0), "train_steps": cfg.train.steps,
            "final_loss": last.get("loss"), "final_loss_simple": last.get("loss_simple"),
            "eval": read_results(run), "diagnostics": diags}


def pick(results: list[dict], metric: str, run_step: int) -> dict | None:
    """The result of ``metric`` shown for a run (see the module docstring); None if there is none."""
    have = [r for r in results if r["metric"] == metric]
    if not have:
        return None
    return max(have, key=lambda r: (r.get("train_step", -1) == run_step, r.get("train_step", -1),
                                    r["n"], len(r["results"]), -r.get("seed", 0)))


#: Config sections in the order ``compare`` reports their differences, and what to call them.
SECTIONS = (("data", "data"), ("process", "process"), ("model", "network"), ("train", "training settings"),
            ("loss", "loss settings besides the objective"))


def _differences(summaries: list[dict]) -> list[str]:
    """What differs between the runs beyond the objective, one sentence each."""
    notes = []
    # The settings each training used (config_diff.effective: bookkeeping such as seeds, devices,
    # logging and threads left out), apart from the objective, which is what is being compared.
    diff = differing({s["name"]: from_dict(s["config"]) for s in summaries})
    for section, what in SECTIONS:
        differ = {f: v for f, v in diff.items() if f.startswith(f"{section}.") and not is_objective(f)}
        if differ:
            detail = "; ".join(f"{f.split('.', 1)[1]}: " + ", ".join(f"{n} {v}" for n, v in values.items())
                               for f, values in differ.items())
            notes.append(f"The runs differ in {what} ({detail}): differences in quality include it.")
    done = {s["name"]: s["steps"] for s in summaries}
    if len(set(done.values())) > 1:
        notes.append("The runs were trained for different numbers of steps ("
                     + ", ".join(f"{n} {k}" for n, k in done.items()) + ").")
    unfinished = [s["name"] for s in summaries if s["steps"] < s["train_steps"]]
    if unfinished:
        notes.append(f"Not trained to their train.steps (interrupted?): {', '.join(unfinished)}.")
    if len({s["weighting"] for s in summaries}) > 1:
        notes.append("The runs use different loss weightings, so even their base losses "
                     "(loss_simple) are not comparable.")
    missing = [s["name"] for s in summaries if not s["eval"]]
    if missing:
        notes.append(f"No evaluation in: {', '.join(missing)} (run `errprop evaluate` on them); "
                     "they are missing from the quality tables.")
    return notes


def compare(runs: list[Path], out: Path) -> Path:
    """Write ``compare.json``, plots and ``report.md/.html`` for ``runs`` into ``out``."""
    runs = [Path(r) for r in runs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ErrpropError(f"compare: run folder names must differ (got {names})")
    summaries = [_summary(r) for r in runs]
    notes = _differences(summaries)
    rep = Report("errprop comparison")
    rep.text("Every number below is read from the runs' own files; the JSON behind them is "
             "`compare.json`.")
    rep.table(["run", "objective", "trained steps", "final base loss (loss_simple)",
               "final objective loss (own objective)"],
              [[s["name"], s["objective"], s["steps"], s["final_loss_simple"], s["final_loss"]]
               for s in summaries])
    shown: dict = {}
    metrics = sorted({r["metric"] for s in summaries for r in s["eval"]})
    for metric in metrics:
        have = {s["name"]: r for s in summaries if (r := pick(s["eval"], metric, s["steps"]))}
        shown[metric] = {name: r["file"] for name, r in have.items()}
        lacking = [s["name"] for s in summaries if s["name"] not in have and s["eval"]]
        if lacking:
            notes.append(f"No {metric} result in: {', '.join(lacking)}.")
        for field, what in (("n", "sample counts n"), ("seed", "sample seeds"), ("grid", "grids"),
                            ("grid_options", "grid options")):
            if len({json.dumps(r.get(field)) for r in have.values()}) > 1:
                notes.append(f"{metric}: the runs were scored with different {what} ("
                             + ", ".join(f"{n} {r.get(field)}" for n, r in have.items()) + ").")
        stale = [f"{s['name']} (scored at step {have[s['name']].get('train_step')}, trained to {s['steps']})"
                 for s in summaries
                 if s["name"] in have and have[s["name"]].get("train_step", s["steps"]) != s["steps"]]
        if stale:
            notes.append(f"{metric}: scored at another checkpoint than the run's last: {', '.join(stale)}.")
        rep.heading(f"{LABELS.get(metric, metric)} against cost (network evaluations)")
        rep.text("Shown per run: " + "; ".join(f"{n}: `eval/{r['file']}` (n = {r['n']}, seed "
                                               f"{r.get('seed')}, train step {r.get('train_step')})"
                                               for n, r in have.items())
                 + ". Floor = the metric between real data sets at the same n; * marks values at or "
                   "below their run's floor.")
        settings = sorted({(r["sampler"], r["steps"]) for res in have.values() for r in res["results"]})
        table = []
        for sampler, k in settings:
            cells = []
            for res in have.values():
                row = next((r for r in res["results"] if (r["sampler"], r["steps"]) == (sampler, k)),
                           None)
                mark = " *" if row is not None and row.get("below_floor") else ""
                cells.append("–" if row is None else f"{row['value']:.4g}{mark}")
            table.append([sampler, k, nfe(sampler, k), *cells])
        rep.table(["sampler", "steps", "NFE", *have], table)
        rep.table(["run", "floor", "floor n"], [[n, r["floor"], r["floor_n"]] for n, r in have.items()])
        plot_metric_vs_steps(have, out / f"{metric}.png")
        rep.image(f"{metric}.png", f"{metric} vs NFE")
    diags = sorted({d for s in summaries for d in s["diagnostics"]})
    if diags:
        from .diagnostics.plots import plot_steps
        from .diagnostics.run import curves

        for what in diags:
            have = {s["name"]: s["diagnostics"][what] for s in summaries if what in s["diagnostics"]}
            lines = {name: d["model"] for name, d in have.items()}
            oracle = next((d["oracle"] for d in have.values() if "oracle" in d), None)
            if oracle is not None:
                lines["exact denoiser"] = oracle
            curves_, xlabel, ylabel = curves(what, lines)
            rep.heading(f"diagnostics: {what}")
            measured = {json.dumps([d.get("sampler"), d.get("steps"), d.get("n")]) for d in have.values()}
            if len(measured) > 1:
                notes.append(f"diagnostics {what}: the runs were measured with different sampler, "
                             "steps or n; their curves are not like for like.")
            first = next(iter(have.values()))
            rep.text(f"{first.get('sampler', '')} sampler, {first.get('steps', '')} steps, "
                     f"n = {first.get('n', '')}; per-step arrays in each run's `diagnostics/{what}.json`.")
            plot_steps(curves_, out / f"diag-{what}.png", xlabel=xlabel, ylabel=ylabel, title=what)
            rep.image(f"diag-{what}.png", what)
    if notes:
        rep.blocks.insert(0, ("h2", "Read this first: what is not like for like"))
        for i, note in enumerate(notes):
            rep.blocks.insert(1 + i, ("p", note))
        for note in notes:
            print(f"compare: note: {note}", file=sys.stderr)
    write_json(out / "compare.json", {"runs": summaries, "shown": shown, "notes": notes})
    return rep.write(out)
