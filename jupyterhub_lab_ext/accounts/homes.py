"""Home directories: create them, and their parents, safely as root.

Everything here is synchronous file-system work meant to run in a worker thread
(``asyncio.to_thread``); :mod:`jupyterhub_lab_ext.accounts.system_users` does that. The template
copy (:mod:`.home_template`) and the archive of a home (:mod:`.archive`) build on the helpers here.

Root writes into directories that users control, so every step works on directory file
descriptors and never follows a symlink inside a home:

- a path component in a home is opened with ``O_NOFOLLOW | O_DIRECTORY`` (:data:`DIR_FLAGS`)
  relative to the already-open parent, so ``~/notebooks -> /etc`` is never entered;
- a file is created with ``O_CREAT | O_EXCL`` (which never follows a symlink and never
  opens an existing file), written, then ``fchown``/``fchmod``-ed through its descriptor;
- the parents of a home (the home root and up) must be owned by root and not writable by
  group or others, and the home root not even with the sticky bit (anyone could create a
  future user's home first).

Root must be able to create and chown files in the homes: on NFS that means an export
without ``root_squash`` for the home root (otherwise every step fails with a clear error).
"""

from __future__ import annotations

import os
import stat

#: open a directory relative to its parent's descriptor, never through a symlink
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HomeError(RuntimeError):
    """A home directory could not be created or used safely."""


def lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    """``lstat`` of ``name`` in the directory open at ``dir_fd``; None if it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _check_trusted_dir(path: str) -> None:
    """Refuse a parent directory that someone other than root (or us) could change."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise HomeError(f"{path} is owned by uid {st.st_uid}, not by root")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise HomeError(f"{path} is writable by group or others (mode {st.st_mode & 0o7777:o})")


def make_parents(parent: str, mode: int = 0o755) -> None:
    """Create missing parent directories (root-owned, exact ``mode``) and check them all."""
    parent = os.path.abspath(parent)
    missing = []
    path = parent
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    _check_trusted_chain(path)  # before creating anything in it (it may be a user's symlink)
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue
        os.chmod(path, mode)  # never trust the umask
    _check_trusted_chain(parent)


def _check_trusted_chain(path: str) -> None:
    """:func:`_check_trusted_dir` on the resolved ``path`` and every ancestor of it."""
    path = os.path.realpath(path)
    while True:
        _check_trusted_dir(path)
        if path == os.path.dirname(path):
            break
        path = os.path.dirname(path)


def make_home(home: str, uid: int, gid: int, mode: int, *, adopt_root_owned: bool) -> bool:
    """Ensure ``home`` is a directory owned by ``uid:gid``; return True if it was created.

    A new home gets exactly ``mode``. An existing home must be a real directory owned by the
    user; it keeps its mode (users may have opened it up on purpose). An existing *empty* home
    owned by root is taken over (chowned, ``mode`` applied) only with ``adopt_root_owned`` (for
    an account created just now, e.g. an admin made the directory in advance).
    """
    home = os.path.abspath(home)
    parent, base = os.path.split(home)
    if not base or base in (".", ".."):
        raise HomeError(f"refusing home directory {home!r}")
    make_parents(parent)
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pmode = os.fstat(pfd).st_mode
        if pmode & 0o022:  # even with the sticky bit, anyone could squat a future home name
            raise HomeError(
                f"home root {parent} is writable by group or others (mode {pmode & 0o7777:o})"
            )
        created = False
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
            created = True
        except FileExistsError:
            pass
        try:
            hfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            raise HomeError(f"{home} exists and is not a directory (or is a symlink): {e}") from e
        try:
            st = os.fstat(hfd)
            adopt = not created and st.st_uid == 0 and st.st_uid != uid and adopt_root_owned
            if adopt and os.listdir(hfd):  # never hand over a populated root directory (/etc)
                raise HomeError(f"{home} exists, is owned by root and is not empty")
            if created or adopt:
                os.fchown(hfd, uid, gid)
                os.fchmod(hfd, mode)
            elif st.st_uid != uid:
                raise HomeError(f"{home} exists and is owned by uid {st.st_uid}, not {uid}")
        finally:
            os.close(hfd)
        return created
    finally:
        os.close(pfd)
