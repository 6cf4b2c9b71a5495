"""The package's shape, checked on its source: no import cycles, imports only in the allowed
direction between folders, no import magic.

The folder rules are the ones each folder's ``__init__`` docstring states (see
docs/architecture.md):

- ``util`` imports only the standard library, nothing of ours;
- ``accounts`` imports only ``util`` (no jupyterhub, no tornado: the admin CLI uses it without a hub);
- ``kernels`` imports only ``util`` and no jupyterhub (it is loaded in every single-user server);
- ``labserver`` (the JupyterLab status extension's server side) imports only ``util`` and no
  jupyterhub (it is loaded in every single-user server too);
- ``auth`` never imports ``spawner``, ``kernels``, ``services`` or ``cli``;
- ``spawner`` never imports ``auth``, ``services`` or ``cli``;
- ``services`` never imports ``auth``, ``accounts``, ``spawner``, ``kernels`` or ``cli``; inside it,
  ``common`` imports neither service, and the culler and the user-limit service (two processes)
  do not import each other;
- nothing imports ``cli``.

Every import counts: at the top of a module, inside a function, or under ``TYPE_CHECKING`` (an
annotation-only cycle is still a cycle to read). No module ``__getattr__`` and no classes built
with ``type(name, bases, namespace)``: a plain module that imports what it needs at the top.

The import graph is read by tests/support/importgraph.py. Module and function sizes are reported
by ``devtools/sizes.py`` (pasted in docs/architecture.md), not enforced here.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from importgraph import (
    Import,
    Source,
    cycles,
    load_modules,
    magic,
    package_imports,
    third_party_imports,
)

PACKAGE = "jupyterhub_lab_ext"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

#: folder -> the folders of ours it may import (besides itself and the package's own __init__)
MAY_IMPORT: dict[str, set[str]] = {
    "util": set(),
    "accounts": {"util"},
    "kernels": {"util"},
    "labserver": {"util"},
    "auth": {"accounts", "util"},
    "spawner": {"accounts", "kernels", "util"},
    "services": {"util"},
    "cli": {"auth", "accounts", "kernels", "spawner", "services", "util"},
}
#: folder -> third-party packages it must not import
MUST_NOT_IMPORT: dict[str, set[str]] = {
    "accounts": {"jupyterhub", "tornado"},
    "kernels": {"jupyterhub"},
    "labserver": {"jupyterhub"},
}
#: folders that import the standard library only (and of ours what MAY_IMPORT allows)
STDLIB_ONLY = {"util", "accounts"}
#: services/<x> -> the services/<y> it may import
SERVICES_MAY_IMPORT: dict[str, set[str]] = {
    "common": set(),
    "culler": {"common"},
    "user_limit": {"common"},
}

#: Known violations allowed for now. Each entry must still occur (a fixed one fails
#: :func:`test_pending_violations_still_exist` until it is removed here). Empty: keep it so.
PENDING: set[tuple[str, ...]] = set()


def folder(module: str) -> str:
    """``jupyterhub_lab_ext.auth.naming`` -> ``auth``; the package's own __init__ -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def direction_violations(edges: list[Import]) -> list[str]:
    """One line per import statement that points the wrong way."""
    problems: dict[tuple[str, int], str] = {}
    for e in edges:
        src, dst = folder(e.importer), folder(e.target)
        if dst in ("", src):
            if src == dst == "services":
                for problem in _services_violation(e):
                    problems.setdefault((e.importer, e.line), problem)
            continue
        if dst not in MAY_IMPORT.get(src, set()):
            problem = f"{e.importer}:{e.line} imports {e.target} ({src} -> {dst})"
            problems.setdefault((e.importer, e.line), problem)
    return list(problems.values())


def _services_violation(e: Import) -> list[str]:
    src, dst = e.importer.split(".")[2:3], e.target.split(".")[2:3]
    if not src or not dst or src == dst:
        return []
    if dst[0] in SERVICES_MAY_IMPORT.get(src[0], set()):
        return []
    return [f"{e.importer}:{e.line} imports {e.target} (services/{src[0]} -> {dst[0]})"]


def third_party_violations(modules: dict[str, Source]) -> list[str]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for module, top, line in third_party_imports(modules, PACKAGE):
        where = folder(module)
        if top in MUST_NOT_IMPORT.get(where, set()):
            problems.append(f"{module}:{line} imports {top} ({where} must not)")
        elif where in STDLIB_ONLY and top not in stdlib:
            problems.append(f"{module}:{line} imports {top} ({where}: standard library only)")
    return problems


def violations(modules: dict[str, Source]) -> dict[tuple[str, ...], list[str]]:
    """Every violation, keyed like :data:`PENDING`, with what to show for it."""
    edges = package_imports(modules, PACKAGE)
    found: dict[tuple[str, ...], list[str]] = {}
    for component in cycles(edges):
        members = set(component)
        lines = [
            f"{e.importer}:{e.line} -> {e.target}"
            for e in edges
            if e.importer in members and e.target in members
        ]
        found[("cycle", *component)] = lines
    for problem in direction_violations(edges):
        found.setdefault(("direction", problem), []).append(problem)
    for problem in third_party_violations(modules):
        found.setdefault(("third-party", problem), []).append(problem)
    for kind, module, line in magic(modules):
        found.setdefault((kind, module), []).append(f"{module}:{line}")
    return found


@pytest.fixture(scope="module")
def modules():
    return load_modules(ROOT)


