"""``errprop compare RUN...``: the evaluations and diagnostics of several runs in one table and plots.

Reads what ``evaluate`` and ``diagnose`` wrote into each run (``eval/*.json``,
``diagnostics/*.json``) and the training log; computes nothing new, so every number in the
comparison traces back to a file of a run.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import from_dict, read_yaml
from .errors import ErrpropError
from .evaluate import plot_metric_vs_steps
from .report import Report


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
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines() if r.strip()] \
        if (run / "metrics.jsonl").is_file() else []
    evals = {p.stem: json.loads(p.read_text()) for p in sorted((run / "eval").glob("*.json"))}
    diags = {p.stem: json.loads(p.read_text()) for p in sorted((run / "diagnostics").glob("*.json"))}
    return {"run": str(run), "name": run.name, "objective": describe_loss(cfg),
            "steps": rows[-1]["step"] if rows else 0, "final_loss": rows[-1]["loss"] if rows else None,
            "train_seconds": rows[-1].get("time") if rows else None, "eval": evals, "diagnostics": diags}


def compare(runs: list[Path], out: Path) -> Path:
    """Write ``compare.json``, plots and ``report.md/.html`` for ``runs`` into ``out``."""
    runs = [Path(r) for r in runs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ErrpropError(f"compare: run folder names must differ (got {names})")
    summaries = [_summary(r) for r in runs]
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(summaries, indent=1))
    rep = Report("errprop comparison")
    rep.text("Every number below is read from the runs' own files; the JSON behind them is "
             "`compare.json`.")
    rep.table(["run", "objective", "train steps", "final loss", "train s"],
              [[s["name"], s["objective"], s["steps"], s["final_loss"], s["train_seconds"]]
               for s in summaries])
    metrics = sorted({m for s in summaries for m in s["eval"]})
    for metric in metrics:
        have = {s["name"]: s["eval"][metric] for s in summaries if metric in s["eval"]}
        settings = sorted({(r["sampler"], r["steps"]) for res in have.values() for r in res["results"]})
        rep.heading(f"{metric} against sampling steps")
        first = next(iter(have.values()))
        rep.text(f"n = {first['n']} samples per setting; floor = the metric between real data sets "
                 "at the same n.")
        headers = ["sampler", "steps", *have, "floor"]
        table = []
        for sampler, k in settings:
            vals = [next((r["value"] for r in res["results"] if (r["sampler"], r["steps"]) == (sampler, k)),
                         "–") for res in have.values()]
            table.append([sampler, k, *vals, first["floor"]])
        rep.table(headers, table)
        plot_metric_vs_steps(have, out / f"{metric}.png")
        rep.image(f"{metric}.png", f"{metric} vs steps")
    diags = sorted({d for s in summaries for d in s["diagnostics"]})
    if diags:
        from .diagnostics.plots import plot_steps
        from .diagnostics.run import curves

        for what in diags:
            have = {s["name"]: s["diagnostics"][what] for s in summaries if what in s["diagnostics"]}
            runs = {name: d["model"] for name, d in have.items()}
            oracle = next((d["oracle"] for d in have.values() if "oracle" in d), None)
            if oracle is not None:
                runs["exact denoiser"] = oracle
            lines, xlabel, ylabel = curves(what, runs)
            rep.heading(f"diagnostics: {what}")
            first = next(iter(have.values()))
            rep.text(f"{first.get('sampler', '')} sampler, {first.get('steps', '')} steps, "
                     f"n = {first.get('n', '')}; per-step arrays in each run's `diagnostics/{what}.json`.")
            plot_steps(lines, out / f"diag-{what}.png", xlabel=xlabel, ylabel=ylabel, title=what)
            rep.image(f"diag-{what}.png", what)
    return rep.write(out)
