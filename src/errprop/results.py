"""Result files: one JSON (the numbers, with their provenance) and one Markdown table made from it.

Every benchmark and experiment writes its result through :func:`write_result`, so each file in
``docs/results/`` names the command, commit, machine and date that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_write_text, to_jsonable
from .provenance import provenance as current_provenance

#: What a result's provenance must name (:func:`write_result`'s ``provenance``).
PROVENANCE_KEYS = ("commit", "machine", "date")


def markdown_table(rows: list[list[str]]) -> list[str]:
    """A Markdown table from a header row and body rows (cells already formatted)."""
    head, *body = rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in body)]


def _given(provenance: dict | None, where: str) -> dict:
    """The provenance a result is written with: this process's (:func:`errprop.provenance.provenance`)
    or, re-rendering a result from its stored numbers, the original run's — which must name
    :data:`PROVENANCE_KEYS`."""
    if provenance is None:
        return current_provenance()
    if missing := [k for k in PROVENANCE_KEYS if not isinstance(provenance.get(k), str)]:
        raise ValueError(f"{where}: provenance names no {', '.join(missing)}")
    return dict(provenance)


def write_study_summary(folder: str | Path, study: dict, arms, settings, command: str,
                        provenance: dict | None = None) -> Path:
    """``folder/study.json``: a study's settings, arms and summary — no per-seed raw data, which
    stays in the run folder — and ``folder/provenance.json`` (command, commit, machine, date, cpu);
    what the claims table (:func:`errprop.findings.claim_row`) reads. Returns the study.json path.

    ``provenance``: the original run's commit, machine, date (and cpu) where a summary is rebuilt
    from stored numbers; by default this process's."""
    prov = _given(provenance, "write_study_summary")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summ = {k: v for k, v in study["summary"].items() if k != "budgets"}
    atomic_write_text(folder / "study.json", json.dumps(to_jsonable(
        {"settings": vars(settings), "arms": [vars(a) for a in arms], "summary": summ}), indent=1))
    atomic_write_text(folder / "provenance.json", json.dumps(
        {"command": command, **{k: prov.get(k, "?") for k in ("commit", "machine", "date", "cpu")}},
        indent=1))
    return folder / "study.json"


def write_result(out_dir: str | Path, name: str, title: str, command: str, data: dict,
                 table: list[list[str]], notes: str = "", intro: str = "",
                 provenance: dict | None = None) -> dict:
    """Write ``out_dir/name.json`` (``data`` + provenance + command) and ``name.md`` (title,
    provenance, ``intro``, the table, ``notes``); both atomically. Returns the JSON payload.

    ``provenance`` (default: this process's, :func:`errprop.provenance.provenance`) is only for
    re-rendering a result from its stored numbers: the commit, machine and date (at least; any
    other provenance keys it has are kept) of the run that measured them, which ``command`` must
    then also be.

    ``data`` must not use the keys the payload itself holds (``title``, ``command``, ``table``,
    ``notes``, ``intro`` and those of :func:`errprop.provenance.provenance`)."""
    now = current_provenance()
    prov = now if provenance is None else {k: v for k, v in _given(provenance, "write_result").items()
                                           if k in now}  # its provenance keys only
    own = {"title", "command", "table", "notes", "intro", *now}
    if clash := sorted(own & set(data)):
        raise ValueError(f"write_result: data may not hold {', '.join(clash)} (the payload's own keys)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, "command": command, **prov, **to_jsonable(data),
               "table": table, "notes": notes}  # what a generated block quotes
    if intro:
        payload["intro"] = intro
    atomic_write_text(out_dir / f"{name}.json", json.dumps(payload, indent=1) + "\n")
    lines = [f"# {title}", "", f"- command: `{command}`",
             f"- commit: {payload['commit']}, date: {payload['date']}",
             f"- machine: {payload['machine']}", ""]
    if intro:
        lines += [intro, ""]
    lines += [*markdown_table(table), ""]
    if notes:
        lines += [notes, ""]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines))
    return payload
