"""``config-traits`` directive: the configuration reference of one class, generated from its traits.

Lists the options this package defines (name, type, default, help) and, in one line, the names of
the options the class inherits from JupyterHub, oauthenticator or dockerspawner, whose own
documentation describes them. Generated from the code, so it cannot drift from it.

    ```{config-traits} jupyterhub_lab_ext.auth.authenticator.UserlistOAuthenticator
    ```
"""

from __future__ import annotations

import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

OURS = "jupyterhub_lab_ext"


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _owner(cls, name: str):
    for klass in cls.mro():
        if name in vars(klass):
            return klass
    return cls


def _default(trait) -> str:
    if isinstance(trait.default_value, int) and trait.name and trait.name.endswith("mode"):
        return oct(trait.default_value)
    try:
        value = trait.default_value_repr()
    except Exception:
        value = repr(trait.default_value)
    return value if len(value) < 80 else value[:77] + "..."


class ConfigTraits(SphinxDirective):
    """``{config-traits} module.Class``; with ``:own:``, only the options the class itself
    declares (for a variant whose other options are listed elsewhere)."""

    required_arguments = 1
    has_content = False
    option_spec = {"own": directives.flag}

    def run(self):
        cls = _import(self.arguments[0])
        ours, inherited = [], {}
        for name, trait in sorted(cls.class_traits(config=True).items()):
            owner = _owner(cls, name)
            if "own" in self.options and owner is not cls:
                continue
            if owner.__module__.startswith(OURS):
                ours.append((name, trait, owner))
            else:
                inherited.setdefault(owner.__module__.split(".")[0], []).append(name)
        lines = [f"**{cls.__name__}** (`{cls.__module__}.{cls.__name__}`)", ""]
        for name, trait, owner in ours:
            lines += [
                f"`{owner.__name__}.{name}`",
                f"   *{trait.__class__.__name__}*, default ``{_default(trait)}``",
                "",
            ]
            help_text = inspect.cleandoc(trait.help or "(no description)")
            lines += ["   " + line if line else "" for line in help_text.splitlines()]
            lines.append("")
        for package, names in sorted(inherited.items()):
            lines += [
                f"Inherited from {package} (see its documentation): "
                + ", ".join(f"``{n}``" for n in names),
                "",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), 0, container)
        return [container]


def setup(app):
    app.add_directive("config-traits", ConfigTraits)
    return {"parallel_read_safe": True, "version": "1"}
