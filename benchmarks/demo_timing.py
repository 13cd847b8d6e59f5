"""The demo's wall-clock, sequential (``--jobs 1``) against the default (one worker per core), in one run.

Runs ``errprop demo`` twice into fresh folders — ``--jobs 1`` first, then the default — checks that
both wrote the same ``study.json`` (the verdict cannot depend on the jobs), and writes
``docs/results/demo_timing.{json,md}`` and the default run's ``demo.json`` (wall-clock, machine,
verdict) as ``docs/results/demo.json``, which README quotes through ``scripts/results.py``.

    python benchmarks/demo_timing.py            # ≈ 2× the demo's time
    python benchmarks/demo_timing.py --quick    # the --quick demo (numbers not meaningful)
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from errprop.demo import default_jobs
from errprop.results import write_result

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = p.parse_args(argv)
    runs, studies = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, default_jobs()):
            out = Path(tmp) / f"jobs{jobs}"
            cmd = [sys.executable, "-m", "errprop", "demo", "--jobs", str(jobs), "--out", str(out),
                   *(["--quick"] if args.quick else [])]
            print(f"[demo_timing] {shlex.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True)
            demo = json.loads((out / "demo.json").read_text())
            runs.append({k: demo[k] for k in ("jobs", "seconds", "study_seconds")})
            studies.append((out / "study.json").read_bytes())
        identical = studies[0] == studies[-1]
        shutil.copy(out / "demo.json", args.out / "demo.json")
    gain = runs[0]["seconds"] / runs[-1]["seconds"]
    table = [["jobs", "wall-clock (s)", "training + measuring (s)"],
             *([str(r["jobs"]), f"{r['seconds']:.0f}", f"{r['study_seconds']:.0f}"] for r in runs)]
    command = shlex.join(["python", "benchmarks/demo_timing.py", *(argv or sys.argv[1:])])
    write_result(args.out, "demo_timing", "errprop demo: sequential against parallel", command,
                 {"runs": runs, "identical": identical, "gain": gain, "quick": args.quick}, table,
                 f"Parallel gain {gain:.2f}×; study.json identical: {identical}."
                 + (" **--quick: numbers not meaningful.**" if args.quick else ""))
    print(f"[demo_timing] gain {gain:.2f}×, identical study.json: {identical}")
    if not identical:
        raise SystemExit("demo_timing: the parallel demo's study.json differs from the sequential one")


if __name__ == "__main__":
    main()
