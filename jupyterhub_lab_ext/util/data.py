"""Where the files installed under ``sys.prefix/share/jupyterhub-lab-ext`` are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_NAME = "jupyterhub-lab-ext"


def share_dir() -> Path:
    """The ``share/jupyterhub-lab-ext`` directory of the running code.

    ``$JUPYTERHUB_LAB_EXT_SHARE`` if set; else the checkout's own ``share/`` when the package is
    imported from a source tree (so its tests see its templates, not those of an older install
    in ``sys.prefix``); else the installed one in ``sys.prefix``.
    """
    candidates = [
        Path(os.environ.get("JUPYTERHUB_LAB_EXT_SHARE", ""))
        if os.environ.get("JUPYTERHUB_LAB_EXT_SHARE")
        else None,
        Path(__file__).resolve().parents[2] / "share" / _NAME,
        Path(sys.prefix) / "share" / _NAME,
    ]
    for path in candidates:
        if path is not None and path.is_dir():
            return path
    return Path(sys.prefix) / "share" / _NAME


def templates_dir() -> Path:
    """Directory of the Jinja templates this package ships (spawn form, queue page)."""
    return share_dir() / "templates"
