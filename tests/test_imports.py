"""errprop's modules form layers: no import cycle, not even one hidden in a function-local import."""

import ast
import subprocess
import sys
from pathlib import Path

import errprop

PKG = Path(errprop.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """The errprop modules ``path`` imports anywhere in it (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("errprop")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("errprop"):
                continue
            for a in node.names:  # `from . import config` names a module, `from .x import f` does not
                sub = f"{mod}.{a.name}"
                out.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else mod)
    return out - {name}


def graph() -> dict[str, set[str]]:
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    # importing errprop.a.b runs errprop/__init__ and errprop/a/__init__ first; that edge is not a cycle
    return {m: {i for i in _imports(p, m) if i in mods and not m.startswith(i + ".")}
            for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    mods = sorted(graph())
    code = ("import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k.startswith('errprop')]:\n        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(m)\n    except Exception as e:\n"
            "        bad.append(f'{m}: {type(e).__name__}: {e}')\nprint('\\n'.join(bad))")
    out = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
