"""No import cycle among the project's modules, counting the imports that import-linter's contracts let by.

``lint-imports`` checks layers between packages; it has no rule against a cycle inside one, and an import
written inside a function hides a cycle from anyone reading the module's top. Python still runs it: a module
that imports, at run time, a module that imports it back only works while nobody imports them in the other
order. The graph here has an edge for every ``import`` in a module's source, at any depth (functions,
methods, branches), except under ``if TYPE_CHECKING:`` (never executed), and one more for each package
``__init__`` an import runs on the way (importing ``a.b.c`` first runs ``a/b/__init__.py``, whose own
imports then come before ``c``'s).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suite", "search_spaces", "slurm", "analysis")


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    mods = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of every import executed somewhere in ``tree``."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            for child in node.orelse:  # type: ignore[attr-defined]
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, *([base] if base else [])])
            # `from a import b` imports a.b when b is a module, else a name of a
            out.extend((f"{base}.{a.name}", node.lineno) for a in node.names)
            out.append((base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Module → {module it makes Python run: the line of the first import that does}."""
    mods = _modules(root, packages)
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        own = {mod, *_parents(mod)}  # a module's own packages have run before its first line
        for name, line in _imported(ast.parse(path.read_text(), str(path)), mod, path.name == "__init__.py"):
            targets = [t for t in (name, *_parents(name)) if t in mods and t not in own]
            for t in targets:
                graph[mod].setdefault(t, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def _describe(graph: dict[str, dict[str, int]], comp: list[str]) -> str:
    inside = set(comp)
    return "; ".join(f"{a} -> {b} (line {ln})" for a in comp for b, ln in graph[a].items() if b in inside)


def test_no_import_cycle_even_through_imports_inside_functions() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 100  # the walk found the project
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(_describe(graph, c) for c in found)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a cycle closed by an import inside a method, and one through a package __init__
        (
            {
                "p/__init__.py": "",
                "p/a.py": "from p.b import f\n",
                "p/b.py": "def f():\n    from p import a\n",
            },
            [["p.a", "p.b"]],
        ),
        (
            {
                "p/__init__.py": "from p.top import run\n",
                "p/top.py": "from p.low import g\n",
                "p/low.py": "def g():\n    import p.top\n",
                "p/leaf.py": "",
                "q/__init__.py": "",
                "q/user.py": "from p.leaf import x\n",
            },
            [["p.low", "p.top"]],
        ),
        (
            {
                "p/__init__.py": "from p.top import run\n",
                "p/top.py": "from q.user import h\n",
                "p/leaf.py": "",
                "q/__init__.py": "",
                "q/user.py": "from p.leaf import x\n",
            },
            [["p", "p.top", "q.user"]],
        ),
        # relative imports resolve; an import only a type checker runs makes no cycle
        (
            {
                "p/__init__.py": "",
                "p/a.py": "from .b import f\n",
                "p/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.a import x\n",
            },
            [],
        ),
    ],
)
def test_the_cycle_walk_sees_deferred_and_package_imports(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    _write(tmp_path, files)
    packages = tuple(sorted({name.split("/")[0] for name in files}))
    assert cycles(import_graph(tmp_path, packages)) == expected
