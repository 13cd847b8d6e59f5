"""The methods and benchmarks are documented inside the repo, and every pointer into the docs holds.

- No code, test or README cites the project's private spec (``METHODS §n``, ``METHODS.md``,
  ``BENCHMARKS.md``, ``BENCHMARKS Bn``, ``../shared``): a user who clones errprop does not have it.
- Every ``docs/….md#anchor`` cited in code, tests or the README names an existing file and one of
  its headings, by GitHub's anchor rule; every ``docs/….md`` path cited there exists.
- The links inside ``docs/*.md`` resolve too (result files, anchors of the other page).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()
DOCS = ROOT / "docs"
SCANNED_DIRS = ("src", "benchmarks", "experiments", "tests", "scripts", "configs")
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

SPEC_CITATION = re.compile(r"METHODS §|METHODS\.md|BENCHMARKS\.md|BENCHMARKS B\d|\.\./shared")
DOC_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*?\.md\b")
DOC_LINK = re.compile(r"(?<![\w./-])(docs/[\w./-]*?\.md)#([\w-]+)")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercase; every character that is not a letter,
    mark, number, connector (``_``), space or hyphen dropped; each space turned into a hyphen."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN"
                   or unicodedata.category(c) == "Pc")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings (outside fenced code; a repeated heading gets
    ``-1``, ``-2``, … as on GitHub) and explicit ``<a id=…>`` / ``<a name=…>`` anchors."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.lstrip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
            continue
        if fence:
            continue
        out.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if m:
            slug = github_anchor(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def scanned_files() -> list[Path]:
    """The text files of code, tests, scripts, configs and the README (this file excluded)."""
    files = [ROOT / "README.md"]
    for d in SCANNED_DIRS:
        if (ROOT / d).is_dir():
            files += [p for p in sorted((ROOT / d).rglob("*"))
                      if p.is_file() and not SKIP_PARTS & set(p.parts) and p.suffix not in (".pyc", ".so")
                      and not any(part.endswith(".egg-info") for part in p.parts)]  # build output
    out = []
    for p in files:
        if p.resolve() == SELF or not p.is_file():
            continue
        try:
            p.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary data (images, arrays)
            continue
        out.append(p)
    return out


def _where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


@pytest.fixture(scope="module")
def sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in scanned_files()}


@pytest.mark.parametrize("heading, anchor", [
    ("Sequence-aware loss", "sequence-aware-loss"),
    ("Sums, means and units", "sums-means-and-units"),
    ("B5: diagnostics cost", "b5-diagnostics-cost"),
    ("B1 — training throughput", "b1--training-throughput"),
    ("Fréchet distance", "fréchet-distance"),
    ("`ddim_step` and η", "ddim_step-and-η"),
    ("Analytic-DPM (Bao et al., 2022)", "analytic-dpm-bao-et-al-2022"),
])
def test_github_anchor(heading, anchor):
    assert github_anchor(heading) == anchor


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n<a id=\"here\"></a>\n")
    assert anchors(page) == {"a", "notes", "notes-1", "here"}


def test_the_docs_exist():
    for name in ("methods.md", "benchmarks.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"
    sections = {"conventions", "sequence-aware-loss", "ep-regularizer", "diagnostics"}
    assert sections <= anchors(DOCS / "methods.md")
    assert {f"b{i}" for i in range(1, 11)} <= {a.split("-")[0] for a in anchors(DOCS / "benchmarks.md")}


def test_nothing_cites_the_private_spec(sources):
    """METHODS §n, METHODS.md, BENCHMARKS.md and ../shared are files a clone of errprop lacks;
    cite docs/methods.md and docs/benchmarks.md instead."""
    found = [f"{_where(p, t, m.start())}: {m.group(0)!r}"
             for p, t in sources.items() for m in SPEC_CITATION.finditer(t)]
    assert not found, "citations of files the repo does not have:\n" + "\n".join(found)


def test_every_docs_anchor_link_resolves(sources):
    bad = []
    for p, t in sources.items():
        for m in DOC_LINK.finditer(t):
            target, anchor = ROOT / m.group(1), m.group(2)
            if not target.is_file():
                bad.append(f"{_where(p, t, m.start())}: {m.group(1)} does not exist")
            elif anchor not in anchors(target):
                bad.append(f"{_where(p, t, m.start())}: {m.group(1)} has no heading #{anchor}")
    assert not bad, "\n".join(bad)


def test_every_cited_docs_file_exists(sources):
    missing = [f"{_where(p, t, m.start())}: {m.group(0)}"
               for p, t in sources.items() for m in DOC_PATH.finditer(t)
               if not (ROOT / m.group(0)).is_file()]
    assert not missing, "docs files cited but absent:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", ["methods.md", "benchmarks.md"])
def test_links_inside_the_docs_resolve(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    bad = []
    for m in MD_LINK.finditer(text):
        link = m.group(1)
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (DOCS / page) if not path else (DOCS / path).resolve()
        if not target.exists():
            bad.append(f"{page}: {link}: no such file")
        elif anchor and (target.suffix != ".md" or anchor not in anchors(target)):
            bad.append(f"{page}: {link}: no such anchor")
    assert not bad, "\n".join(bad)
