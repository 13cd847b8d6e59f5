"""One entry point for ``errprop diagnose``: run the chosen measurements, write JSON and PNG.

Every measurement writes ``<out_dir>/<what>.json`` (per-step arrays with the σ grid, the VP
timestep index t, n and seed; strict JSON, None where a value is undefined) and
``<out_dir>/<what>.png`` (error against step, the model and, with an ``oracle``, the oracle's
curve on the same axis).

=================  ================================================================================
what               measurement
=================  ================================================================================
``modular``        mixture + Gaussian step: KL(p_θ(·|x̂) ‖ q(·|x̂)) per step (nats); otherwise the
                   denoising excess E‖ε̂ − ε‖², which includes the irreducible part (labelled so)
``cumulative``     one chain from the prior vs forward-noised data at every grid point (≤ 20
                   recorded points for grids of more than 50 steps): MMD², SWD, and on mixtures
                   excess cross-entropy and a k-NN KL estimate, each with its data-vs-data floor
``amplification``  mixtures + Gaussian step: μ_t from E^cumu_{t−1} − E^mod_t ≈ μ_t E^cumu_t (nats)
``gap``            SA's estimation gap from data noised to paper step 300 (VP) over the grid's
                   levels below it
``budget``         DS's E_I, E_D, E_S at steps/4, steps/2 and steps: mixtures for the grid and the
                   other DS grids; images (with the ideal denoiser as ``oracle``) for the grid
``learned``        with an exact ``oracle`` (the mixture, or the ideal denoiser D* of the training
                   set): E‖D_θ − D*‖² per step at the model chain's states, the split of the error
                   into discretization (the sampler run with D*) and learned part per grid point
                   and at the end (DS's E_D, E_S, with bootstrap intervals), where the error
                   enters, and (with ``heldout`` images) where D* memorises
``local``          mixtures + deterministic solver: the local error of every step against the exact
                   probability-flow step from the same state, split into the discretization part
                   (the exact denoiser taking the same step) and the learned part
=================  ================================================================================

With an image ``oracle`` (:class:`~errprop.data.empirical.EmpiricalDenoiser`), ``modular`` also
splits the denoising excess into its reducible part against D* and D*'s own (irreducible for the
training set's distribution), and reports the learned error per step beside it. Every run writes
``report.html`` (one self-contained page) and ``report.md`` (:mod:`errprop.diagnostics.report`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..analytic_dpm import analytic_ddpm_step, gamma_table
from ..builders import check_sampling, grid_options, load_data, sampler_settings
from ..data.empirical import EmpiricalDenoiser
from ..data.gmm import GaussianMixture
from ..errors import ErrpropError
from ..files import make_dir, to_jsonable, write_json, write_text
from ..grids import exponential, make_grid
from ..keys import KEY_DATA
from ..process import Process, VPProcess
from ..samplers import SAMPLERS, Denoise, get_sampler, is_gaussian, is_stochastic, step_options
from ..streams import default_dtype, draw_data
from .budget import DS_GRIDS, compare_schedules
from .cumulative import amplification, cumulative_error
from .gap import estimation_gap
from .learned import learned_split, memorisation, memorisation_grid
from .local import local_error
from .modular import denoising_excess, modular_error
from .plots import curves, plot_steps
from .report import write_report

WHATS = ("modular", "cumulative", "amplification", "gap", "budget", "learned", "local")
MIXTURE_ONLY = {"amplification": "the amplification fit needs the modular KL (exact q)",
                "local": "the local error needs the exact probability-flow step"}
#: Measurements that need an exact reference: a mixture, or an ideal-denoiser oracle on images.
NEEDS_EXACT = {"budget": "the error budget needs the exact score and exact draws of q_σmax",
               "learned": "the learned part is the model's distance from an exact denoiser"}
#: Measurements not repeated with the oracle as the model (they already compare the two).
NO_ORACLE_RUN = ("budget", "learned")


def _device(denoiser) -> torch.device:
    if isinstance(denoiser, torch.nn.Module):
        p = next(iter(denoiser.parameters()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


class _Setup:
    """The resolved sampler, grid and data of one ``diagnose`` call."""

    def __init__(self, process: Process, data, sampler: str, steps: int, grid: str | None,
                 n: int, seed: int, options: dict | None, grid_options: dict | None,
                 batch_size: int | None, oracle=None, heldout: torch.Tensor | None = None):
        if sampler not in SAMPLERS:
            raise ErrpropError(f"diagnose: unknown sampler {sampler!r}; choose one of {tuple(SAMPLERS)}")
        if not isinstance(data, GaussianMixture) and not (torch.is_tensor(data) and data.ndim >= 2):
            raise ErrpropError(
                "diagnose: data must be a GaussianMixture or a float tensor (N, ...) of x0")
        self.process, self.data, self.sampler, self.n, self.seed = process, data, sampler, n, seed
        self.mixture = data if isinstance(data, GaussianMixture) else None
        self.grid = grid or ("uniform" if isinstance(process, VPProcess) else "edm")
        self.grid_options = grid_options or {}
        self.sigmas = make_grid(self.grid, process, steps, **self.grid_options)
        self.steps = len(self.sigmas) - 1
        self.user_options = dict(options or {})
        self.batch_size = batch_size
        self.oracle, self.heldout = oracle, heldout
        # the exact reference: the mixture itself, else an oracle given for the data
        self.exact = self.mixture if self.mixture is not None else oracle
        self.memo: dict = {}  # the learned split, shared by ``modular`` and ``learned``

    def step(self, denoiser: Denoise, device) -> tuple[str | Callable, dict]:
        """The step function and its options for ``denoiser``. Analytic-DPM gets its own Γ table,
        estimated at the grid's levels and 64 log-spaced ones over the process's σ range (so that
        it also serves the other grids of the budget; Γ is smooth in log σ)."""
        if self.sampler == "analytic":
            span = exponential(self.process.sigma_min, self.process.sigma_max, 64)
            levels = torch.unique(torch.cat([self.sigmas, span]))
            table = gamma_table(denoiser, self.data, levels, n=min(self.n, 1000), seed=self.seed,
                                batch_size=self.batch_size, dtype=default_dtype(denoiser),
                                device=device)
            return analytic_ddpm_step, {"gamma_table": table}
        opts = step_options(self.sampler, self.steps, self.process, **self.user_options)
        return self.sampler, opts

    def meta(self, what: str) -> dict:
        return {"what": what, "sampler": self.sampler, "grid": self.grid, "steps": self.steps,
                "n": self.n, "seed": self.seed, "process": type(self.process).__name__,
                "data": "gaussian_mixture" if self.mixture is not None else "samples",
                "sampler_options": dict(self.user_options),
                "sigmas": [float(v) for v in self.sigmas],
                "reference": (None if self.oracle is None else
                           "ideal denoiser of the training set" if isinstance(
                               self.oracle, EmpiricalDenoiser) else "exact mixture denoiser")}


def _modular(setup: _Setup, denoiser, device) -> dict:
    step, opts = setup.step(denoiser, device)
    if setup.mixture is not None and is_gaussian(step, opts):
        return modular_error(denoiser, setup.mixture, setup.sigmas, step=step, options=opts,
                             n=setup.n, seed=setup.seed, process=setup.process, device=device)
    res = denoising_excess(denoiser, setup.data, setup.sigmas, n=setup.n, seed=setup.seed,
                           exact=setup.exact, process=setup.process, batch_size=setup.batch_size,
                           device=device)
    if setup.mixture is None and setup.exact is not None and denoiser is not setup.exact:
        # beside the excess at forward-noised data: the learned error at the chain's own states
        split = _split(setup, denoiser, device)
        res.update(learned_at_chain=split["learned"], learned_at_chain_stderr=split["learned_stderr"],
                   learned_sigma=split["step_sigma"])
    if setup.mixture is not None:
        res["fallback"] = (f"sampler {setup.sampler!r} has no Gaussian step density, so "
                           "KL(p_θ(·|x̂) ‖ q(·|x̂)) is undefined: the denoising excess is reported "
                           "(its reducible part exact)")
    return res


def _cumulative(setup: _Setup, denoiser, device) -> dict:
    step, opts = setup.step(denoiser, device)
    return cumulative_error(denoiser, setup.process, setup.data, setup.sigmas, step=step,
                            options=opts, n=setup.n, seed=setup.seed,
                            points=20 if setup.steps > 50 else None,
                            batch_size=setup.batch_size, device=device)


def _amplification(setup: _Setup, denoiser, device) -> dict:
    step, opts = setup.step(denoiser, device)
    if not is_gaussian(step, opts):
        raise ErrpropError("diagnose amplification: needs a Gaussian sampler step (ddpm, ddim "
                           f"with eta > 0, analytic) for the modular KL; got {setup.sampler!r}")
    mod = modular_error(denoiser, setup.mixture, setup.sigmas, step=step, options=opts, n=setup.n,
                        seed=setup.seed, process=setup.process, device=device)
    cum = cumulative_error(denoiser, setup.process, setup.mixture, setup.sigmas, step=step,
                           options=opts, n=setup.n, seed=setup.seed, metrics=("kl",), device=device)
    fit = amplification(cum["kl"], mod["kl"], seed=setup.seed)
    return {"sigma": cum["sigma"], "t": cum["t"], "cumulative_kl": cum["kl"],
            "cumulative_kl_floor": cum["kl_floor"], "modular_kl": mod["kl"], **fit}


def _gap(setup: _Setup, denoiser, device) -> dict:
    x0 = draw_data(setup.data, setup.n, setup.seed, KEY_DATA, default_dtype(denoiser), device)
    step, opts = setup.step(denoiser, device)
    return estimation_gap(denoiser, setup.process, x0, sigmas=setup.sigmas, step=step, options=opts,
                          seed=setup.seed)


def _budget(setup: _Setup, denoiser, device) -> dict:
    step, opts = setup.step(denoiser, device)
    # on images every D* chain costs seconds per step: the run's own grid only
    grids = list(dict.fromkeys([setup.grid, *(DS_GRIDS if setup.mixture is not None else ())]))
    steps = sorted({max(2, setup.steps // 4), max(2, setup.steps // 2), setup.steps})
    return compare_schedules(denoiser, setup.exact, setup.process, sampler=step, options=opts,
                             steps=steps, grids=grids, n=setup.n, seed=setup.seed)


def _split(setup: _Setup, denoiser, device) -> dict:
    key = ("split", id(denoiser))
    if key not in setup.memo:
        step, opts = setup.step(denoiser, device)
        setup.memo[key] = learned_split(denoiser, setup.exact, setup.process, setup.data,
                                        setup.sigmas, step=step, options=opts, n=setup.n,
                                        seed=setup.seed, batch_size=setup.batch_size,
                                        device=device)
    return setup.memo[key]


def _learned(setup: _Setup, denoiser, device) -> dict:
    res = dict(_split(setup, denoiser, device))
    if isinstance(setup.exact, EmpiricalDenoiser) and setup.heldout is not None:
        res["memorisation"] = memorisation(setup.exact, setup.heldout,
                                           memorisation_grid(setup.process, setup.sigmas),
                                           model=denoiser, n=min(setup.n, len(setup.heldout)),
                                           seed=setup.seed, device=device)
    return res


def _local(setup: _Setup, denoiser, device) -> dict:
    step, opts = setup.step(denoiser, device)
    return local_error(denoiser, setup.mixture, setup.process, setup.sigmas, step=step, options=opts,
                       n=min(setup.n, 1000), seed=setup.seed, device=device)


MEASURE = {"modular": _modular, "cumulative": _cumulative, "amplification": _amplification,
           "gap": _gap, "budget": _budget, "learned": _learned, "local": _local}


def sigma_axis(what: str, runs: dict[str, dict], sigmas: Sequence[float]) -> list[float] | None:
    """σ at x = 0, 1, … of a measurement's plot (its top axis), None where x is not a step."""
    if what == "budget":
        return None
    if what == "gap":
        return next(iter(runs.values()))["sigma"]
    return [float(v) for v in sigmas]


