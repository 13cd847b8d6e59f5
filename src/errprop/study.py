"""Paired, multi-seed comparisons of training objectives on Gaussian mixtures (exact ground truth).

A *study* trains every objective ("arm") with every seed — same seed, same initial weights, same
data and training noise across arms — then measures each model with the same sampling noise:

- **quality** at several DDIM/DDPM step counts: exact excess cross-entropy
  ``E_samples[−log p] − E_data[−log p]`` (nats; the mean, and the median companion that a few
  far-off samples cannot dominate), MMD² against fresh data, and mode balance;
- **error propagation** along one DDPM chain: the exact modular KL of each step, the cumulative
  error (excess cross-entropy of the chain against the exact marginal at every grid point), and
  SA's estimation gap *minus the exact denoiser's gap* — the part a model can change.

The exact denoiser of the mixture is measured with the same noise, as the reference every model
is compared with, and every metric has its data-vs-data floor. Per arm the seeds give mean ±
spread; each arm is compared with the baseline by paired differences (:func:`errprop.stats.paired`).
Results are cached per (arm, seed) and runs are resumable, so an interrupted study continues.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint
from . import config as config_mod
from .builders import build_process, load_data, load_run
from .data.gmm import GaussianMixture
from .diagnostics.cumulative import cumulative_error
from .diagnostics.gap import estimation_gap
from .diagnostics.modular import modular_error
from .errors import ErrpropError
from .files import atomic_write_text, to_jsonable
from .generate import generate
from .grids import make_grid
from .keys import KEY_DATA
from .metrics.mmd import mmd2
from .metrics.xent import excess_cross_entropy
from .samplers import step_options
from .stats import holm_adjust, paired, summary
from .streams import default_dtype, draw_data, reference_sets
from .train import NUMERICS, TrainingInterrupted, read_metrics, train_to_end

_MMD_N = 1000


@dataclass
class Arm:
    """One objective of a study: a name, a label for people, and its config overrides."""

    name: str
    label: str
    overrides: list[str]


#: The network and training of every mixture experiment (the demo, E1, E4, E5, B8): a model small
#: enough that its errors stay visible above the floors at the budgets they train for.
MIXTURE_MODEL = ["model.width=128", "model.depth=2", "train.batch_size=256", "train.lr=1e-3",
                 "train.warmup=100", "train.ema_decay=0.995", "train.log_every=100"]
#: The width of :data:`MIXTURE_MODEL`'s MLP.
MIXTURE_WIDTH = next(int(o.split("=")[1]) for o in MIXTURE_MODEL if o.startswith("model.width="))


def mixture_model(width: int = MIXTURE_WIDTH) -> tuple[list[str], str]:
    """:data:`MIXTURE_MODEL` at another MLP width (a larger D wants a wider network, E5) and the tag
    that names a study of it (``""`` at the mixtures' own width, else ``"_w<width>"``): a study of
    another width is a result of its own, its runs in folders of their own."""
    if width < 1:
        raise ErrpropError(f"expected a positive integer (the MLP's width), got {width}")
    model = [o for o in MIXTURE_MODEL if not o.startswith("model.width=")] + [f"model.width={width}"]
    return model, "" if width == MIXTURE_WIDTH else f"_w{width}"


def sizes(quick: bool = False) -> dict:
    """The measurement sizes of the mixture experiments (``Settings`` fields): DDIM/solver steps,
    samples per setting, and the error-propagation chain; ``quick`` for smoke runs whose numbers
    mean nothing."""
    if quick:
        return {"sampling_steps": [5, 10], "n": 300, "diag_steps": 10, "n_diag": 200}
    return {"sampling_steps": [5, 10, 20, 50], "n": 2000, "diag_steps": 20, "n_diag": 1000}


def mixture(name: str) -> tuple[list[str], int, str]:
    """The experiments' mixtures by name: ``ring8``, ``grid25`` (2-D) and ``randomD`` — 8 random
    Gaussians in D dimensions (mixture seed 0), any D ≥ 1. Returns (config overrides, D, label)."""
    if name == "ring8":
        return ["data.name=ring8"], 2, "ring of 8 Gaussians (2-D)"
    if name == "grid25":
        return ["data.name=grid25"], 2, "5×5 grid of Gaussians (2-D)"
    if name.startswith("random") and name[6:].isdigit() and int(name[6:]) >= 1:
        d = int(name[6:])
        return (["data.name=random", f"data.dim={d}", "data.components=8", "data.mixture_seed=0"], d,
                f"random mixture of 8 Gaussians in {d}-D")
    raise ErrpropError(f"unknown mixture {name!r}: ring8, grid25 or randomD (e.g. random16)")


def objective_arms(dim: int, names: Sequence[str] | None = None) -> list[Arm]:
    """The objectives the experiments compare, each at its paper's or released code's balance: SA
    at the code's λ (K = 2) and the paper's table (K = 3, 4; relative τ), SA-2 with the baseline's
    uniform t (SA's code draws t antithetically: this arm isolates the objective), EP at the code's
    balance (λ = D, data dimension ``dim``), DDPM-IP at its usual γ. ``names`` picks some, in this
    order; the baseline always comes first."""
    arms = [
        Arm("baseline", "baseline (ε-loss)", ["loss.name=simple"]),
        Arm("sa2", "SA-2 (λ=1, code)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0"]),
        Arm("sa2_uniform", "SA-2 (λ=1, uniform t)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0",
                                                     "loss.sa.t_sampling=uniform"]),
        Arm("sa3", "SA-3 (λ=0.3, paper)", ["loss.name=sa", "loss.sa.K=3", "loss.sa.lam=0.3"]),
        Arm("sa4", "SA-4 (λ=0.2, paper)", ["loss.name=sa", "loss.sa.K=4", "loss.sa.lam=0.2"]),
        Arm("sa2_tau", "SA-2 (λ=1, relative τ)", ["loss.name=sa", "loss.sa.K=2", "loss.sa.lam=1.0",
                                                  "loss.sa.tau=relative"]),
        Arm("ep", f"EP (L=5, λ=D={dim})", ["loss.name=ep", "loss.ep.L=5", f"loss.ep.lam={dim}.0"]),
        Arm("ip", "DDPM-IP (γ=0.1)", ["loss.name=simple", "loss.input_perturbation=0.1"]),
    ]
    if names is None:
        return arms
    unknown = set(names) - {a.name for a in arms}
    if unknown:
        raise ErrpropError(f"unknown arm(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(a.name for a in arms)}")
    return [a for a in arms if a.name == "baseline" or a.name in names]


@dataclass
class Settings:
    """What a study trains and measures (the same for every arm)."""

    base: list[str]  # config overrides shared by every arm (data, model, train budget)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sampling_steps: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    samplers: list[str] = field(default_factory=lambda: ["ddim", "ddpm"])
    n: int = 2000  # samples per quality setting
    diag_steps: int = 20  # DDPM steps of the error-propagation chain
    n_diag: int = 1000
    # Earlier training steps measured too (each a saved checkpoint of the same run: one long
    # training per arm × seed, scored along the way — a model's quality against its budget).
    budgets: list[int] = field(default_factory=list)

    def key(self) -> dict:
        # budgets only when asked for, so that studies without them keep their caches
        return {k: v for k, v in vars(self).items() if k != "seeds" and (k != "budgets" or v)}


# --------------------------------------------------------------------------------- measuring
def _nll(mixture, x: torch.Tensor) -> torch.Tensor:
    return -mixture.log_prob(x.double())


def quality(mixture, x: torch.Tensor, ref: torch.Tensor, ref_nll: torch.Tensor) -> dict:
    """Exact quality metrics of samples ``x`` against a reference data set of the same size."""
    nll = _nll(mixture, x)
    finite = torch.isfinite(nll)
    counts, off = mixture.mode_counts(x[finite]) if finite.all() else (None, int((~finite).sum()))
    ex = excess_cross_entropy(nll, ref_nll)
    out = {"xent": ex["mean"], "xent_median": ex["median"],
           # MMD² on the first 1000 pairs: its kernels are O(n²) and it only backs up the exact xent
           "mmd2": float(mmd2(x[:_MMD_N].float(), ref[:_MMD_N].float())),
           "outliers": ex["outliers"]}
    if counts is not None:
        out["modes"] = float((counts / len(x) - mixture.weights).abs().max())
        out["off_mode"] = off / len(x)
    return out


def measure(denoiser, process, mixture, settings: Settings, seed: int) -> dict:
    """Quality and error-propagation measurements of one denoiser, with sampling noise ``seed``."""
    n = settings.n
    ref = reference_sets(mixture, n, seed)[0]
    ref_nll = _nll(mixture, ref)
    res: dict = {"quality": {}}
    for sampler in settings.samplers:
        for k in settings.sampling_steps:
            x = generate(denoiser, process, (mixture.dim,), n, seed=seed, sampler=sampler, steps=k,
                         batch_size=n)
            res["quality"][f"{sampler}-{k}"] = quality(mixture, x, ref, ref_nll)
    sigmas = make_grid("uniform", process, settings.diag_steps)
    opts = step_options("ddpm", settings.diag_steps, process)
    m = settings.n_diag
    mod = modular_error(denoiser, mixture, sigmas, step="ddpm", options=opts, n=m, seed=seed,
                        process=process)
    cum = cumulative_error(denoiser, process, mixture, sigmas, step="ddpm", options=opts, n=m,
                           seed=seed, metrics=("xent",))
    x0 = draw_data(mixture, m, seed, KEY_DATA, default_dtype(denoiser))
    gap = estimation_gap(denoiser, process, x0, sigmas=sigmas, step="ddpm", options=opts, seed=seed)
    res["modular_kl"] = mod["kl"]
    res["modular_sigma"] = mod["sigma"]
    res["cumulative_xent"] = cum["xent"]
    res["cumulative_floor"] = cum["xent_floor"]
    res["cumulative_sigma"] = cum["sigma"]
    res["gap"] = gap["gap"]
    return res


def floors(mixture, settings: Settings, seed: int) -> dict:
    """The data-vs-data value of every quality metric at the study's n (what a perfect model gets)."""
    ref, other = reference_sets(mixture, settings.n, seed)
    return quality(mixture, other, ref, _nll(mixture, ref))


# --------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class _Unit:
    """One (arm, seed) of a study: its config, run folder and cache key."""

    arm: Arm
    seed: int
    cfg: config_mod.Config
    run: Path


def _units(out: Path, arms: Sequence[Arm], settings: Settings) -> list[_Unit]:
    units = []
    for arm in arms:
        for seed in settings.seeds:
            cfg = config_mod.load(overrides=settings.base + arm.overrides + [f"train.seed={seed}"])
            units.append(_Unit(arm, seed, cfg, out / "runs" / arm.name / f"seed{seed}"))
    return units


def _cached(unit: _Unit, settings: Settings) -> dict | None:
    """The unit's cached measurement if it was made with these settings and this config."""
    cache = unit.run / "study.json"
    if not cache.is_file():
        return None
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):  # unreadable: measured again (the trained checkpoints are kept)
        return None
    old = cached.get("key") if isinstance(cached.get("key"), dict) else {}
    # A model trained by other training numerics is retrained, never paired with today's arms.
    if (old.get("settings") == settings.key() and config_mod.same(old.get("config"), unit.cfg)
            and old.get("numerics") == NUMERICS):
        return cached
    return None


#: Set in a worker process whose training a signal stopped: the units already queued to it (a
#: process pool hands each worker its next task before the last one ends, and cancelling cannot
#: take it back) then end at once instead of each training to its end while the study waits.
_STOPPED: list[str] = []


def pool_task(fn):
    """Make ``fn`` a task for a pool worker process that a stop ends: it does not start once a
    signal has stopped a training in this process (:class:`errprop.train.TrainingInterrupted`,
    which it raises then), and such an interruption inside it marks the process stopped. Used by
    the studies' tasks and E8's."""
    @functools.wraps(fn)
    def task(*args, **kwargs):
        if _STOPPED:
            raise TrainingInterrupted(f"not started: {_STOPPED[0]}")
        try:
            return fn(*args, **kwargs)
        except TrainingInterrupted as e:
            _STOPPED.append(f"this worker's last training was stopped ({e})")
            raise
    return task


@pool_task
def _train_and_measure(unit: _Unit, settings: Settings, progress: bool, threads: int) -> dict:
    """Train one (arm, seed) to the end and measure it; the result is cached in its run folder.
    ``threads``: intra-op threads, the same wherever the unit runs (they can change the rounding)."""
    torch.set_num_threads(threads)
    mixture = load_data(unit.cfg)
    t0 = time.perf_counter()
    train_to_end(unit.cfg, unit.run, progress)
    train_s = time.perf_counter() - t0
    r = load_run(unit.run)
    res = measure(r.denoiser, r.process, mixture, settings, unit.seed)
    at = {}
    for b in settings.budgets:
        rb = load_run(checkpoint.checkpoint_path(unit.run, b))
        at[b] = measure(rb.denoiser, rb.process, mixture, settings, unit.seed)
    cached = {"key": {"settings": settings.key(), "config": unit.cfg.to_dict(), "numerics": NUMERICS},
              "result": res, "at": at, "train_seconds": train_s}
    atomic_write_text(unit.run / "study.json", json.dumps(cached))
    return cached


@pool_task
def _measure_exact(base: list[str], settings: Settings, seed: int, threads: int) -> tuple[dict, dict]:
    """The exact denoiser's measurements and the data-vs-data floors of one seed."""
    torch.set_num_threads(threads)
    cfg = config_mod.load(overrides=base)
    mixture, process = load_data(cfg), build_process(cfg)
    return measure(mixture, process, mixture, settings, seed), floors(mixture, settings, seed)


def run_study(out: Path, arms: Sequence[Arm], settings: Settings, progress: bool = True,
              log=print, jobs: int = 1, executor: Executor | None = None) -> dict:
    """Train and measure every arm × seed into ``out`` and return the summary (also ``study.json``).

    ``jobs`` > 1 runs the (arm, seed) trainings and measurements, and the exact denoiser's, in
    that many worker processes, each with the calling process's intra-op thread count; every unit
    computes exactly what it computes alone, so ``study.json`` is the same for any ``jobs``.
    ``executor``: run the units on any :class:`concurrent.futures.Executor` instead — e.g. a Dask
    cluster's ``Client(...).get_executor()`` — whose workers see ``out`` (a shared file system).
    Finished units are cached in their run folders and interrupted trainings continue from their
    checkpoints, so a study rerun after an interruption only does what is left.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if arms[0].name != "baseline":
        raise ErrpropError("run_study: the first arm must be the baseline the others are paired with")
    base_cfg = config_mod.load(overrides=settings.base)
    if not isinstance(load_data(base_cfg), GaussianMixture):
        raise ErrpropError("a study needs Gaussian-mixture data (exact metrics); got "
                           f"data.name {base_cfg.data.name!r}")
    units = _units(out, arms, settings)
    _check_budgets(units[0].cfg, settings)
    done = {(u.arm.name, u.seed): c for u in units if (c := _cached(u, settings)) is not None}
    todo = [u for u in units if (u.arm.name, u.seed) not in done]
    exact: dict = {}
    threads = torch.get_num_threads()
    if (jobs <= 1 and executor is None) or not todo:
        for u in todo:
            log(f"[study] {u.arm.label}, seed {u.seed}: training {u.cfg.train.steps} steps and "
                f"measuring → {u.run}")
            done[(u.arm.name, u.seed)] = _train_and_measure(u, settings, progress, threads)
        log("[study] the exact denoiser: measuring (the reference every model is compared with)")
        for seed in settings.seeds:
            exact[seed] = _measure_exact(settings.base, settings, seed, threads)
        torch.set_num_threads(threads)
    else:
        _run_parallel(todo, settings, jobs, executor, threads, progress, log, done, exact)
    results: dict = {"exact": {}, "floor": {}}
    at: dict = {b: {"exact": results["exact"], "floor": results["floor"]} for b in settings.budgets}
    times: dict = {}
    for u in units:  # assembled in one fixed order, whatever order the units finished in
        d = done[(u.arm.name, u.seed)]
        results.setdefault(u.arm.name, {})[u.seed] = d["result"]
        for b in settings.budgets:  # JSON turned the budgets into strings
            at[b].setdefault(u.arm.name, {})[u.seed] = d["at"].get(b, d["at"].get(str(b)))
        times.setdefault(u.arm.name, []).append(d["train_seconds"])
    for seed in settings.seeds:
        results["exact"][seed], results["floor"][seed] = exact[seed]
    summary_ = summarize(results, arms, settings)
    if settings.budgets:
        summary_["budgets"] = {b: summarize(at[b], arms, settings) for b in settings.budgets}
    atomic_write_text(out / "study.json", json.dumps(
        {"settings": vars(settings), "arms": [vars(a) for a in arms], "results": to_jsonable(results),
         **({"results_at": to_jsonable({b: {k: v for k, v in r.items() if k not in ("exact", "floor")}
                                        for b, r in at.items()})} if settings.budgets else {}),
         "summary": to_jsonable(summary_)}, indent=1))
    # Wall-clock lives apart from the numbers, so that two runs of a study give identical study.json.
    summary_["train_seconds"] = {a: summary(v) for a, v in times.items()}
    atomic_write_text(out / "timing.json", json.dumps(summary_["train_seconds"], indent=1))
    return {"results": results, "summary": summary_,
            **({"results_at": at} if settings.budgets else {})}


def step_costs(base: Sequence[str], arms: Sequence[Arm], steps: int = 300, skip: int = 100,
               repeats: int = 3) -> dict[str, float]:
    """The cost of a training step of each arm relative to the baseline's, measured here and now.

    Every arm trains ``steps`` steps in a scratch folder, one after another and ``repeats`` times
    over (A B C A B C …, so that a change of the machine's load falls on all arms alike), on the
    calling process's threads; the time per step after the first ``skip`` (warm-up and set-up
    left out) is read from the training's own log, and each arm's median over the repeats is
    divided by the baseline's. What a compute-matched comparison needs: the whole-run wall-clocks
    of a parallel study also carry whatever else shared the cores."""
    if steps <= skip:
        raise ErrpropError(f"step_costs: steps ({steps}) must exceed skip ({skip})")
    per: dict[str, list[float]] = {a.name: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="errprop-costs-") as tmp:
        for r in range(repeats):
            for a in arms:
                cfg = config_mod.load(overrides=[*base, *a.overrides, f"train.steps={steps}",
                                                 f"train.log_every={skip}", f"train.ckpt_every={steps}"])
                run = Path(tmp) / f"{a.name}-{r}"
                train_to_end(cfg, run, progress=False)
                rows = {row["step"]: row["time"] for row in read_metrics(run / "metrics.jsonl")}
                per[a.name].append((rows[steps] - rows[skip]) / (steps - skip))
    med = {k: statistics.median(v) for k, v in per.items()}
    return {k: v / med["baseline"] for k, v in med.items()}


def _check_budgets(cfg: config_mod.Config, settings: Settings) -> None:
    """Every budget must be a checkpoint the training saves and keeps until it is measured."""
    tc = cfg.train
    for b in settings.budgets:
        if not 0 < b < tc.steps or b % tc.ckpt_every:
            raise ErrpropError(f"study budget {b}: must be below train.steps ({tc.steps}) and a "
                               f"multiple of train.ckpt_every ({tc.ckpt_every})")
    if settings.budgets:
        kept = (tc.steps - min(settings.budgets)) // tc.ckpt_every + 1
        if tc.keep_last < kept:
            raise ErrpropError(f"study budgets from {min(settings.budgets)} steps: train.keep_last must "
                               f"be ≥ {kept} to keep those checkpoints until they are measured "
                               f"(it is {tc.keep_last})")


def training_cost(cfg: config_mod.Config) -> float:
    """A unit's rough training cost in baseline steps: SA-K makes K network passes, EP's rollouts
    about 2.7 on average (the demo's measured per-step costs: 1, 1.5, 2.7 for baseline, SA-2, EP)."""
    per_step = {"sa": 0.5 + 0.5 * cfg.loss.sa.K, "ep": 2.7}.get(cfg.loss.name, 1.0)
    return cfg.train.steps * per_step


def _steps_done(run: Path) -> int:
    rows = read_metrics(run / "metrics.jsonl")
    return rows[-1]["step"] if rows else 0


def _run_parallel(todo: list[_Unit], settings: Settings, jobs: int, executor: Executor | None,
                  threads: int, progress: bool, log, done: dict, exact: dict) -> None:
    """The units (and the exact denoiser's measurements) on ``executor``, or in ``jobs`` worker
    processes, with one progress bar over all training steps (read from the runs' metrics.jsonl
    as they are written)."""
    own = executor is None
    if own:  # spawn: fork would copy torch's thread pools and locks
        executor = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    where = f"{jobs} processes" if own else type(executor).__name__
    bar = tqdm(total=sum(u.cfg.train.steps for u in todo), disable=not progress or not todo,
               desc=f"train ({where})", unit="step", dynamic_ncols=True, mininterval=1.0)
    log(f"[study] {len(todo)} trainings and measurements and the exact denoiser's in {where}")
    futures: dict = {}
    stop: list[int] = []  # the signal that asked this process to stop, once one has
    with _stop_signals(stop):
        try:
            # Longest first (LPT): the last units to finish are then short ones, not an EP training
            # alone on one core while the others idle. The order cannot change any number.
            todo = sorted(todo, key=lambda u: -training_cost(u.cfg))
            futures = {executor.submit(_train_and_measure, u, settings, False, threads): u for u in todo}
            futures |= {executor.submit(_measure_exact, settings.base, settings, s, threads): s
                        for s in settings.seeds}
            pending = set(futures)
            while pending and not stop:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for f in finished:
                    if stop:  # a worker stopped by the same Ctrl-C: its checkpoint is saved
                        break
                    what = futures[f]
                    if isinstance(what, _Unit):
                        done[(what.arm.name, what.seed)] = f.result()  # re-raises a worker's error
                        with tqdm.external_write_mode():
                            log(f"[study] {what.arm.label}, seed {what.seed}: trained and measured")
                    else:
                        exact[what] = f.result()
                bar.n = sum(min(_steps_done(u.run), u.cfg.train.steps) for u in todo)
                bar.refresh()
            if stop:
                raise KeyboardInterrupt
        except BaseException:
            for f in futures:
                f.cancel()
            if own:
                # Ctrl-C reaches the workers too (same process group); a kill of this process alone
                # does not: stop them, so that each saves its checkpoint for the rerun. SIGTERM, not
                # a second SIGINT, which means "quit without saving" to a training.
                for p in list(getattr(executor, "_processes", {}).values()):
                    with contextlib.suppress(OSError):
                        os.kill(p.pid, signal.SIGTERM)
            raise
        finally:
            bar.close()
            if own:
                executor.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _stop_signals(stop: list[int]):
    """While the workers run, SIGINT/SIGTERM to this process are noted in ``stop`` (the loop then
    stops the workers, waits for their checkpoints and raises KeyboardInterrupt) instead of
    interrupting whatever line runs — e.g. the reading of a worker's result."""
    def note(signum, frame):
        stop.append(signum)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, note)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------- summarising
QUALITY = {"xent": "excess cross-entropy, mean (nats)",
           "xent_median": "excess cross-entropy, median (nats)",
           "mmd2": "MMD² to data"}


def scalar_metrics(res: dict) -> dict[str, float]:
    """The scalar, lower-is-better numbers of one measurement, by name."""
    out = {}
    for setting, q in res["quality"].items():
        for m in QUALITY:
            out[f"{m} {setting}"] = q[m]
    out["modular KL, sum over steps"] = sum(v for v in res["modular_kl"] if v is not None
                                            and math.isfinite(v))
    cum = [v for v in res["cumulative_xent"] if v is not None and math.isfinite(v)]
    out["cumulative error, mean over steps"] = sum(cum) / len(cum)
    out["estimation gap, last step"] = res["gap"][-1]
    return out


def summarize(results: dict, arms: Sequence[Arm], settings: Settings) -> dict:
    """Mean ± spread per arm and metric; paired differences against the baseline."""
    seeds = settings.seeds
    per = {a.name: [scalar_metrics(results[a.name][s]) for s in seeds] for a in arms}
    exact = [scalar_metrics(results["exact"][s]) for s in seeds]
    # The gap the model can change: the model's minus the exact denoiser's, per seed.
    for name in per:
        for row, ex in zip(per[name], exact):
            row["estimation gap above exact, last step"] = (row["estimation gap, last step"]
                                                            - ex["estimation gap, last step"])
    metrics = list(per["baseline"][0])
    out: dict = {"metrics": metrics, "arms": {}, "paired": {}, "exact": {}, "floor": {}}
    for name, rows in per.items():
        out["arms"][name] = {m: summary([r[m] for r in rows]) for m in metrics}
    for m in metrics:
        if m in exact[0]:
            out["exact"][m] = summary([e[m] for e in exact])
    for m in QUALITY:
        for setting in results["exact"][seeds[0]]["quality"]:
            out["floor"][f"{m} {setting}"] = summary([results["floor"][s][m] for s in seeds])
    base = per["baseline"]
    for a in arms[1:]:
        out["paired"][a.name] = {m: paired([r[m] for r in per[a.name]], [r[m] for r in base])
                                 for m in metrics}
    # The family: every arm against the baseline on every metric; Holm keeps its error rate ≤ 5 %.
    holm_adjust({(a.name, m): out["paired"][a.name][m] for a in arms[1:] for m in metrics})
    out["family_size"] = (len(arms) - 1) * len(metrics)
    return out


CONFIDENCE = 0.95


def _binom_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0


def verdict(summary_: dict, arms: Sequence[Arm], settings: Settings) -> str:
    """A short conclusion computed from the paired differences (one paragraph per arm)."""
    n = len(settings.seeds)
    conf = f"{100 * CONFIDENCE:.0f} %"
    lines = []
    quality_keys = [m for m in summary_["metrics"] if m.split(" ")[0] in QUALITY]
    for a in arms[1:]:
        p = summary_["paired"][a.name]
        better = [m for m in quality_keys if p[m]["verdict"] == "lower"]
        worse = [m for m in quality_keys if p[m]["verdict"] == "higher"]
        same = len(quality_keys) - len(better) - len(worse)
        # With N comparisons at 95 %, about 2.5 % of them land on each side by chance alone: a
        # direction counts only if its count is unlikely under that (binomial tail < 5 %).
        chance = 0.5 * (1 - CONFIDENCE)
        better_real = _binom_tail(len(better), len(quality_keys), chance) < 0.05
        worse_real = _binom_tail(len(worse), len(quality_keys), chance) < 0.05
        if better_real and not worse_real:
            head = f"{a.label} improves on the baseline"
        elif worse_real and not better_real:
            head = f"{a.label} is worse than the baseline"
        elif better_real and worse_real:
            head = f"{a.label} is mixed against the baseline"
        else:
            head = f"{a.label} shows no difference from the baseline that rises above seed noise"
        expected = chance * len(quality_keys)
        holm_b = sum(p[m].get("p_holm", 1.0) < 1 - CONFIDENCE for m in better)
        holm_w = sum(p[m].get("p_holm", 1.0) < 1 - CONFIDENCE for m in worse)
        text = (f"{head}: of {len(quality_keys)} sample-quality comparisons "
                f"(metric × sampler × steps), {len(better)} better, {len(worse)} worse, {same} "
                f"within noise ({conf} paired t-intervals over {n} seeds; chance alone puts about "
                f"{expected:.1f} on each side); {holm_b} better and {holm_w} worse survive Holm's "
                f"correction over all {summary_.get('family_size', '?')} comparisons of this study.")
        for m, what in (("estimation gap above exact, last step", "its estimation gap above the "
                         "exact denoiser's at the last step"),
                        ("cumulative error, mean over steps", "its cumulative error (mean over the "
                         "chain)"), ("modular KL, sum over steps", "its summed modular KL")):
            d, b = p[m], summary_["arms"]["baseline"][m]["mean"]
            word = {"lower": "lower", "higher": "higher", "no difference": "not different"}[d["verdict"]]
            text += (f" {what[0].upper() + what[1:]} is {word} (Δ = {d['mean']:+.3g}, CI "
                     f"[{d['lo']:+.3g}, {d['hi']:+.3g}]; baseline {b:.3g}).")
        for word, group in (("Better", better), ("Worse", worse)):
            at = [m.split(" ", 1)[1] for m in group if m.startswith("xent_median ")]
            if at:
                text += f" {word} median excess cross-entropy at: {', '.join(at)}."
        lines.append(text)
    return "\n".join(lines)
