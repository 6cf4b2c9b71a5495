"""Whether a shared environment is safe to offer: only root (or a trusted owner) can change it.

A shared env's programs run as every user who picks it, so whoever can change the env can run code
as those users. Whoever can write a directory can also replace what is inside it (rename the env
away, put their own in its place). So a shared env is offered only when its directory and every
directory above it up to ``/`` are real directories (no symbolic link), owned by root or one of the
trusted owners, and not writable by group or others. The sticky bit does not make a directory safe:
in a world-writable sticky directory such as ``/tmp`` anybody can create the env in the first place.

:func:`problem` is the pure decision for one directory; :class:`TrustCheck` applies it to a path and
its ancestors (``lstat`` only, nothing is followed or run), remembering each directory's verdict
within one scan.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Iterable


def owner_name(uid: int) -> str:
    """``alice (uid 1001)``, or ``uid 1001`` for a uid without an account."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def problem(
    path: str,
    st: os.stat_result | None,
    trusted_uids: frozenset[int],
    describe_owner: Callable[[int], str] = owner_name,
) -> str | None:
    """Why the directory ``path`` (its ``lstat`` result, None if missing) makes an env unsafe."""
    if st is None:
        return f"{path} cannot be read"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    mode = f"mode {stat.S_IMODE(st.st_mode):04o}"
    if st.st_uid != 0 and st.st_uid not in trusted_uids:
        return f"{path} is owned by {describe_owner(st.st_uid)}, not by root or a trusted owner"
    if st.st_mode & stat.S_IWOTH:
        return f"{path} is writable by others ({mode})"
    if st.st_mode & stat.S_IWGRP:
        return f"{path} is writable by its group ({mode})"
    return None


def resolve_owners(names: Iterable[str]) -> frozenset[int]:
    """The uids of trusted owners given by name or number; unknown names trust nobody."""
    uids = set()
    for name in names:
        if name.isdigit():
            uids.add(int(name))
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            continue
    return frozenset(uids)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


class TrustCheck:
    """Applies :func:`problem` to a path and all its ancestors; one instance per scan (directories
    are re-checked on the next scan, so fixing a mode takes effect at once)."""

    def __init__(self, trusted_uids: frozenset[int] = frozenset(), lstat=_lstat):
        self.trusted_uids = trusted_uids
        self._lstat = lstat
        self._seen: dict[str, str | None] = {}

    def reason(self, path: str) -> str | None:
        """Why ``path`` (absolute, normalised, symlink-free) is not a safe place for a shared env,
        or None: the first problem from ``/`` down."""
        if path in self._seen:
            return self._seen[path]
        parent = os.path.dirname(path)
        found = self.reason(parent) if parent != path else None
        if found is None:
            found = problem(path, self._lstat(path), self.trusted_uids)
        self._seen[path] = found
        return found
