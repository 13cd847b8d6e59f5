"""Error against step for several runs on one axis (matplotlib Agg backend, PNG out)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import ErrpropError  # noqa: E402
from ..plots import save_figure  # noqa: E402


def choose_yscale(values: Sequence[float]) -> str:
    """``log`` when the positive finite values span more than two decades (``symlog`` if some values
    are ≤ 0 as well), else ``linear``."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    if len(pos) < 2 or pos.max() / pos.min() <= 100:
        return "linear"
    return "log" if (v > 0).all() else "symlog"


def plot_steps(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str = "sampling step",
    ylabel: str = "error",
    title: str = "",
    xscale: str = "linear",
    invert_x: bool = False,
    sigma_axis: Sequence[float] | None = None,
    shade: Sequence[tuple[float, float, str]] = (),
) -> Path:
    """Plot curves ``{label: {"x": [...], "y": [...]}}`` on one axis and save a PNG.

    Optional keys of a curve: ``yerr`` (a band ±yerr), ``style`` (``-``, ``--``, ``:``) and
    ``color`` (any matplotlib colour).

    None/NaN values are left out (gaps). The y axis is logarithmic when the values of all curves
    together span more than two decades (:func:`choose_yscale`). ``sigma_axis``: σ at x = 0, 1,
    2, … (a grid); a second x axis on top then reads the steps in σ, so that one plot has both.
    ``shade``: ``(x_from, x_to, label)`` bands (e.g. where a reference is not valid).
    Returns ``path``.
    """
    if not curves:
        raise ErrpropError("plot_steps: no curves to plot")
    path = Path(path)
    xy = {}
    for label, c in curves.items():  # checked before the figure exists: an error leaks no figure
        x = np.asarray([np.nan if v is None else v for v in c["x"]], dtype=float)
        y = np.asarray([np.nan if v is None else v for v in c["y"]], dtype=float)
        if x.shape != y.shape:
            raise ErrpropError(
                f"plot_steps: curve {label!r} has {len(x)} x values and {len(y)} y values")
        xy[label] = x, y
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    every = []
    for label, c in curves.items():
        x, y = xy[label]
        every.extend(y.tolist())
        line = ax.plot(x, y, c.get("style", "-"), marker="o" if len(x) <= 30 else None, ms=3,
                       label=label, color=c.get("color"))[0]
        if c.get("yerr") is not None:
            e = np.asarray([np.nan if v is None else v for v in c["yerr"]], dtype=float)
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.2, lw=0)
    scale = choose_yscale(every)
    if scale == "symlog":
        pos = np.asarray([v for v in every if v is not None and math.isfinite(v) and v > 0])
        ax.set_yscale("symlog", linthresh=float(pos.min()))
    else:
        ax.set_yscale(scale)
    ax.set_xscale(xscale)
    if invert_x:
        ax.invert_xaxis()
    for a, b, label in shade:
        ax.axvspan(a, b, color="0.85", alpha=0.6, lw=0, label=label)
    if sigma_axis is not None and len(sigma_axis) > 1:
        _sigma_ticks(ax, [float(v) for v in sigma_axis])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _sigma_ticks(ax, sigmas: list[float], ticks: int = 6) -> None:
    """A top axis labelled with σ at up to ``ticks`` of the grid's points (the x axis is j)."""
    top = ax.secondary_xaxis("top")
    pos = sorted({int(round(v)) for v in np.linspace(0, len(sigmas) - 1, min(ticks, len(sigmas)))})
    top.set_xticks(pos, labels=[f"{sigmas[p]:.3g}" for p in pos])
    top.set_xlabel("σ at that step")


