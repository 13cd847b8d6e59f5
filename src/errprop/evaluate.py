"""Sample quality against the number of sampling steps: ``errprop evaluate``.

Each score comes with its n and its **floor**: the same metric between real data and real data at
the same n, the value a perfect model would get up to sampling noise.

=========  =======================================================================================
metric     meaning
=========  =======================================================================================
``fd``     Fréchet distance on the features of a classifier trained on the same data set (images);
           reference: the test split; floor: a train subset of n images vs the test split
``mmd``    MMD² (EP's multi-bandwidth kernel) against fresh data; floor: fresh vs fresh
``swd``    sliced Wasserstein-2 against fresh data; floor: fresh vs fresh
``xent``   mixtures only: excess cross-entropy E_samples[−log p] − E_data[−log p] (nats); floor:
           fresh data's excess (≈ 0)
``modes``  mixtures only: the largest deviation of a mode's share from its weight, and the
           off-mode fraction in the summary
``fid``    Inception FID (RGB data; needs ``inception_weights``)
=========  =======================================================================================
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from .builders import MIXTURES, Run, check_sampling, grid_options, load_data, sample_clip, sampler_settings
from .data.gmm import GaussianMixture
from .errors import ErrpropError
from .files import write_json
from .generate import generate
from .plots import save_figure
from .samplers import nfe
from .streams import reference_sets

METRICS = ("fd", "mmd", "swd", "xent", "modes", "fid")
LABELS = {"fd": "FD (classifier features)", "mmd": "MMD²", "swd": "sliced Wasserstein-2",
          "xent": "excess cross-entropy, mean (nats)", "modes": "max |mode share − weight|",
          "fid": "FID (Inception)"}
MIXTURE_ONLY = ("xent", "modes")
IMAGE_ONLY = ("fd", "fid")


class Scorer:
    """Scores sample sets of one run with one metric against that run's data — the scorer
    :func:`evaluate` uses, for samples drawn elsewhere (another library's sampler, say) to be
    scored exactly as errprop's own.

    ``Scorer(run, metric, n, seed, device)``; ``scorer(x)`` is the score of samples ``x`` (the
    run's data shape, in its data range): ``{"value": …}`` plus, for ``xent``, its robust
    companions. ``scorer.floor()`` scores ``floor_set`` (the same metric between real data sets
    at this n and seed). For ``fd``, ``accuracy`` is the feature classifier's test accuracy.
    Raises :class:`ErrpropError` for a metric the run's data cannot have (``xent`` on images).
    """

    def __init__(self, run: Run, metric: str, n: int, seed: int, device, inception_weights=None):
        self.metric, self.n = metric, n
        cfg = run.config
        self.data = load_data(cfg, "train")
        self.mixture = isinstance(self.data, GaussianMixture)
        if metric not in METRICS:
            raise ErrpropError(f"--metric: unknown {metric!r}; choose from {', '.join(METRICS)}")
        if metric in MIXTURE_ONLY and not self.mixture:
            raise ErrpropError(f"--metric {metric} needs a Gaussian-mixture run (exact density)")
        if metric in IMAGE_ONLY and self.mixture:
            raise ErrpropError(f"--metric {metric} needs image data; use mmd, swd, xent or modes")
        if self.mixture:
            self.ref, self.floor_set = reference_sets(self.data, n, seed)
        else:
            self.test = load_data(cfg, "test")
            g = torch.Generator().manual_seed(seed)
            self.floor_set = self.data[torch.randperm(len(self.data), generator=g)[: min(n, len(self.data))]]
            self.ref = self.test
        if metric == "fd":
            from .metrics.features import compute_stats, load_or_train_classifier, reference_stats

            self.classifier, self.accuracy = load_or_train_classifier(cfg.data.name, cfg.data.root,
                                                                      device=device)
            self.ref_stats = reference_stats(cfg.data.name, "test", cfg.data.root, device=device)
            self._stats = lambda x: compute_stats(self.classifier, x)
        if metric == "fid":
            from .metrics.inception import load_inception

            self.inception = load_inception(inception_weights, device)
            self.device = device

    def __call__(self, x: torch.Tensor) -> dict:
        """The score of ``x``: ``{"value": …}`` plus robust companions for ``xent``."""
        m = self.metric
        if m == "fd":
            from .metrics.frechet import frechet_distance

            s, r = self._stats(x), self.ref_stats
            return {"value": float(frechet_distance(s.mean, s.cov, r.mean, r.cov))}
        if m == "mmd":
            from .metrics.mmd import mmd2

            ref = self.ref[: len(x)] if self.mixture else self.ref[: min(len(self.ref), 5000)]
            return {"value": float(mmd2(x.flatten(1), ref.flatten(1)))}
        if m == "swd":
            from .metrics.swd import sliced_wasserstein

            k = min(len(x), len(self.ref))
            g = torch.Generator().manual_seed(0)
            swd = sliced_wasserstein(x[:k].flatten(1), self.ref[:k].flatten(1), generator=g)
            return {"value": float(swd)}
        if m == "xent":
            from .metrics.xent import excess_cross_entropy

            log_p = self.data.log_prob
            ex = excess_cross_entropy(-log_p(x.double()), -log_p(self.ref.double()))
            return {"value": ex.pop("mean"), **ex}
        if m == "modes":
            counts, _ = self.data.mode_counts(x)
            return {"value": float((counts / len(x) - self.data.weights).abs().max())}
        from .metrics.inception import inception_metrics

        fid = inception_metrics(x, self.ref, device=self.device, model=self.inception)["fid"]
        return {"value": float(fid)}

    def floor(self) -> dict:
        """The score of ``floor_set``: what a perfect model gets at this n, up to sampling noise."""
        return self(self.floor_set)


def default_metrics(run: Run) -> list[str]:
    """What ``evaluate`` scores when no metric is named: exact ``xent`` and ``modes`` on a mixture,
    ``fd`` on images."""
    return ["xent", "modes"] if run.config.data.name in MIXTURES else ["fd"]


def settings_key(metric: str, n: int, seed: int, run: Run) -> str:
    """The file stem of a result: the metric and every setting that changes its numbers apart from
    sampler and steps (which are rows of the file). Results at other settings never overwrite it."""
    sc = run.config.sample
    grid = sc.grid
    if grid == "uniform":
        grid += f"-{sc.spacing}"
    elif grid == "edm":
        grid += f"-rho{sc.rho:g}"
    elif grid == "list":
        grid += "-" + hashlib.sha256(json.dumps(sc.sigmas).encode()).hexdigest()[:8]
    return f"{metric}-n{n}-seed{seed}-{grid}-step{run.step}"


def read_results(run_dir: str | Path) -> list[dict]:
    """Every result ``evaluate`` wrote into a run, each with its ``file``; a file that cannot be
    read (cut off by a crash of an older errprop) is an error naming it."""
    out = []
    for p in sorted((Path(run_dir) / "eval").glob("*.json")):
        try:
            res = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ErrpropError(f"{p} is not valid JSON (cut off?); delete it and rerun evaluate") from None
        if not isinstance(res, dict) or not {"metric", "n", "results", "floor"} <= set(res):
            raise ErrpropError(f"{p} is not an errprop evaluation result")
        out.append({**res, "file": p.name})
    return out


def evaluate(run: Run, steps: list[int], samplers: list[str], metric: str | list[str] | None = None,
             n: int = 10_000, seed: int = 0, batch_size: int = 500, device: str | torch.device = "cpu",
             inception_weights: str | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Score ``n`` samples of ``run`` for every sampler × step count with one metric or several
    (the samples are drawn once and scored by each; default :func:`default_metrics`).

    ``command``: the command line that asked for it, recorded in the result (``None`` from Python).

    Results are written to ``RUN/eval/<metric>-n<n>-seed<seed>-<grid>-step<train step>.json``
    (:func:`settings_key`) with a plot beside it: rows for other samplers or step counts at the
    same settings are merged into the file, results at other settings go to their own file.
    Returns the result dict (a dict of them, by metric, for a list or the default).
    """
    if metric is None:
        metrics = default_metrics(run)
    else:
        metrics = [metric] if isinstance(metric, str) else list(metric)
    check_sampling(run.config, run.process, steps)  # every grid, before any sampling
    finished = run.step >= run.config.train.steps
    if not finished:
        print(f"warning: {run.path} is at step {run.step} of train.steps = {run.config.train.steps} "
              "(an interrupted or unfinished run); its scores are marked finished: false",
              file=sys.stderr)
    scorers = {m: Scorer(run, m, n, seed, device, inception_weights) for m in metrics}
    sc = run.config.sample
    rows: dict[str, list] = {m: [] for m in metrics}
    for sampler in samplers:
        for k in steps:
            x = generate(run.denoiser, run.process, run.shape, n, seed=seed, sampler=sampler, steps=k,
                         grid=sc.grid, batch_size=batch_size, device=device, progress=progress,
                         grid_options=grid_options(run.config),
                         **sampler_settings(run.config))
            for m, scorer in scorers.items():
                rows[m].append({"sampler": sampler, "steps": k, "nfe": nfe(sampler, k), **scorer(x)})
    out = Path(run.path) / "eval"
    results = {}
    for m, scorer in scorers.items():
        floor = scorer.floor()
        stem = settings_key(m, n, seed, run)
        path = out / f"{stem}.json"
        new = {(r["sampler"], r["steps"]) for r in rows[m]}
        kept = []
        if path.is_file():
            try:
                kept = [r for r in json.loads(path.read_text())["results"]
                        if (r["sampler"], r["steps"]) not in new]
            except (json.JSONDecodeError, KeyError, TypeError):
                kept = []  # an unreadable earlier file is replaced by this complete result
        merged = sorted(kept + rows[m], key=lambda r: (r["sampler"], r["steps"]))
        for r in merged:  # at or below the data-vs-data value: indistinguishable from data at this n
            r["below_floor"] = r["value"] <= floor["value"]
        result = {"metric": m, "n": n, "seed": seed, "floor": floor.pop("value"),
                  "floor_n": len(scorer.floor_set),
                  **{f"floor_{k}": v for k, v in floor.items()},
                  "train_step": run.step, "finished": finished, "grid": sc.grid,
                  "grid_options": grid_options(run.config), "clip": sample_clip(run.config),
                  "results": merged, "command": command}
        if m == "fd":
            result["classifier_test_accuracy"] = scorer.accuracy
        write_json(path, result)
        plot_metric_vs_steps({Path(run.path).name: result}, out / f"{stem}.png")
        results[m] = {**result, "file": str(path)}
    return results[metric] if isinstance(metric, str) else results


def row(result: dict, sampler: str, steps: int) -> dict:
    """The row of ``(sampler, steps)`` in a result of :func:`evaluate`. Look rows up by setting,
    never by position: the file (and so the returned result) also holds the rows of earlier calls
    at other samplers and step counts with the same settings."""
    hits = [r for r in result["results"] if r["sampler"] == sampler and r["steps"] == steps]
    if not hits:
        raise ErrpropError(f"no {sampler}-{steps} row in the {result.get('metric')} result "
                           f"{result.get('file', '')}")
    return hits[0]


def plot_metric_vs_steps(results: dict[str, dict], path: Path) -> Path:
    """One line per (run, sampler): metric against cost — network evaluations (NFE), not steps, so
    that samplers of different cost per step (Heun: 2) compare fairly — with each run's floor."""
    from .plots import plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, res) in enumerate(results.items()):
        for j, sampler in enumerate(dict.fromkeys(r["sampler"] for r in res["results"])):
            pts = [(r.get("nfe", r["steps"]), r["value"]) for r in res["results"] if r["sampler"] == sampler]
            ax.plot(*zip(*pts), marker="o", color=f"C{i}", ls=("-", "--", ":", "-.")[j % 4],
                    label=f"{name} {sampler}")
        ax.axhline(res["floor"], color=f"C{i}", lw=0.8, alpha=0.5)
    metric = next(iter(results.values()))["metric"]
    values = [r["value"] for res in results.values() for r in res["results"]]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title("thin lines: floor (data vs data at the same n)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def format_table(result: dict) -> str:
    """A plain-text table of one evaluation; ``*`` marks values at or below the floor."""
    m = result["metric"]
    floor = f"floor {result['floor']:.4g} at n = {result['floor_n']}"
    extra = ("median", "trimmed", "outliers") if m == "xent" else ()
    lines = [f"{LABELS.get(m, m)} (n = {result['n']}, seed {result['seed']}, train step "
             f"{result['train_step']}; {floor})",
             f"{'sampler':15} {'steps':>6} {'NFE':>5} {'value':>12}" + "".join(f" {e:>10}" for e in extra)]
    for r in result["results"]:
        mark = " *" if r.get("below_floor") else ""
        lines.append(f"{r['sampler']:15} {r['steps']:6d} {r['nfe']:5d} {r['value']:12.5g}"
                     + "".join(f" {r[e]:10.4g}" for e in extra) + mark)
    if m == "xent":
        lines.append("median/trimmed: robust companions of the mean (a few far-off samples dominate "
                     "it); outliers: fraction less likely than every data point")
    if any(r.get("below_floor") for r in result["results"]):
        lines.append("* at or below the floor: indistinguishable from data at this n")
    return "\n".join(lines)
