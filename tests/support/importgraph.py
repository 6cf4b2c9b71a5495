"""The import graph of a package, read from its source with ``ast`` (nothing is imported).

Used by tests/unit/test_architecture.py: every import counts (top level, inside a function,
under ``TYPE_CHECKING``, ``importlib.import_module("...")`` with a literal name), relative
imports are resolved, and ``from pkg import module`` points at the module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # module (or package) name imported
    line: int


@dataclass(frozen=True)
class Source:
    tree: ast.Module
    is_package: bool  # an __init__.py: relative imports start from the package itself


def load_modules(root: Path) -> dict[str, Source]:
    """Every module under ``root`` (the package directory), by dotted name."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = Source(ast.parse(path.read_text(), str(path)), is_package)
    return modules


def _resolve(name: str, modules: dict[str, Source]) -> str:
    """The longest prefix of ``name`` that is one of our modules (``from pkg import module``
    imports ``pkg.module``; ``from module import function`` imports ``module``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return name


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(name: str, source: Source) -> set[tuple[str, int]]:
    """Every dotted name imported anywhere in a module (``import_module("x")`` included)."""
    found = set()
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, source.is_package)
            found.add((base, node.lineno))
            found |= {(f"{base}.{alias.name}", node.lineno) for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add((node.args[0].value, node.lineno))
    return found


def package_imports(modules: dict[str, Source], package: str) -> list[Import]:
    """Imports of the package's own modules, one per (importer, target, line)."""
    edges = set()
    for name, source in modules.items():
        for dotted, line in imported_names(name, source):
            if dotted == package or dotted.startswith(package + "."):
                target = _resolve(dotted, modules)
                if target != name:
                    edges.add(Import(name, target, line))
    return sorted(edges, key=lambda e: (e.importer, e.line, e.target))


def third_party_imports(modules: dict[str, Source], package: str) -> list[tuple[str, str, int]]:
    """``(module, top-level package, line)`` for every import not of ``package``."""
    found = set()
    for name, source in modules.items():
        for dotted, line in imported_names(name, source):
            top = dotted.split(".")[0]
            if top and top != package:
                found.add((name, top, line))
    return sorted(found)


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def magic(modules: dict[str, Source]) -> list[tuple[str, str, int]]:
    """``(kind, module, line)``: a module ``__getattr__`` (``getattr``) or a class built with
    ``type(name, bases, namespace)`` / ``types.new_class`` (``type-call``)."""
    found = []
    for name, source in modules.items():
        for node in source.tree.body:
            defined = (
                [node.name]
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                else [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            )
            if "__getattr__" in defined:
                found.append(("getattr", name, node.lineno))
        for node in ast.walk(source.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = getattr(func, "id", None) or getattr(func, "attr", None)
            if (called == "type" and len(node.args) == 3) or called == "new_class":
                found.append(("type-call", name, node.lineno))
    return found
