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

import json
import shlex
import sys
from pathlib import Path

import torch

from .builders import Run, load_data, sample_clip
from .data.gmm import GaussianMixture
from .errors import ErrpropError
from .generate import generate
from .samplers import nfe

METRICS = ("fd", "mmd", "swd", "xent", "modes", "fid")
MIXTURE_ONLY = ("xent", "modes")
IMAGE_ONLY = ("fd", "fid")


class _Scorer:
    """Scores sample sets of one run with one metric against that run's data."""

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
            self.ref = self.data.sample_n(n, seed=seed + 10_000)
            self.floor_set = self.data.sample_n(n, seed=seed + 20_000)
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

    def __call__(self, x: torch.Tensor) -> float:
        m = self.metric
        if m == "fd":
            from .metrics.frechet import frechet_distance

            s, r = self._stats(x), self.ref_stats
            return float(frechet_distance(s.mean, s.cov, r.mean, r.cov))
        if m == "mmd":
            from .metrics.mmd import mmd2

            ref = self.ref[: len(x)] if self.mixture else self.ref[: min(len(self.ref), 5000)]
            return float(mmd2(x.flatten(1), ref.flatten(1)))
        if m == "swd":
            from .metrics.swd import sliced_wasserstein

            k = min(len(x), len(self.ref))
            g = torch.Generator().manual_seed(0)
            return float(sliced_wasserstein(x[:k].flatten(1), self.ref[:k].flatten(1), generator=g))
        if m == "xent":
            log_p = self.data.log_prob
            return float(log_p(self.ref.double()).mean() - log_p(x.double()).mean())
        if m == "modes":
            counts, _ = self.data.mode_counts(x)
            return float((counts / len(x) - self.data.weights).abs().max())
        from .metrics.inception import inception_metrics

        return float(inception_metrics(x, self.ref, device=self.device, model=self.inception)["fid"])

    def floor(self) -> float:
        return self(self.floor_set)


def evaluate(run: Run, steps: list[int], samplers: list[str], metric: str | list[str] = "fd",
             n: int = 10_000, seed: int = 0, batch_size: int = 500, device: str | torch.device = "cpu",
             inception_weights: str | None = None, progress: bool = True) -> dict:
    """Score ``n`` samples of ``run`` for every sampler × step count with one metric or several
    (the samples are drawn once and scored by each); write ``RUN/eval/<metric>.json`` and a plot of
    each metric against steps. Returns the result dict (a dict of them, by metric, for a list)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    finished = run.step >= run.config.train.steps
    if not finished:
        print(f"warning: {run.path} is at step {run.step} of train.steps = {run.config.train.steps} "
              "(an interrupted or unfinished run); its scores are marked finished: false",
              file=sys.stderr)
    scorers = {m: _Scorer(run, m, n, seed, device, inception_weights) for m in metrics}
    sc = run.config.sample
    rows: dict[str, list] = {m: [] for m in metrics}
    for sampler in samplers:
        for k in steps:
            x = generate(run.denoiser, run.process, run.shape, n, seed=seed, sampler=sampler, steps=k,
                         grid=sc.grid, batch_size=batch_size, device=device, progress=progress,
                         grid_options={"rho": sc.rho, "spacing": sc.spacing, "sigmas": sc.sigmas},
                         eta=sc.eta, variance=sc.variance, s_churn=sc.s_churn,
                         clip=sample_clip(run.config))
            for m, scorer in scorers.items():
                rows[m].append({"sampler": sampler, "steps": k, "nfe": nfe(sampler, k), "value": scorer(x)})
    out = Path(run.path) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for m, scorer in scorers.items():
        result = {"metric": m, "n": n, "seed": seed, "floor": scorer.floor(),
                  "floor_n": len(scorer.floor_set), "train_step": run.step, "finished": finished,
                  "grid": sc.grid,
                  "results": rows[m], "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        if m == "fd":
            result["classifier_test_accuracy"] = scorer.accuracy
        (out / f"{m}.json").write_text(json.dumps(result, indent=1))
        plot_metric_vs_steps({Path(run.path).name: result}, out / f"{m}.png")
        results[m] = result
    return results[metric] if isinstance(metric, str) else results


def plot_metric_vs_steps(results: dict[str, dict], path: Path) -> Path:
    """One line per (run, sampler): metric against steps, with each run's floor dashed."""
    from .plots import plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, res) in enumerate(results.items()):
        for j, sampler in enumerate(dict.fromkeys(r["sampler"] for r in res["results"])):
            pts = [(r["steps"], r["value"]) for r in res["results"] if r["sampler"] == sampler]
            ax.plot(*zip(*pts), marker="o", color=f"C{i}", ls=("-", "--", ":", "-.")[j % 4],
                    label=f"{name} {sampler}")
        ax.axhline(res["floor"], color=f"C{i}", lw=0.8, alpha=0.5)
    metric = next(iter(results.values()))["metric"]
    values = [r["value"] for res in results.values() for r in res["results"]]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs steps (thin lines: floor at the same n)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    """A plain-text table of one evaluation."""
    floor = f"floor {result['floor']:.4g} at n = {result['floor_n']}"
    lines = [f"{result['metric']} (n = {result['n']}; {floor})",
             f"{'sampler':8} {'steps':>6} {'NFE':>5} {'value':>12}"]
    lines += [f"{r['sampler']:8} {r['steps']:6d} {r['nfe']:5d} {r['value']:12.5g}" for r in result["results"]]
    return "\n".join(lines)
