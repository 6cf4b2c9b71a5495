"""Private state files: the services' SQLite databases, readable by the service account only.

They hold user names, exemption reasons, queue and admission records. :func:`prepare_sqlite_file`
runs before the engine opens a database file: it creates a missing directory 0700 and the file
0600, tightens files an older version created 0644, and refuses a directory that others may write
(they could replace the database or plant a journal). SQLite gives its ``-journal``, ``-wal`` and
``-shm`` files the database file's own mode, whatever the umask, so they are 0600 too. Databases
other than SQLite files (PostgreSQL, in-memory SQLite) are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import make_url

from jupyterhub_lab_ext.services.common.lifecycle import StartupError

#: files SQLite keeps next to a database file
SIDE_FILES = ("-journal", "-wal", "-shm")


class StateDirError(StartupError):
    """The state directory is not private enough to keep the service's database in."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (absolute, relative paths from the working directory, as SQLite
    resolves them), or None for other databases and in-memory SQLite."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite"):
        return None
    database = u.database or ""
    if database.startswith("file:"):  # a URI filename (sqlite:///file:path?mode=...&uri=true)
        parts = urlsplit(database)
        if parse_qs(parts.query).get("mode") == ["memory"]:
            return None
        database = parts.path
    if not database or database == ":memory:" or u.query.get("mode") == "memory":
        return None
    return Path(os.path.abspath(database))


def directory_problem(mode: int, uid: int, euid: int) -> str | None:
    """Why a directory with ``mode`` owned by ``uid`` may not hold this account's (``euid``)
    state, or None if it may."""
    writers = [
        who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit
    ]
    if writers:
        return f"it is writable by {' and '.join(writers)} (mode {stat.S_IMODE(mode):04o})"
    if uid not in (euid, 0):
        return f"it is owned by uid {uid}, neither this service's account (uid {euid}) nor root"
    return None


def prepare_sqlite_file(path: Path) -> list[tuple[int, str]]:
    """Make ``path`` ready to be opened as a private database; return ``[(log level, what
    was changed)]``.

    Creates the directory (0700, missing parents with the default mode) and an empty database
    file (0600) when missing; raises :class:`StateDirError` when the directory is writable by
    group or others, or owned by another account than this one or root; sets an existing
    database file and its side files that are open to group or others to 0600.
    """
    notes = []
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # whatever the umask
        notes.append((logging.INFO, f"Created state directory {directory} (mode 0700)"))
    st = directory.stat()
    problem = directory_problem(st.st_mode, st.st_uid, os.geteuid())
    if problem:
        raise StateDirError(
            f"Refusing to keep {path.name} in {directory}: {problem}. Anyone who can write there "
            f"can replace or read the service's database. Make it private (chown it to the "
            f"service's account, chmod 700) or set db_url to a file in a private directory"
        )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, flags, 0o600))
    for file in [path, *(Path(f"{path}{suffix}") for suffix in SIDE_FILES)]:
        try:
            st = file.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            try:
                os.chmod(file, 0o600)
            except PermissionError:
                notes.append((logging.WARNING, f"{file} has mode {mode} and is not ours to fix"))
            else:
                notes.append((logging.WARNING, f"Made {file} private (mode {mode} -> 0600)"))
    return notes
