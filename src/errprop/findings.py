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
import math
import os
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
    effect's confidence interval [lo, hi]; no interval (one pair: nan, or None once stored) decides
    nothing."""
    if claimed not in ("lower", "higher"):
        raise ErrpropError(f"verdict: claimed must be 'lower' or 'higher', got {claimed!r}")
    if not (_finite(lo) and _finite(hi)):
        return UNDECIDED
    below, above = hi < 0, lo > 0
    if (below and claimed == "lower") or (above and claimed == "higher"):
        return SUPPORTED
    if below or above:
        return CONTRADICTED
    return UNDECIDED


def interval(p: dict) -> str:
    """A paired difference as results quote it: ``+mean [lo, hi]``, then ``; p_Holm x`` when the
    test was adjusted for its family."""
    holm = f"; p_Holm {p['p_holm']:.2g}" if "p_holm" in p else ""
    if not all(_finite(p.get(k)) for k in ("lo", "hi")):  # one pair: no spread, no interval
        return f"{p['mean']:+.3g} (one pair: no interval)"
    return f"{p['mean']:+.3g} [{p['lo']:+.3g}, {p['hi']:+.3g}]{holm}"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def provenance_of(payload: dict) -> dict:
    """Command, commit, machine and date of a result file, wherever its writer put them: at the top
    (:func:`errprop.results.write_result`), or in an older ``machine`` / ``meta`` dictionary."""
    out = {k: payload.get(k) for k in ("command", "commit", "machine", "date")}
    for key in ("machine", "meta"):
        inner = payload.get(key)
        if isinstance(inner, dict):
            out = {k: out[k] if isinstance(out[k], str) else inner.get(k) for k in out}
            if not isinstance(out["machine"], str):
                cores = f", {inner['cores']} cores" if "cores" in inner else ""
                out["machine"] = f"{inner.get('cpu', '?')}{cores}, torch {inner.get('torch', '?')}"
    return {k: v if isinstance(v, str) and v else "?" for k, v in out.items()}


def _source(payload: dict, name: str) -> str:
    p = provenance_of(payload)
    if p["command"] == "?" and p["commit"] == "?":  # an old result file: its Markdown names them
        return f"Source: `docs/results/{name}.json` (command, commit, machine and date: `{name}.md`)."
    return (f"Source: `docs/results/{name}.json` — `{p['command']}`, commit {p['commit']}, "
            f"{p['machine']}, {p['date']}.")


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
    """A result file's own text before its table (``intro``), its table (``table``: header +
    rows) and its notes."""
    table = payload.get("table")
    if isinstance(table, list) and table:
        notes, intro = payload.get("notes", ""), payload.get("intro", "")
        body = ((f"{intro}\n\n" if intro else "") + "\n".join(markdown_table(table))
                + (f"\n\n{notes}" if notes else ""))
    else:  # a result written before tables were stored in the JSON: its own Markdown, less the header
        md = Path(payload["_results"]) / f"{name}.md"
        if not md.is_file():
            raise ErrpropError(f"docs/results/{name}.json has no table to quote, and {md} does not exist")
        lines = md.read_text().splitlines()
        # less its header: the title and the provenance bullets under it (not the bullets of its text)
        start = 1 if lines and lines[0].startswith("# ") else 0
        while start < len(lines) and (not lines[start].strip() or lines[start].startswith("- ")):
            start += 1
        body = "\n".join(lines[start:]).strip()
    return body + "\n\n" + _source(payload, name)


def _study_provenance(folder: Path) -> dict:
    path = folder / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _confounds(study: dict, arm: str, against: str = "baseline") -> str:
    """What else than the objective the arm trains differently from ``against`` (the baseline by
    default; checked on the study's resolved configs), as a warning to append to the test's
    description."""
    from . import config as config_mod
    from .config_diff import differences, is_objective

    over = {a["name"]: a["overrides"] for a in study["arms"]}
    base = study["settings"]["base"]
    diff = differences(config_mod.load(overrides=base + over[against]),
                       config_mod.load(overrides=base + over[arm]))
    other = [f"{k} {a} → {b}" for k, (a, b) in diff.items() if not is_objective(k)]
    return f" — ⚠ not only the objective differs: {'; '.join(other)}" if other else ""


def _train_steps(study: dict, arm: str) -> int | str:
    """The training steps of one arm of a study (its overrides over the study's base; the last
    ``train.steps=`` wins), or "?" where neither sets them."""
    over = next((a["overrides"] for a in study["arms"] if a["name"] == arm), [])
    steps = [o.split("=", 1)[1] for o in [*study["settings"]["base"], *over] if o.startswith("train.steps=")]
    return int(steps[-1]) if steps else "?"


def _comparison(summ: dict, arm: str, metric: str, against: str) -> tuple[dict, float]:
    """The paired difference arm − ``against`` on ``metric`` and ``against``'s mean: from
    ``summary.paired[arm]`` against the baseline, else from ``summary.paired_against[against][arm]``."""
    paired = summ["paired"] if against == "baseline" else summ["paired_against"][against]
    return paired[arm][metric], summ["arms"][against][metric]["mean"]


def claim_row(claim: dict, results: Path) -> list[str]:
    """One row of the claims table: the claim, our test, its endpoint, Δ with its interval, the
    verdict by :func:`verdict`, and where the numbers come from.

    The claim's ``arm`` is compared with its ``against`` arm — the study's ``baseline`` unless the
    claim names another (a compute-matched baseline: ``summary.paired_against[against][arm]``)."""
    source = results / claim["source"]
    if not source.is_file():
        raise ErrpropError(f"claim {claim['id']}: {source} does not exist")
    study = json.loads(source.read_text())
    summ = study["summary"]
    against = claim.get("against", "baseline")
    try:
        d, base = _comparison(summ, claim["arm"], claim["metric"], against)
    except KeyError as e:
        raise ErrpropError(f"claim {claim['id']}: {source} has no {e} for arm {claim['arm']!r} against "
                           f"{against!r}, metric {claim['metric']!r}") from None
    word = verdict(d["lo"], d["hi"], claim["claimed"])
    # a p_Holm is only read with its family: the tests of the study it was corrected over (every
    # arm × metric against the same reference), which differs between studies
    family = summ["paired"] if against == "baseline" else summ["paired_against"][against]
    size = sum("p_holm" in t for tests in family.values() for t in tests.values())
    holm = f"; p_Holm {d['p_holm']:.2g} (family of {size})" if "p_holm" in d else ""
    prov = _study_provenance(source.parent)
    where = (f"`{claim['source']}` ({d['n']} paired seeds; commit {prov.get('commit', '?')}, "
             f"{prov.get('cpu', '?')}, {prov.get('date', '?')})")
    who = "baseline" if against == "baseline" else next(
        (a.get("label", against) for a in study["arms"] if a["name"] == against), against)
    # the test's description takes its budgets from the study, never typed: {steps}, {against_steps}
    steps = {"steps": _train_steps(study, claim["arm"]), "against_steps": _train_steps(study, against)}
    try:
        test = claim["test"].format_map(steps) + _confounds(study, claim["arm"], against)
    except (KeyError, ValueError, IndexError) as e:
        raise ErrpropError(f"claim {claim['id']}: its test names an unknown field {e} (known: "
                           f"{', '.join(steps)})") from None
    return [claim["claim"], test, f"{claim['endpoint']} ({claim['declared']})",
            f"{d['mean']:+.3g} [{d['lo']:+.3g}, {d['hi']:+.3g}] on {who} {base:.3g}{holm}",
            f"**{word}**", where]


def render_claims(payload: dict, name: str) -> str:
    """The claims table: every declared claim of ``docs/results/NAME.json`` tested on its result."""
    results = Path(payload["_results"])
    rows = [["the paper's claim", "our test", "primary endpoint (declared)", "Δ arm − baseline (95 % CI)",
             "verdict", "result file"]]
    rows += [claim_row(c, results) for c in payload["claims"]]
    return ("\n".join(markdown_table(rows)) + "\n\n" + payload.get("rule", "") + " Declarations: "
            f"`docs/results/{name}.json`.")


RENDERERS: dict[str, Callable[[dict, str], str]] = {
    "demo": render_demo, "demo-timing": render_demo_timing, "table": render_table,
    "claims": render_claims}


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
    payload = json.loads(path.read_text()) | {"_results": str(results)}
    return RENDERERS[kind](payload, arg).rstrip("\n") + "\n"


LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s:#]+)(\))")


def relink(body: str, results: Path, where: Path) -> str:
    """``body`` (written for ``results``) with its relative links to files in ``results`` made
    relative to the folder ``where`` of the document that quotes it: a result's Markdown shows
    ``![E4](e4_budget_ring8.png)``, which docs/findings.md must show as ``results/…``."""
    def fix(m: re.Match) -> str:
        target = results / m.group(2)
        if not target.exists():
            return m.group(0)
        return m.group(1) + os.path.relpath(target, where).replace(os.sep, "/") + m.group(3)
    return LINK.sub(fix, body)


def regenerate(text: str, results: Path, where: Path | None = None) -> str:
    """``text`` with every generated block's body rebuilt from ``results``; links to result files
    are made relative to ``where``, the quoting document's folder (default: ``results`` itself)."""
    def body(m: re.Match) -> str:
        out = render(m.group("kind"), m.group("arg"), results)
        return m.group(1) + (relink(out, results, where) if where is not None else out) + m.group(5)
    return BLOCK.sub(body, text)


def blocks(text: str) -> list[tuple[str, str | None]]:
    """The (kind, arg) of every generated block in ``text``."""
    return [(m.group("kind"), m.group("arg")) for m in BLOCK.finditer(text)]
