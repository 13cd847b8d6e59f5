"""E1 — do SA, EP and DDPM-IP reduce error propagation? Exact answers on Gaussian mixtures.

Every objective is trained with the same small network, budget and seeds; each is measured with
the same sampling noise and compared with the baseline by paired differences over seeds (95 %
t-intervals), with the exact denoiser and the data-vs-data floors beside every number
(:mod:`errprop.study`). One command per data set; resumable (rerun the same command after an
interruption: finished runs and measurements are reused).

    python experiments/e1_mixtures.py --data ring8 --seeds 10          # ≈ 40 min on 2 cores
    python experiments/e1_mixtures.py --data grid25 --seeds 10
    python experiments/e1_mixtures.py --data random16 --seeds 10
    python experiments/e1_mixtures.py --data ring8 --seeds 2 --quick   # smoke run
    python experiments/e1_mixtures.py --data ring8 --rerender  # the report again, from docs' study.json

Writes ``<out>/<data>/`` (runs, study.json, plots, report.md/.html) and copies report.md, its
plots and study.json to ``docs/results/e1_<data>/``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

import torch

from errprop.demo import default_jobs
from errprop.errors import ErrpropError
from errprop.files import atomic_write_text
from errprop.provenance import provenance
from errprop.study import MIXTURE_MODEL, Arm, Settings, mixture, objective_arms, run_study, sizes, summarize
from errprop.study_report import write_report

ROOT = Path(__file__).resolve().parents[1]

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ring8", help="ring8, grid25 or randomD (e.g. random16)")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--steps", type=int, default=2000, help="training steps of every arm")
    p.add_argument("--only", default=None, help="comma-separated arm names (baseline is always run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "e1"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run; numbers not meaningful")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="single-thread worker processes (default: one per core)")
    p.add_argument("--rerender", action="store_true",
                   help="write the report again from docs/results/e1_<data>/study.json (no run "
                        "folder): today's report generator, the run's numbers and provenance")
    a = p.parse_args()
    try:
        data, dim, label = mixture(a.data)
    except ErrpropError as e:
        p.error(f"--data: {e}")
    if a.rerender:
        docs = Path(a.docs) / f"e1_{a.data}"
        missing = [f for f in ("study.json", "provenance.json") if not (docs / f).is_file()]
        if missing:
            p.error(f"--rerender: {docs} has no {' or '.join(missing)} (a finished E1 run writes both)")
        print(rerender(docs, label))
        return
    chosen = objective_arms(dim, a.only.split(",") if a.only else None)
    steps = 100 if a.quick else a.steps
    settings = Settings(
        base=data + MIXTURE_MODEL + [f"train.steps={steps}", f"train.ckpt_every={steps}"],
        seeds=list(range(a.seeds)), **sizes(a.quick))
    torch.set_num_threads(1)  # tiny MLPs: one thread beats several fighting over the cores
    out = Path(a.out) / (a.data + ("-quick" if a.quick else ""))
    study = run_study(out, chosen, settings, progress=False, jobs=a.jobs)
    command = shlex.join(["python", "experiments/e1_mixtures.py", *sys.argv[1:]])
    report = write_report(out, study, chosen, settings, f"E1 — error propagation on the {label}",
                          command, label)
    if not a.quick:
        docs = Path(a.docs) / f"e1_{a.data}"
        docs.mkdir(parents=True, exist_ok=True)
        for f in [*out.glob("*.png"), report, out / "study.json"]:  # the HTML repeats the PNGs
            shutil.copy2(f, docs / f.name)
        # study.json is the same for every run of a study; where and when this one ran lives apart
        atomic_write_text(docs / "provenance.json",
                          json.dumps({"command": command, **provenance()}, indent=1))
        print(f"copied to {docs}")
    print(report)


def rerender(docs: Path, label: str) -> Path:
    """Write ``docs``' report again from its committed ``study.json`` and ``provenance.json``: the
    same numbers, summarised and reported by the current generator (config diffs, Holm-adjusted
    p-values), under the commit, machine and date of the run that made them."""
    study = json.loads((docs / "study.json").read_text())
    prov = json.loads((docs / "provenance.json").read_text())
    arms = [Arm(**x) for x in study["arms"]]
    settings = Settings(**study["settings"])
    # The summary is derived data: recomputed, so a study summarised by older code gains what the
    # report now shows; the training times are measurements and are kept.
    results = {k: {int(s): r for s, r in v.items()} for k, v in study["results"].items()}  # JSON keys
    summary = summarize(results, arms, settings)
    if "train_seconds" in study["summary"]:
        summary["train_seconds"] = study["summary"]["train_seconds"]
    study["summary"] = summary
    now = provenance()
    extra = (f"This report was rendered again from the committed study.json by "
             f"`python experiments/e1_mixtures.py --data {docs.name.removeprefix('e1_')} --rerender` "
             f"(commit {now['commit']}, {now['date']}): the numbers are the run's; the text, tables "
             "and plots are the current generator's.")
    report = write_report(docs, {"results": results, "summary": summary}, arms, settings,
                          f"E1 — error propagation on the {label}", prov["command"], label, extra=extra,
                          prov=prov)
    (docs / "report.html").unlink(missing_ok=True)  # docs keeps the Markdown and its plots
    atomic_write_text(docs / "study.json", json.dumps(study, indent=1))
    return report


if __name__ == "__main__":
    main()
