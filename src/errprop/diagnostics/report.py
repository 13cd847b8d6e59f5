"""The report of ``errprop diagnose``: one self-contained HTML page and its Markdown twin.

Built from the measurements' JSON (every number on the page is in a file beside it) with the
demo's :class:`errprop.report.Report`: a computed summary first, then the headline numbers with
their intervals over chains, then one figure per measurement, each saying what it measures and what
"good" looks like, with its reference curves (the exact denoiser D*, the data-vs-data floor) drawn
beside the model's and its x axis in steps with σ on top.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..report import Report
from .plots import curves, plot_steps

#: What each figure measures and what good looks like (the captions).
CAPTIONS = {
    "learned": ("The learned error per step: E‖D_θ(x̂, σ_j) − D*(x̂, σ_j)‖² at the states x̂ the "
                "model's own chain visits (D*: the exact denoiser of the reference distribution; "
                "±1 standard error over chains), and dashed the same in ε units, "
                "E‖ε̂_θ − ε̂*‖² = E‖D_θ − D*‖²/σ² (an ε-prediction model's x0 error grows like σ, "
                "so only the ε units compare across σ). Good: small wherever D* stands for the data "
                "(unshaded); in the shaded σ range D* returns training images, so there a "
                "generalising model is far from it by design."),
    "learned_split": ("The split of the error along the chain, √MMD² against data noised to each σ: "
                      "total (the model's chain), discretization (the same sampler, start and "
                      "noise with D*), learned (model chain vs D* chain) and the floor (two data "
                      "sets of the same n). Good: total close to the floor; where total sits above "
                      "discretization, the model adds error; where the two coincide, more steps, "
                      "not a better model, would help."),
    "memorisation": ("Where D* memorises: the distance of D*'s answer to a noised held-out image from "
                     "its nearest training image, over a fresh held-out image's (1: as far as new "
                     "data; → 0: a copy of a training image), and the same for the model. Below "
                     "the dashed threshold D* is no reference for the data distribution. A model "
                     "that generalises stays near or above 1 at every σ."),
    "modular": ("The denoising error per step at forward-noised training data, E‖ε̂ − ε‖², which "
                "includes the irreducible part E‖ε − E[ε|x̂]‖² (a perfect model pays it too): "
                "the oracle's curve is that floor; the dashed 'reducible' curve is the model's "
                "distance from the exact denoiser there, the dash-dotted one the same at its own "
                "chain's states. Good: the model's curve on the oracle's."),
    "cumulative": ("The cumulative error: the model's chain against forward-noised data at each grid "
                   "point (MMD²), with the oracle's chain and the data-vs-data floor. Good: on the "
                   "floor at the last point."),
    "gap": ("SA's estimation gap: chains started from data noised to σ0, the model's against one "
            "whose denoiser knows x0, sharing all noise (mean ‖x^θ − x^oracle‖). Good: small and "
            "not growing towards σ = 0; the oracle's gap is what even the exact denoiser has."),
    "amplification": ("The amplification factor μ_j of EP's propagation equation. μ > 1: errors are "
                      "amplified from step to step."),
    "budget": ("DS's error budget at steps/4, steps/2 and steps: the total distance to the data "
               "(solid), the discretization E_D (dashed) and the learned E_S (dotted), with the "
               "floor. Good: E_S below E_D, total near the floor."),
}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3g}"


def _interval(t: dict) -> str:
    return f"[{_fmt(t['lo'])}, {_fmt(t['hi'])}]"


def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.0f} %"


def summary(results: dict[str, dict]) -> str:
    """The computed summary: where the error enters, how much of it is discretization, where D*
    stops being a reference, and the final distance against its floor."""
    meta = next(iter(results.values()))
    head = f"{meta['sampler']} with {meta['steps']} steps ({meta['grid']} grid), n = {meta['n']}."
    lines = [head]
    learned = results.get("learned", {}).get("model")
    if learned:
        f = learned["final"]
        e = learned["enters"]
        if e["sigma_hi"] is not None:
            lines.append(
                f"The error enters at σ ∈ [{_fmt(e['sigma_lo'])}, {_fmt(e['sigma_hi'])}]: the steps "
                f"there make {_pct(e['share'])} of the growth of the distance between the model's "
                "chain and the exact denoiser's (same start, same noise).")
        share = f["discretization_share"]
        lines.append(
            f"{_pct(share['value'])} (90 % bootstrap interval {_pct(share['lo'])}–{_pct(share['hi'])}) "
            f"of the final error (MMD²) is discretization at {meta['steps']} steps: "
            "the sampler run with the exact denoiser has it too; the rest is learned. Final distance "
            f"to the data {_fmt(f['total']['value'])} (floor {_fmt(f['floor']['value'])}), "
            f"discretization E_D {_fmt(f['E_D']['value'])}, learned E_S {_fmt(f['E_S']['value'])}.")
        mem = learned.get("memorisation")
        if mem:
            valid = mem["reference_valid_from"]
            lines.append(
                "D* memorises at every measured σ: it is no reference for the data distribution here."
                if valid is None else
                f"D* stands for the data distribution from σ ≈ {_fmt(valid)} up; below, it returns "
                "training images, and the learned error there measures generalisation, not the "
                "model's error.")
            if e["sigma_hi"] is not None and (valid is None or e["sigma_lo"] < valid):
                where = ("The σ range where the error enters lies" if valid is None or e["sigma_hi"] <= valid
                         else f"Part of the σ range where the error enters (below {_fmt(valid)}) lies")
                lines.append(
                    f"{where} where D* memorises: there the two chains part because the model does "
                    "not copy training images, which is generalisation, not necessarily error.")
    cum = results.get("cumulative", {}).get("model")
    if cum and "mmd2" in cum:
        lines.append(f"Cumulative error at the end: MMD² {_fmt(cum['mmd2'][-1])} "
                     f"(floor {_fmt(cum['mmd2_floor'][-1])}).")
    return "\n".join(lines)


def headline(results: dict[str, dict]) -> list[list[object]]:
    """Rows ``[quantity, value, 90 % interval, good]`` of the headline table."""
    rows: list[list[object]] = []
    learned = results.get("learned", {}).get("model")
    if learned:
        f = learned["final"]
        for key, name, good in (
                ("total", "final distance to the data, √MMD²", "near the floor"),
                ("E_D", "discretization E_D: the sampler with D*", "near the floor"),
                ("E_S", "learned E_S: model chain vs D* chain", "0"),
                ("floor", "floor: data vs data at this n (sampling noise)", "(reference)"),
                ("path", "mean ‖x_model − x_D*‖ at the end (paired chains)", "0")):
            rows.append([name, _fmt(f[key]["value"]), _interval(f[key]), good])
        s = f["discretization_share"]
        rows.append(["share of the final error that is discretization", _pct(s["value"]),
                     f"[{_pct(s['lo'])}, {_pct(s['hi'])}]", "high: the model is not the bottleneck"])
    mod = results.get("modular", {}).get("model")
    if mod and "excess" in mod:
        oracle = results["modular"].get("oracle")
        rows.append(["summed denoising excess E‖ε̂ − ε‖² (incl. irreducible)",
                     _fmt(sum(mod["excess"])), "", "the oracle's: "
                     + (_fmt(sum(oracle["excess"])) if oracle else "n/a")])
    elif mod and "kl" in mod:
        rows.append(["summed modular KL (nats)", _fmt(sum(v for v in mod["kl"] if v is not None)),
                     "", "0"])
    gap = results.get("gap", {}).get("model")
    if gap:
        se = gap["gap_stderr"][-1]
        rows.append(["estimation gap at σ = 0", _fmt(gap["gap"][-1]),
                     f"± {_fmt(se)} (standard error)", "small"])
    return rows


def _extra_figures(out_dir: Path, results: dict[str, dict]) -> list[tuple[str, str]]:
    """The figures beyond one per measurement: the split along the chain and the memorisation
    profile (from ``learned``)."""
    learned = results.get("learned", {}).get("model")
    if not learned:
        return []
    meta = results["learned"]
    figs = []
    idx = learned["index"]
    lines = {"total: model chain vs data": {"x": idx, "y": learned["total"], "color": "C0"},
             "discretization: D* chain vs data": {"x": idx, "y": learned["discretization"],
                                                  "style": "--", "color": "C1"},
             "learned: model chain vs D* chain": {"x": idx, "y": learned["learned_distance"],
                                                  "style": "-.", "color": "C3"},
             "floor: data vs data": {"x": idx, "y": learned["floor"], "style": ":", "color": "0.5"}}
    plot_steps(lines, out_dir / "learned_split.png", xlabel="grid point j (after j steps)",
               ylabel="√MMD² (scaled states x_t)", sigma_axis=meta["sigmas"],
               title=f"discretization vs learned: {meta['sampler']}, {meta['steps']} steps")
    figs.append(("learned_split.png", CAPTIONS["learned_split"]))
    mem = learned.get("memorisation")
    if mem:
        s = mem["sigma"]
        lines = {"D*: NN-to-train of its answer / a fresh image's": {"x": s, "y": mem["ratio"]},
                 "model: the same": {"x": s, "y": mem["ratio_model"], "style": "--"},
                 f"threshold {mem['threshold']}": {"x": s, "y": [mem["threshold"]] * len(s),
                                                   "style": ":", "color": "0.5"}}
        plot_steps(lines, out_dir / "memorisation.png", xlabel="σ (sampling runs right to left)",
                   ylabel="distance to the training set, relative", xscale="log",
                   title="where the ideal denoiser D* memorises")
        figs.append(("memorisation.png", CAPTIONS["memorisation"]))
    return figs


def _memorised_band(results: dict[str, dict]) -> list[tuple[float, float, str]]:
    """The steps (x = j) whose σ is below where D* stands for the data, as a shaded band."""
    learned = results.get("learned", {}).get("model")
    mem = learned.get("memorisation") if learned else None
    if not mem:
        return []
    valid = mem["reference_valid_from"]
    sig = learned["step_sigma"]
    below = [j for j, s in enumerate(sig) if valid is None or s < valid]
    if not below:
        return []
    return [(below[0] - 0.5, len(sig) - 0.5, "D* memorises here")]


def write_report(out_dir: Path, results: dict[str, dict], command: str | None = None
                 ) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out_dir`` (beside the measurements' JSON and
    PNG files, which it reads by name); returns their paths."""
    out_dir = Path(out_dir)
    meta = next(iter(results.values()))
    title = (f"errprop diagnose: {meta['sampler']}, {meta['steps']} steps ({meta['grid']} grid), "
             f"n = {meta['n']}")
    rep = Report(title)
    rep.verdict(summary(results))
    if command:
        rep.text(f"Command: `{command}`")
    oracle = meta.get("reference")
    rep.text("Reference: " + (oracle + " (D*)." if oracle else
                              "none (pass --oracle for the exact denoiser: then the learned part, "
                              "its split from discretization and the floors of each curve)."))
    rows = headline(results)
    if rows:
        rep.heading("Headline numbers")
        rep.text("Intervals: 90 % percentile bootstrap over chains (and data samples) unless marked. "
                 "Final distances: √ of the unbiased MMD² (0 where it is below 0), whose floor is "
                 "0 up to sampling noise; the curves along the chain use the biased one, with its "
                 "floor.")
        rep.table(["quantity", "value", "interval", "good"], rows)
    figures: list[tuple[str, str, str]] = []
    if "learned" in results:
        figures.append(("The learned part of each step's error", "learned.png",
                        CAPTIONS["learned"]))
        band = _memorised_band(results)
        if band:  # redraw with the band where D* is no reference
            lines, xlabel, ylabel = curves("learned", {"model": results["learned"]["model"]})
            plot_steps(lines, out_dir / "learned.png", xlabel=xlabel, ylabel=ylabel,
                       sigma_axis=meta["sigmas"], shade=band,
                       title=f"learned error per step: {meta['sampler']}, {meta['steps']} steps")
        for name, caption in _extra_figures(out_dir, results):
            figures.append(("Discretization and learned part along the chain"
                            if name.startswith("learned") else "Where D* is a reference",
                            name, caption))
    for what in ("modular", "cumulative", "gap", "budget", "amplification"):
        if what in results:
            figures.append((what, f"{what}.png", CAPTIONS[what]))
    for heading, name, caption in figures:
        rep.heading(heading)
        rep.text(caption)
        rep.image(name, caption.split(":")[0])
    rep.heading("Files")
    rep.text("Every number above is in the JSON beside this page: "
             + ", ".join(f"`{w}.json`" for w in results) + ".")
    md = rep.write(out_dir)
    return out_dir / "report.html", md
