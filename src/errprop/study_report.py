"""The report of a study (:mod:`errprop.study`): verdict, tables with spread and paired intervals,
and plots with bands over seeds, the exact denoiser and the floor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import config as config_mod  # noqa: E402
from .config_diff import describe, differences, objective_only  # noqa: E402
from .plots import save_figure  # noqa: E402
from .provenance import provenance  # noqa: E402
from .report import Report  # noqa: E402
from .samplers import nfe  # noqa: E402
from .study import QUALITY, Arm, Settings, verdict  # noqa: E402


def _fmt_ms(s: dict) -> str:
    return f"{s['mean']:.3g} ± {s['std']:.2g}"


def _fmt_ci(p: dict) -> str:
    if not math.isfinite(p["lo"]):
        return f"{p['mean']:+.3g}"
    mark = {"lower": " ↓", "higher": " ↑", "no difference": ""}[p["verdict"]]
    holm = f" p_Holm {p['p_holm']:.2g}" if "p_holm" in p else ""
    return f"{p['mean']:+.3g} [{p['lo']:+.3g}, {p['hi']:+.3g}]{mark}{holm}"


def _band(ax, x, rows: np.ndarray, label: str, color: str, style: str = "-") -> None:
    keep = ~np.all(np.isnan(rows), axis=0)  # a step without a value (the last modular KL) is left out
    x, rows = np.asarray(x)[keep], rows[:, keep]
    mean = np.nanmean(rows, axis=0)
    ax.plot(x, mean, style, color=color, label=label, marker="o", ms=3)
    if rows.shape[0] > 1:
        ax.fill_between(x, np.nanmin(rows, axis=0), np.nanmax(rows, axis=0), color=color, alpha=0.18,
                        lw=0)


def _robust_ylim(ax, values: Sequence[float], floor_at_zero: bool = False) -> None:
    """y limits from the 2nd–98th percentile of what is drawn, so a few outliers do not flatten
    every curve (they are clipped at the frame, not hidden: the tables hold them)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return
    lo, hi = np.percentile(v, [2, 98])
    pad = 0.08 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(min(lo - pad, 0) if floor_at_zero else lo - pad, hi + pad)


