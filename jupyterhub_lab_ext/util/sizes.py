"""Sizes in bytes as people read them (the hub's spawn form and the user's JupyterLab)."""

from __future__ import annotations

#: the units of ``mem_limit`` (``256M``): powers of 1024, shown as KB, MB, GB, TB
UNITS = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))


def size_text(size: int) -> str:
    """268435456 -> ``256 MB``; 1.5 GiB -> ``1.5 GB``; 100 -> ``100 bytes``."""
    for unit, factor in UNITS:
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
