"""Regenerate every generated block in README.md and docs/ from the committed result JSON.

    python scripts/results.py            # rewrite the blocks in place
    python scripts/results.py --check    # exit 1 (with a diff) if any block differs; CI runs this

A block is the text between ``<!-- generated: KIND ARG -->`` and ``<!-- end generated -->``
(see :mod:`errprop.findings`); everything outside the blocks is left as it is.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from errprop.errors import ErrpropError
from errprop.files import atomic_write_text
from errprop.findings import regenerate

ROOT = Path(__file__).resolve().parents[1]


def documents(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; fail if a block differs")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = p.parse_args(argv)
    results = args.root / "docs" / "results"
    stale = []
    for doc in documents(args.root):
        if not doc.is_file():
            continue
        text = doc.read_text()
        try:
            new = regenerate(text, results, doc.parent)
        except ErrpropError as e:
            print(f"results: {doc.relative_to(args.root)}: {e}", file=sys.stderr)
            return 2
        if new == text:
            continue
        stale.append(doc)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(True), new.splitlines(True), f"{doc.name} (committed)",
                f"{doc.name} (from the result files)"))
        else:
            atomic_write_text(doc, new)
            print(f"results: regenerated {doc.relative_to(args.root)}")
    if args.check and stale:
        print(f"results: {len(stale)} file(s) differ from their result files: "
              f"{', '.join(str(d.relative_to(args.root)) for d in stale)}; run python scripts/results.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