def diagnose(
    denoiser: Denoise,
    process: Process,
    data: GaussianMixture | torch.Tensor,
    what: Sequence[str] | str,
    *,
    sampler: str = "ddpm",
    steps: int = 50,
    grid: str | None = None,
    n: int = 1000,
    seed: int = 0,
    out_dir: Path,
    oracle: GaussianMixture | EmpiricalDenoiser | None = None,
    heldout: torch.Tensor | None = None,
    options: dict | None = None,
    grid_options: dict | None = None,
    batch_size: int | None = None,
    command: str | None = None,
    report: bool = True,
) -> dict[str, Path]:
    """Run the diagnostics ``what`` (any of :data:`WHATS`) and write their JSON and PNG files.

    Args:
        denoiser: the model ``D(x̂, σ)``.
        process: its forward process.
        data: a Gaussian mixture (exact measurements) or a float tensor (N, ...) of real x0 in
            [−1, 1] (needs N ≥ 2n for the floors).
        sampler: ``ddpm``, ``ddim``, ``euler``, ``heun`` or ``analytic`` (Analytic-DPM, its Γ
            table estimated from the denoiser on the data); ``options`` are user-level sampler
            settings (``eta``, ``variance``, ``s_churn``; :func:`errprop.generate.step_options`).
        steps, grid, grid_options: the sampling grid (default ``uniform`` for VP, ``edm`` for VE).
        oracle: an exact denoiser whose curve is drawn for reference on every plot: the mixture,
            or on images the ideal denoiser of the training set
            (:class:`~errprop.data.empirical.EmpiricalDenoiser` of ``data``), which also gives
            ``budget`` and ``learned`` an exact reference.
        heldout: images the training set does not hold (the test split): ``learned`` then
            measures where D* memorises.
        command: the command line, named in the report; ``report``: write report.html/.md.

    Returns:
        ``{"<what>.json": path, "<what>.png": path}`` for each measurement (``what`` is a list or
        a comma-separated string), and ``report.html``, ``report.md``.

    Raises:
        ErrpropError: an unknown measurement or sampler, ``amplification`` on data that is not a
        Gaussian mixture, or ``budget``/``learned`` without an exact reference.
    """
    if isinstance(what, str):
        what = what.split(",")
    what = [w.strip() for w in what if w.strip()]
    if not what:
        raise ErrpropError(f"diagnose: nothing to measure; choose from {', '.join(WHATS)}")
    unknown = [w for w in what if w not in WHATS]
    if unknown:
        raise ErrpropError(
            f"diagnose: unknown measurement(s) {unknown}; choose from {', '.join(WHATS)}")
    setup = _Setup(process, data, sampler, steps, grid, n, seed, options, grid_options, batch_size,
                   oracle, heldout)
    if setup.mixture is None:
        for w in what:
            if w in MIXTURE_ONLY:
                raise ErrpropError(
                    f"diagnose {w}: needs a Gaussian-mixture data set ({MIXTURE_ONLY[w]}); "
                    "on image data use modular, cumulative, gap, or with the ideal denoiser as "
                    "oracle (--oracle) budget and learned")
    for w in what:
        if w in NEEDS_EXACT and setup.exact is None:
            raise ErrpropError(
                f"diagnose {w}: needs a Gaussian-mixture data set or, on images, the ideal "
                f"denoiser of the training set as oracle (--oracle) ({NEEDS_EXACT[w]})")
    # the step's options before any work (a sampler that needs data has its table estimated later;
    # its step is stochastic with any table)
    opts = ({} if get_sampler(setup.sampler).needs_data else
            step_options(setup.sampler, setup.steps, process, **setup.user_options))
    if "local" in what and is_stochastic(setup.sampler, opts):
        raise ErrpropError(f"diagnose local: sampler {setup.sampler!r} is stochastic (no local ODE error); "
                           "use a deterministic solver (ddim with eta 0, euler, heun, dpmpp_2m, dpmpp_3m, "
                           "unipc_2, unipc_3) or --what modular")
    if "amplification" in what and not is_gaussian(setup.sampler, opts):
        raise ErrpropError("diagnose amplification: needs a Gaussian sampler step (ddpm, ddim "
                           f"with eta > 0, analytic) for the modular KL; got {setup.sampler!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _device(denoiser)
    written: dict[str, Path] = {}
    results: dict[str, dict] = {}
    for w in what:
        both = oracle is not None and w not in NO_ORACLE_RUN
        print(f"[diagnose] measuring {w}" + (" (model and exact denoiser)" if both else ""),
              file=sys.stderr, flush=True)
        runs = {"model": MEASURE[w](setup, denoiser, device)}
        if oracle is not None and w not in NO_ORACLE_RUN:  # those already compare model and exact
            runs["oracle"] = MEASURE[w](setup, oracle, device)
        result = {**setup.meta(w), **runs}
        path = out_dir / f"{w}.json"
        write_json(path, to_jsonable(result))
        results[w] = json.loads(path.read_text())
        lines, xlabel, ylabel = curves(w, runs)
        title = (f"{w}: {setup.sampler}, {setup.grid} grid, {setup.steps} steps, n = {n}, "
                 f"seed {seed}")
        written[f"{w}.json"] = path
        written[f"{w}.png"] = plot_steps(lines, out_dir / f"{w}.png", xlabel=xlabel, ylabel=ylabel,
                                         title=title, xscale="log" if w == "budget" else "linear",
                                         sigma_axis=sigma_axis(w, runs, setup.sigmas))
    if report:

        html, md = write_report(out_dir, results, command=command)
        written.update({"report.html": html, "report.md": md})
    return written


def summarize(what: str, result: dict) -> str:
    """One line of the headline numbers of a measurement (``errprop diagnose`` prints it)."""

    def fmt(v) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    parts = []
    for who in ("model", "oracle"):
        r = result.get(who)
        if r is None:
            continue
        if what == "modular":
            key = next(k for k in ("kl", "reducible", "excess") if k in r)
            unit = {"kl": "summed modular KL (nats)", "reducible": "summed reducible denoising excess",
                    "excess": "summed denoising excess (includes the irreducible part)"}[key]
            text = f"{unit} {fmt(sum(v for v in r[key] if v is not None))}"
        elif what == "cumulative":
            text = "final step: " + ", ".join(
                f"{m} {fmt(r[m][-1])} (floor {fmt(r[m + '_floor'][-1])})"
                for m in ("xent", "kl", "mmd2", "swd") if m in r)
        elif what == "gap":
            text = f"gap at the last step {fmt(r['gap'][-1])} ± {fmt(r['gap_stderr'][-1])}"
        elif what == "local":
            text = ", ".join(f"summed {p} {fmt(sum(r[p]))}" for p in ("local", "discretization", "learned"))
        elif what == "amplification":
            text = f"μ = {fmt(r['mu'])} (90 % bootstrap {fmt(r['mu_q05'])}–{fmt(r['mu_q95'])})"
        elif what == "learned":
            f = r["final"]
            share = f["discretization_share"]
            text = (f"learned error per step {fmt(min(r['learned']))}–{fmt(max(r['learned']))}; "
                    f"final distance {fmt(f['total']['value'])} = discretization E_D "
                    f"{fmt(f['E_D']['value'])} + learned E_S {fmt(f['E_S']['value'])} (at most; "
                    f"floor {fmt(f['floor']['value'])}); discretization share "
                    f"{fmt(share['value'])} [{fmt(share['lo'])}, {fmt(share['hi'])}]")
        else:
            text = "preferred grid: " + ", ".join(f"{k} {v}" for k, v in r["preferred"].items())
        parts.append(f"{who}: {text}")
    return f"{what}: " + "; ".join(parts)


def diagnose_run(run, what: Sequence[str] | str | None = None, *, sampler: str | None = None,
                 steps: int | None = None, grid: str | None = None, n: int = 1000, seed: int = 0,
                 oracle: bool = False, batch_size: int | None = None, device: str | torch.device = "cpu",
                 command: str | None = None, log: Callable[[str], None] = lambda s: None) -> dict[str, Path]:
    """:func:`diagnose` of a loaded run (:class:`errprop.builders.Run`) into ``RUN/diagnostics``
    (``command.txt`` beside the results): its data, sampler settings and grid, with ``sampler``,
    ``steps`` and ``grid`` defaulting to the run's ``sample`` section.

    ``oracle``: also measure the exact denoiser — the mixture, or on images the ideal denoiser of
    the training set, with the test split (when there is one) as held-out images. ``what`` None
    measures modular, cumulative and gap, and learned with an image oracle. ``log`` receives one
    line saying what is measured (and a note when the held-out images are missing).
    """
    data = load_data(run.config, "train")
    exact, heldout = None, None
    if oracle and isinstance(data, GaussianMixture):
        exact = data
    elif oracle:  # images: the ideal denoiser of the training set (exact for its distribution)
        exact = EmpiricalDenoiser(data.to(device))
        try:  # held-out images tell where D* memorises
            heldout = load_data(run.config, "test")
        except ErrpropError as e:
            log(f"diagnose: no held-out images ({e}); where D* memorises is not measured")
    if what is None:
        what = "modular,cumulative,gap" + (",learned" if oracle and not isinstance(data, GaussianMixture)
                                           else "")
    sc = run.config.sample
    sampler, steps = sampler or sc.sampler, steps or sc.steps
    check_sampling(run.config, run.process, [steps], grid)
    out = make_dir(Path(run.path) / "diagnostics", "diagnostics folder")
    log(f"diagnose {run.path}: {what if isinstance(what, str) else ','.join(what)} ({sampler}, {steps} "
        f"steps, n = {n})")
    written = diagnose(run.denoiser, run.process, data, what, sampler=sampler, steps=steps, grid=grid, n=n,
                       seed=seed, out_dir=out, oracle=exact, heldout=heldout, batch_size=batch_size,
                       options=sampler_settings(run.config), grid_options=grid_options(run.config),
                       command=command)
    if command is not None:
        write_text(out / "command.txt", command + "\n")
    return written
