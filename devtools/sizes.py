"""Report the modules over ~400 lines and the functions over ~60 lines (the project's size bar).

    python devtools/sizes.py [PATH ...]      # default: jupyterhub_lab_ext
    python devtools/sizes.py --modules 400 --functions 60 jupyterhub_lab_ext tests/support

Prints two markdown tables (paste them in docs/architecture.md). Lines are counted as in the
file (docstrings, comments and blank lines included); a function from its ``def`` line to its
last line, nested functions counted in their outer function too. Exit status 0: a report,
not a gate.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def module_sizes(files: list[Path]) -> list[tuple[int, str]]:
    """``(lines, path)`` of every file."""
    return [(len(f.read_text().splitlines()), _shown(f)) for f in files]


def function_sizes(files: list[Path]) -> list[tuple[int, str, str]]:
    """``(lines, path:line, qualified name)`` of every function and method."""
    found = []
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        found += _functions(tree, _shown(f), "")
    return found


def _functions(node: ast.AST, where: str, prefix: str) -> list[tuple[int, str, str]]:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            size = child.end_lineno - child.lineno + 1
            found.append((size, f"{where}:{child.lineno}", name))
            found += _functions(child, where, name + ".")
        elif isinstance(child, ast.ClassDef):
            found += _functions(child, where, prefix + child.name + ".")
        else:
            found += _functions(child, where, prefix)
    return found


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[REPO / "jupyterhub_lab_ext"])
    parser.add_argument(
        "--modules", type=int, default=400, help="module lines over which to report"
    )
    parser.add_argument(
        "--functions", type=int, default=60, help="function lines over which to report"
    )
    args = parser.parse_args(argv)
    files = python_files(args.paths)
    big_modules = sorted((m for m in module_sizes(files) if m[0] > args.modules), reverse=True)
    big_functions = sorted(
        (f for f in function_sizes(files) if f[0] > args.functions), reverse=True
    )
    print(f"Modules over {args.modules} lines ({len(big_modules)} of {len(files)}):\n")
    print("| lines | module |\n|---:|---|")
    for lines, path in big_modules:
        print(f"| {lines} | `{path}` |")
    print(f"\nFunctions over {args.functions} lines ({len(big_functions)}):\n")
    print("| lines | function | where |\n|---:|---|---|")
    for lines, where, name in big_functions:
        print(f"| {lines} | `{name}` | `{where}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
