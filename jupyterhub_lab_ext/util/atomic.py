"""Atomic file replacement: a temp file in the same directory, fsync, ``os.replace``, fsync the
directory. A reader sees the old or the new content, never a half-written file, even after a crash."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import IO


def atomic_replace(
    path: str,
    write: Callable[[IO[str]], None],
    *,
    mode: int,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace ``path`` with what ``write(file)`` writes (UTF-8 text, newlines as given).

    The new file gets ``mode`` and, when given and permitted, ``owner`` (uid, gid) before it
    replaces the old one, so it is never visible with looser permissions. The temp file is made
    with ``O_EXCL`` (mkstemp), so a planted symlink at its name cannot redirect the write.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), *owner)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