def _report(found: dict[tuple[str, ...], list[str]]) -> str:
    return "\n".join(f"{' '.join(key)}:\n    " + "\n    ".join(v) for key, v in found.items())


def test_the_package_is_found(modules):
    assert f"{PACKAGE}.services.common.app" in modules and len(modules) > 50


def test_no_cycles_no_upward_imports_no_magic(modules):
    found = {k: v for k, v in violations(modules).items() if k not in PENDING}
    assert not found, "architecture rules broken:\n" + _report(found)


def test_pending_violations_still_exist(modules):
    """An exception that no longer occurs must leave :data:`PENDING`."""
    stale = PENDING - set(violations(modules))
    assert not stale, f"fixed, remove from PENDING: {sorted(stale)}"


def stated_rules(doc: str) -> tuple[set[str], set[str]]:
    """The folders a docstring says may be imported (``May import``/``imports only`` clauses)
    and those it says never are (``never`` clauses), as named in double backquotes."""
    text = " ".join(doc.split())
    allowed, forbidden = set(), set()
    for clause in re.findall(r"(?:[Mm]ay import|[Ii]mports only)([^;.]*)", text):
        allowed |= set(re.findall(r"``(\w+)``", clause))
    for clause in re.findall(r"never([^.]*)", text):
        forbidden |= set(re.findall(r"``(\w+)``", clause))
    return allowed, forbidden


def test_every_folder_states_its_rule_and_this_test_agrees(modules):
    folders = {folder(m) for m in modules} - {""}
    assert folders == set(MAY_IMPORT), (
        "a new folder needs its import rule here and in its docstring"
    )
    for name in sorted(folders):
        doc = ast.get_docstring(modules[f"{PACKAGE}.{name}"].tree) or ""
        allowed, forbidden = stated_rules(doc)
        assert "import" in doc.lower(), f"{name}/__init__.py does not say what it may import"
        assert allowed <= MAY_IMPORT[name], f"{name}: docstring allows {allowed - MAY_IMPORT[name]}"
        assert not forbidden & MAY_IMPORT[name], f"{name}: docstring forbids {forbidden}"


# -- the checks themselves, on planted violations -------------------------------------------------


def _planted(tmp_path: Path, files: dict[str, str]) -> set[str]:
    """The kinds of violation found in a package made of ``files``."""
    root = tmp_path / PACKAGE
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {key[0] for key in violations(load_modules(root))}


P = PACKAGE
PLANTED = {
    "clean": ({"util/__init__.py": "", "util/a.py": "import os\n"}, set()),
    "cycle": (
        {
            "auth/__init__.py": "",
            "auth/a.py": f"from {P}.auth import b\n",
            "auth/b.py": f"def f():\n    from {P}.auth.a import x\n",
        },
        {"cycle"},
    ),
    "type-checking cycle": (
        {
            "accounts/__init__.py": "",
            "accounts/a.py": f"from {P}.accounts.b import B\n",
            "accounts/b.py": "from typing import TYPE_CHECKING\n"
            f"if TYPE_CHECKING:\n    from {P}.accounts.a import A\n",
        },
        {"cycle"},
    ),
    "upward import": (
        {
            "accounts/__init__.py": "",
            "accounts/a.py": f"from {P}.auth.naming import x\n",
            "auth/__init__.py": "",
            "auth/naming.py": "",
        },
        {"direction"},
    ),
    "import of cli": (
        {
            "services/__init__.py": "",
            "services/a.py": f"import {P}.cli.main\n",
            "cli/__init__.py": "",
            "cli/main.py": "",
        },
        {"direction"},
    ),
    "relative upward import": (
        {
            "kernels/__init__.py": "",
            "kernels/a.py": "from ..spawner import docker\n",
            "spawner/__init__.py": "",
            "spawner/docker.py": "",
        },
        {"direction"},
    ),
    "common imports a service": (
        {
            "services/__init__.py": "",
            "services/common/__init__.py": "",
            "services/common/a.py": f"from {P}.services.culler.policy import Policy\n",
            "services/culler/__init__.py": "",
            "services/culler/policy.py": "",
        },
        {"direction"},
    ),
    "allowed imports": (
        {
            "util/__init__.py": "",
            "util/a.py": "",
            "kernels/__init__.py": "",
            "kernels/k.py": f"from {P}.util import a\nimport tornado\n",
            "services/__init__.py": "",
            "services/common/__init__.py": "",
            "services/common/c.py": f"from {P} import __version__\nfrom {P}.util.a import f\n",
            "services/culler/__init__.py": "",
            "services/culler/app.py": f"from {P}.services.common.c import C\n",
        },
        set(),
    ),
    "jupyterhub in kernels": (
        {"kernels/__init__.py": "", "kernels/a.py": "import jupyterhub.utils\n"},
        {"third-party"},
    ),
    "tornado in util": (
        {"util/__init__.py": "", "util/a.py": "from tornado import web\n"},
        {"third-party"},
    ),
    "module __getattr__": (
        {
            "spawner/__init__.py": "",
            "spawner/a.py": "def __getattr__(name):\n    raise AttributeError(name)\n",
        },
        {"getattr"},
    ),
    "class from type()": (
        {"spawner/__init__.py": "", "spawner/a.py": "Spawner = type('Spawner', (object,), {})\n"},
        {"type-call"},
    ),
}


@pytest.mark.parametrize("case", PLANTED, ids=list(PLANTED))
def test_planted_violation_is_found(tmp_path, case):
    files, expected = PLANTED[case]
    assert _planted(tmp_path, files) == expected
