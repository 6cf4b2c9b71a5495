"""Sphinx configuration for the jupyterhub-lab-ext documentation (MyST markdown)."""

import os
import sys

import jupyterhub_lab_ext

# local extensions (docs/_ext): clihelp renders the commands' --help at build time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "jupyterhub-lab-ext"
author = "jupyterhub-lab-ext developers"
copyright = "2026, jupyterhub-lab-ext developers"
version = release = jupyterhub_lab_ext.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "clihelp",
    "traitsref",
]
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

# no intersphinx: the build must work offline (CI machines reach only package registries)

autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}

html_theme = "pydata_sphinx_theme"
html_title = "jupyterhub-lab-ext"
html_theme_options = {"navigation_with_keys": False}