def curves(what: str, runs: dict[str, dict]) -> tuple[dict, str, str]:
    """Plot curves, x label and y label of one measurement's results ``{label: result}``; the
    first result gives the grid, the floor and (for ``budget``) the only curves drawn."""
    curves: dict = {}
    model = next(iter(runs.values()))
    if what == "modular":
        kl = model.get("measure") == "modular_kl"
        key, ylabel = (("kl", "modular KL (nats)") if kl
                       else ("excess", "E‖ε̂ − ε‖² (incl. irreducible)"))
        for name, r in runs.items():
            x = r["index"] if kl else list(range(len(r[key])))
            curves[name] = {"x": x, "y": r[key], "yerr": r.get(f"{key}_stderr")}
            if not kl and "reducible" in r:
                curves[f"{name} reducible"] = {"x": x, "y": r["reducible"], "style": "--"}
            if "learned_at_chain" in r:  # in ε units, as the excess: ‖D_θ − D*‖²/σ²
                curves[f"{name}: ‖ε̂_θ − ε̂*‖² at its chain's states"] = {
                    "x": list(range(len(r["learned_at_chain"]))), "style": "-.",
                    "y": [v / s**2 for v, s in zip(r["learned_at_chain"], r["learned_sigma"])]}
        return curves, "sampling step j (σ_j → σ_{j+1})", ylabel
    if what == "cumulative":
        for name, r in runs.items():
            curves[name] = {"x": r["index"], "y": r["mmd2"]}
        curves["floor (data vs data)"] = {"x": model["index"], "y": model["mmd2_floor"],
                                          "style": ":"}
        return curves, "grid point j (after j steps)", "cumulative error, MMD²"
    if what == "amplification":
        for name, r in runs.items():
            idx = list(range(len(r["mu_per_step"])))
            curves[f"{name} μ_j"] = {"x": idx, "y": r["mu_per_step"]}
            curves[f"{name} μ (fit)"] = {"x": idx, "y": [r["mu"]] * len(idx), "style": "--"}
        return curves, "sampling step j", "amplification μ"
    if what == "local":
        for i, (name, r) in enumerate(runs.items()):
            for part, style in (("local", "-"), ("discretization", "--"), ("learned", ":")):
                curves[f"{name} {part}"] = {"x": r["index"], "y": r[part], "yerr": r[f"{part}_stderr"],
                                            "style": style, "color": f"C{i}"}
        return curves, "sampling step j (σ_j → σ_{j+1})", "local error mean ‖x̂_{j+1} − exact flow‖"
    if what == "gap":
        for name, r in runs.items():
            curves[name] = {"x": list(range(len(r["gap"]))), "y": r["gap"], "yerr": r["gap_stderr"]}
        return (curves, f"chain step from data noised to σ0 = {model['sigma0']:.3g}",
                "estimation gap mean ‖x^θ − x^oracle‖")
    if what == "learned":
        for name, r in runs.items():
            curves[f"{name}: E‖D_θ − D*‖² (x0 units)"] = {"x": r["step_index"], "y": r["learned"],
                                                         "yerr": r["learned_stderr"]}
            # the same in ε units, comparable across σ: an ε-model's x0 error grows like σ
            curves[f"{name}: E‖ε̂_θ − ε̂*‖² = E‖D_θ − D*‖²/σ²"] = {
                "x": r["step_index"], "y": r["learned_eps"], "style": "--"}
        return curves, "sampling step j (σ_j → σ_{j+1})", "learned error per sample"
    x = model["steps"]
    for i, (g, table) in enumerate(model["grids"].items()):
        color = f"C{i}"
        curves[f"{g}: total"] = {"x": x, "y": table["total"]["mmd"], "color": color}
        curves[f"{g}: E_D"] = {"x": x, "y": table["E_D"]["mmd"], "style": "--", "color": color}
        curves[f"{g}: E_S"] = {"x": x, "y": table["E_S"]["mmd"], "style": ":", "color": color}
    curves["floor"] = {"x": x, "y": [model["floor"]["mmd"]] * len(x), "style": ":", "color": "0.5"}
    return curves, "sampling steps", "distance to data (√MMD²)"