def plot_quality(res: dict, arms: Sequence[Arm], settings: Settings, metric: str, path: Path) -> Path:
    """One panel per sampler: the metric against cost (network evaluations, NFE), mean over seeds
    with a min–max band, the exact denoiser dashed and the data-vs-data floor dotted."""
    seeds, ks = settings.seeds, settings.sampling_steps
    fig, axes = plt.subplots(1, len(settings.samplers), figsize=(5.2 * len(settings.samplers), 3.8),
                             squeeze=False)
    for ax, sampler in zip(axes[0], settings.samplers):
        drawn, cost = [], [nfe(sampler, k) for k in ks]
        for i, a in enumerate(arms):
            rows = np.array([[res[a.name][s]["quality"][f"{sampler}-{k}"][metric] for k in ks]
                             for s in seeds])
            _band(ax, cost, rows, a.label, f"C{i}")
            drawn += rows.ravel().tolist()
        ex = np.array([[res["exact"][s]["quality"][f"{sampler}-{k}"][metric] for k in ks] for s in seeds])
        _band(ax, cost, ex, "exact denoiser", "k", "--")
        floor = float(np.mean([res["floor"][s][metric] for s in seeds]))
        ax.axhline(floor, color="0.4", ls=":", label="floor (data vs data)")
        drawn += ex.ravel().tolist() + [floor]
        ax.set_xscale("log")
        ax.set_xticks(cost, [str(k) for k in cost])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"{sampler.upper()} network evaluations (NFE)")
        ax.set_ylabel(QUALITY[metric])
        _robust_ylim(ax, drawn)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{QUALITY[metric]} against NFE — mean over {len(seeds)} seeds, band = min–max")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_paired(summary_: dict, arms: Sequence[Arm], settings: Settings, metric: str, path: Path) -> Path:
    """Paired differences arm − baseline with their 95 % intervals, for every sampler × steps."""
    settings_ = [f"{s}-{k}" for s in settings.samplers for k in settings.sampling_steps]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(1, len(arms) - 1)
    for i, a in enumerate(arms[1:]):
        p = [summary_["paired"][a.name][f"{metric} {s}"] for s in settings_]
        x = np.arange(len(settings_)) + (i - (len(arms) - 2) / 2) * width
        mean = np.array([q["mean"] for q in p])
        err = np.array([[q["mean"] - q["lo"] for q in p], [q["hi"] - q["mean"] for q in p]])
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o", color=f"C{i + 1}", label=a.label,
                    capsize=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(settings_)), settings_, rotation=30, fontsize=8)
    ax.set_ylabel(f"Δ {QUALITY[metric]}\n(arm − baseline; < 0 is better)")
    ax.set_title(f"Paired differences over {len(settings.seeds)} seeds, 95 % t-intervals")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_propagation(res: dict, arms: Sequence[Arm], settings: Settings, path: Path) -> Path:
    """Error propagation along one DDPM chain: modular KL per step, cumulative error per grid
    point (with floor), estimation gap above the exact denoiser's."""
    seeds = settings.seeds
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    curves = [("modular_kl", "modular KL of step j (nats)", "sampling step j"),
              ("cumulative_xent", "cumulative error: excess cross-entropy\nof the chain vs q_σ (nats)",
               "grid point j (after j steps)"),
              ("gap", "estimation gap ‖x^θ − x^oracle‖\nminus the exact denoiser's", "step from σ0")]
    for ax, (key, ylabel, xlabel) in zip(axes, curves):
        drawn = []
        exact = np.array([[np.nan if v is None else v for v in res["exact"][s][key]] for s in seeds],
                         dtype=float)
        for i, a in enumerate(arms):
            rows = np.array([[np.nan if v is None else v for v in res[a.name][s][key]] for s in seeds],
                            dtype=float)
            if key == "gap":
                rows = rows - exact
            x = np.arange(rows.shape[1])
            _band(ax, x, rows, a.label, f"C{i}")
            drawn += rows.ravel().tolist()
        if key != "gap":
            x = np.arange(exact.shape[1])
            _band(ax, x, exact, "exact denoiser", "k", "--")
            drawn += exact.ravel().tolist()
        if key == "cumulative_xent":
            fl = np.array([res["exact"][s]["cumulative_floor"] for s in seeds], dtype=float).mean(0)
            ax.plot(np.arange(len(fl)), fl, ":", color="0.4", label="floor (data vs data)")
        if key == "gap":
            ax.axhline(0, color="k", lw=0.8, ls="--", label="exact denoiser")
        if key == "modular_kl" and np.nanmin(drawn) > 0:
            ax.set_yscale("log")
        elif key == "cumulative_xent":
            # The last points (σ → 0, a sharp density) are orders above the rest: linear near 0,
            # logarithmic beyond, so both the early plateau and the final jump stay readable.
            ax.set_yscale("symlog", linthresh=0.05)
        else:
            _robust_ylim(ax, drawn)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Error propagation, DDPM {settings.diag_steps} steps, n = {settings.n_diag}, "
                 f"mean over {len(seeds)} seeds (band = min–max)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_report(out: Path, study: dict, arms: Sequence[Arm], settings: Settings, title: str,
                 command: str, data_label: str, extra: str = "", prov: dict | None = None) -> Path:
    """Plots + ``report.md`` / ``report.html`` (one self-contained file) for a finished study.
    ``prov``: where and when the study ran (commit, machine, date); default here and now — a report
    rendered again from a committed study keeps its run's."""
    out = Path(out)
    res, summ = study["results"], study["summary"]
    prov = prov or provenance()
    rep = Report(title)
    rep.verdict(verdict(summ, arms, settings))
    cfgs = [config_mod.load(overrides=settings.base + a.overrides) for a in arms]
    diffs = [differences(cfgs[0], c) for c in cfgs]
    confounded = [a.label for a, d in zip(arms, diffs) if not objective_only(d)]
    like = ("only the objective differs (checked on the resolved configs)" if not confounded else
            f"besides the objective, {', '.join(confounded)} differ{'s' if len(confounded) == 1 else ''} "
            "from the baseline in the settings marked ⚠ below")
    rep.text(f"Data: {data_label}. Arms (same seeds; {like}): {', '.join(a.label for a in arms)}. "
             f"Seeds: {settings.seeds} — seed s fixes "
             "the initial weights, data and training noise of every arm, and the sampling noise "
             "of every measurement, so differences are paired. ↓ / ↑ mark a 95 % paired t-interval "
             "entirely below / above 0 (lower is better for every metric), unadjusted; p_Holm is "
             f"the paired t-test's p-value Holm-adjusted over the family of all "
             f"{summ.get('family_size', '?')} comparisons (every arm × every metric): below 0.05 "
             "it survives the correction for multiple comparisons.")
    rep.text(f"Command: `{command}`. Commit {prov['commit']}, {prov['machine']}, {prov['date']}. "
             f"Base config overrides: `{' '.join(settings.base)}`. {extra}")
    seeds = ",".join(map(str, settings.seeds))
    rep.table(["arm", "config overrides (on top of the base)",
               "what it trains differently from the baseline (⚠: not the objective)", "run folders"],
              [[a.label, " ".join(a.overrides) or "—", describe(d), f"runs/{a.name}/seed{{{seeds}}}"]
               for a, d in zip(arms, diffs)])
    for metric in ("xent_median", "xent", "mmd2"):
        rep.heading(f"Sample quality: {QUALITY[metric]}")
        path = plot_quality(res, arms, settings, metric, out / f"quality_{metric}.png")
        rep.image(path.name, f"{QUALITY[metric]} against sampling steps")
        headers = ["setting", "floor"] + [f"{a.label}" for a in arms] + ["exact denoiser"] + [
            f"Δ {a.label} (95 % CI)" for a in arms[1:]]
        rows = []
        for s in settings.samplers:
            for k in settings.sampling_steps:
                m = f"{metric} {s}-{k}"
                rows.append([f"{s}-{k}", _fmt_ms(summ["floor"][m])]
                            + [_fmt_ms(summ["arms"][a.name][m]) for a in arms]
                            + [_fmt_ms(summ["exact"][m])]
                            + [_fmt_ci(summ["paired"][a.name][m]) for a in arms[1:]])
        rep.table(headers, rows)
        if len(arms) > 1:
            p = plot_paired(summ, arms, settings, metric, out / f"paired_{metric}.png")
            rep.image(p.name, f"paired differences in {QUALITY[metric]}")
    rep.heading("Error propagation")
    rep.text("Modular KL: exact KL of each learned reverse step to the true one (the exact denoiser's "
             "curve is the error of the Gaussian step alone). Cumulative error: excess cross-entropy "
             "of the model's chain against the exact marginal at each grid point. Estimation gap "
             "(SA, Fig. 4): model chain vs the chain that knows x0, sharing all noise, minus the exact "
             "denoiser's gap — the part a model can change.")
    path = plot_propagation(res, arms, settings, out / "propagation.png")
    rep.image(path.name, "modular KL, cumulative error and estimation gap per step")
    names = [m for m in summ["metrics"] if m.split(" ")[0] not in QUALITY]
    rep.table(["measure"] + [a.label for a in arms] + ["exact denoiser"]
              + [f"Δ {a.label} (95 % CI)" for a in arms[1:]],
              [[m] + [_fmt_ms(summ["arms"][a.name][m]) for a in arms]
               + [_fmt_ms(summ["exact"][m]) if m in summ["exact"] else "0 (by definition)"]
               + [_fmt_ci(summ["paired"][a.name][m]) for a in arms[1:]] for m in names])
    t = summ.get("train_seconds", {})
    if t:
        rep.heading("Training cost")
        rep.table(["arm", "training wall-clock (s), mean ± sd over seeds"],
                  [[a.label, _fmt_ms(t[a.name])] for a in arms if a.name in t])
    rep.text("The JSON behind every number is `study.json`; each run folder is under `runs/`.")
    return rep.write(out)
