"""Findings generated from result files, never typed: one verdict rule and the blocks that quote results.

A *generated block* in a Markdown file is the text between ::

    <!-- generated: KIND ARG -->
    ...
    <!-- end generated -->

and is a pure function of the committed result JSON that ``KIND`` reads (``ARG`` names it, relative
to ``docs/results/``). ``scripts/results.py`` rewrites every block in README.md and docs/ from the
JSON; ``--check`` fails when any block differs, so no hand-edited number survives CI.

The verdict of a claim is taken by one rule (:func:`verdict`): its primary endpoint's 95 % interval
entirely on the claimed side → *supported*; entirely on the other side → *contradicted*; otherwise
*not decidable*.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from .errors import ErrpropError
from .results import markdown_table

BLOCK = re.compile(r"(<!-- generated: (?P<kind>[\w-]+)(?: (?P<arg>[^>]*?))? -->\n)(?P<body>.*?)"
                   r"(<!-- end generated -->)", re.S)

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not decidable"


def verdict(lo: float, hi: float, claimed: str) -> str:
    """The verdict on a claim that an effect is ``claimed`` ("lower" or "higher" than 0), from the
    effect's confidence interval [lo, hi]."""
    if claimed not in ("lower", "higher"):
        raise ErrpropError(f"verdict: claimed must be 'lower' or 'higher', got {claimed!r}")
    below, above = hi < 0, lo > 0
    if (below and claimed == "lower") or (above and claimed == "higher"):
        return SUPPORTED
    if below or above:
        return CONTRADICTED
    return UNDECIDED


def _source(payload: dict, name: str) -> str:
    return (f"Source: `docs/results/{name}.json` — `{payload.get('command', '?')}`, commit "
            f"{payload.get('commit', '?')}, {payload.get('machine', '?')}, {payload.get('date', '?')}.")


# ------------------------------------------------------------------------------------ renderers
def render_demo(payload: dict, name: str) -> str:
    """The demo's wall-clock, jobs and machine, and its computed verdict."""
    quick = " (--quick: numbers not meaningful)" if payload.get("quick") else ""
    return (f"`errprop demo` took **{payload['seconds']:.0f} s** with {payload['jobs']} worker "
            f"process{'es' if payload['jobs'] > 1 else ''} on {payload['cpu']}{quick}. Its verdict:\n\n"
            + "\n".join(f"> {line}" for line in payload["verdict"].splitlines()) + "\n\n"
            + _source(payload, name))


def render_demo_timing(payload: dict, name: str) -> str:
    """``errprop demo`` wall-clock with one job and with the default (one per core), one run each."""
    rows = [["jobs", "wall-clock (s)", "training + measuring (s)", "same study.json"]]
    for r in payload["runs"]:
        rows.append([str(r["jobs"]), f"{r['seconds']:.0f}", f"{r['study_seconds']:.0f}",
                     "yes" if payload["identical"] else "**no**"])
    speed = payload["runs"][0]["seconds"] / payload["runs"][-1]["seconds"]
    return ("\n".join(markdown_table(rows)) + f"\n\nParallel gain: **{speed:.2f}×**. "
            + _source(payload, name))


def render_table(payload: dict, name: str) -> str:
    """A result file's own table (``table``: header + rows) and notes."""
    table = payload.get("table")
    if not table:
        raise ErrpropError(f"docs/results/{name}.json has no table to quote")
    notes = payload.get("notes", "")
    body = "\n".join(markdown_table(table)) + (f"\n\n{notes}" if notes else "")
    return body + "\n\n" + _source(payload, name)


RENDERERS: dict[str, Callable[[dict, str], str]] = {
    "demo": render_demo, "demo-timing": render_demo_timing, "table": render_table}


# ------------------------------------------------------------------------------------ documents
def render(kind: str, arg: str | None, results: Path) -> str:
    """The body of one block: ``RENDERERS[kind]`` applied to ``results/ARG.json``."""
    if kind not in RENDERERS:
        raise ErrpropError(f"generated block: unknown kind {kind!r}; known: {', '.join(RENDERERS)}")
    if not arg:
        raise ErrpropError(f"generated block {kind!r} names no result file")
    path = results / f"{arg}.json"
    if not path.is_file():
        raise ErrpropError(f"generated block {kind} {arg}: {path} does not exist")
    return RENDERERS[kind](json.loads(path.read_text()), arg).rstrip("\n") + "\n"


def regenerate(text: str, results: Path) -> str:
    """``text`` with every generated block's body rebuilt from ``results``."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("kind"), m.group("arg"), results)
                     + m.group(5), text)


def blocks(text: str) -> list[tuple[str, str | None]]:
    """The (kind, arg) of every generated block in ``text``."""
    return [(m.group("kind"), m.group("arg")) for m in BLOCK.finditer(text)]
