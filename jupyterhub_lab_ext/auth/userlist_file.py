"""The userlist file on disk: read it safely, reload it when it changes, edit it in place.

:func:`load_userlist` reads and parses (:mod:`.userlist`) a file that must be a regular file no
other local user can rewrite. :class:`UserlistFile` keeps the last good version and re-reads the
file when its ``stat`` changes (hot reload). :func:`set_entry` / :func:`remove_entry` are the
atomic edits that keep comments, blank lines and the order of lines.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Sequence

from jupyterhub_lab_ext.auth.userlist import (
    ADMIN_TOKEN,
    GROUP_NAME_RE,
    GROUP_PREFIX,
    ReservedCheck,
    Userlist,
    UserlistError,
    UserlistParseError,
    UsernameFor,
    format_line,
    identity_key,
    parse_tokens,
    parse_userlist,
    split_line,
)
from jupyterhub_lab_ext.util.atomic import atomic_replace


def decode_userlist(data: bytes, path: str) -> str:
    """UTF-8 text of a userlist file; a decode error names the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise UserlistParseError(
            [UserlistError(path, lineno, f"not valid UTF-8 ({e.reason})")]
        ) from None


def read_regular_file(path: str) -> bytes:
    """The bytes of ``path`` (symlinks followed), which must be a regular file.

    Opened non-blocking and checked with ``fstat`` before reading, so a FIFO or device put
    in place of the userlist gives an error instead of hanging the hub.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        _check_not_world_writable(path, st)
        return f.read()


def _check_not_world_writable(path: str, st: os.stat_result) -> None:
    """Refuse a list that any local user could rewrite (and so make themselves admin)."""
    if st.st_mode & stat.S_IWOTH:
        raise OSError(
            errno.EPERM, f"writable by everyone (mode {st.st_mode & 0o7777:o}); chmod o-w it"
        )
    directory = os.path.dirname(os.path.realpath(path))
    dmode = os.stat(directory).st_mode
    untrusted_owner = st.st_uid not in (0, os.geteuid())
    if dmode & stat.S_IWOTH and (not dmode & stat.S_ISVTX or untrusted_owner):
        raise OSError(
            errno.EPERM,
            f"its directory {directory} is writable by everyone (mode {dmode & 0o7777:o}): "
            "any local user could replace it",
        )


def load_userlist(path: str, **kwargs) -> Userlist:
    """Read and parse a userlist file (I/O edge; ``kwargs`` as for :func:`parse_userlist`)."""
    try:
        data = read_regular_file(path)
    except OSError as e:
        raise UserlistParseError(
            [UserlistError(path, 0, f"cannot read: {e.strerror or e}")]
        ) from None
    return parse_userlist(decode_userlist(data, path), path=path, **kwargs)


class UserlistLoadError(RuntimeError):
    """No valid userlist has been loaded yet (the first load failed)."""

    def __init__(self, path: str, errors: Sequence[UserlistError]):
        self.path = path
        self.errors = tuple(errors)
        detail = "\n".join(str(e) for e in self.errors)
        super().__init__(
            f"userlist {path} could not be loaded and no earlier version is known:\n{detail}"
        )


class UserlistFile:
    """A userlist file, re-read when it changes (hot reload).

    :meth:`get` costs one ``os.stat`` when the file is unchanged. On a bad edit the last good
    list stays in force and the error is logged once per file version (mtime, size, inode).
    If the very first load fails, :meth:`get` raises :class:`UserlistLoadError`.
    """

    def __init__(
        self,
        path: str,
        *,
        username_for: UsernameFor | None = None,
        reserved: ReservedCheck | None = None,
        log: logging.Logger | None = None,
    ):
        self.path = path
        self.username_for = username_for
        self.reserved = reserved
        self.log = log or logging.getLogger(__name__)
        self._signature: tuple | None = None
        self._current: Userlist | None = None
        self._errors: tuple[UserlistError, ...] = ()
        self.generation = 0  # bumped each time a new good list is loaded
        self._lock = threading.Lock()

    @property
    def errors(self) -> tuple[UserlistError, ...]:
        """Errors of the file version on disk (empty when it is valid)."""
        return self._errors

    def invalidate(self) -> None:
        """Force a re-read on the next :meth:`get` (after our own edits)."""
        self._signature = None

    def _stat_signature(self) -> tuple:
        try:
            st = os.stat(self.path)
        except OSError as e:
            return ("missing", e.errno)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def get(self) -> Userlist:
        """The current good list (thread-safe; a worker thread may do the re-read)."""
        sig = self._stat_signature()
        if sig != self._signature:
            with self._lock:
                if sig != self._signature:
                    self._reload(sig)
        if self._current is None:
            raise UserlistLoadError(self.path, self._errors)
        return self._current

    def _reload(self, sig: tuple) -> None:
        self._signature = sig
        try:
            new = load_userlist(self.path, username_for=self.username_for, reserved=self.reserved)
        except UserlistParseError as e:
            self._errors = e.errors
            keep = "keeping the last good list" if self._current else "no users can log in"
            self.log.error(
                "Userlist %s is invalid (%s):\n%s",
                self.path,
                keep,
                "\n".join(str(err) for err in e.errors),
            )
            return
        self._errors = ()
        self._current = new
        self.generation += 1
        self.log.info("Loaded userlist %s: %d users", self.path, len(new))


# ---- editing ---------------------------------------------------------------------------------

_edit_lock = threading.Lock()


def _atomic_write(path: str, text: str) -> None:
    """Replace the userlist atomically, keeping the mode and (when allowed) the owner of an
    existing file; a symlinked userlist stays a symlink (its target is replaced)."""
    path = os.path.realpath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    atomic_replace(
        path,
        lambda f: f.write(text),
        mode=st.st_mode & 0o7777 if st else 0o644,
        owner=(st.st_uid, st.st_gid) if st else None,
    )


def _read_lines(path: str) -> list[str]:
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        return []
    return decode_userlist(data, path).splitlines(keepends=True)


def _find(lines: list[str], identity: str) -> int:
    key = identity_key(identity)
    for i, line in enumerate(lines):
        tokens, _ = split_line(line.removeprefix("\ufeff") if i == 0 else line)
        if tokens and identity_key(tokens[0]) == key:
            return i
    return -1


def set_entry(
    path: str,
    identity: str,
    *,
    admin: bool | None = None,
    groups: Sequence[str] | None = None,
) -> bool:
    """Add ``identity`` to the file, or update admin/groups of its line; True if it changed.

    ``None`` keeps what the line has (or ``False`` / no groups for a new line). Comments, blank
    lines and the order of the other lines are kept; the write is atomic.
    """
    if (
        not identity
        or "#" in identity
        or not identity.isprintable()  # newlines, NUL, other controls, zero-width characters
        or any(c.isspace() for c in identity)
        or identity.lower() == ADMIN_TOKEN
        or identity.lower().startswith(GROUP_PREFIX)
    ):
        raise ValueError(f"cannot write identity {identity!r} to a userlist")
    for g in groups or ():
        if not GROUP_NAME_RE.fullmatch(g):
            raise ValueError(f"bad group name {g!r}")
    with _edit_lock:
        lines = _read_lines(path)
        i = _find(lines, identity)
        if i < 0:
            new_line = format_line(identity, bool(admin), groups or ()) + "\n"
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(new_line)
        else:
            tokens, comment = split_line(lines[i])
            old_admin, old_groups, _ = parse_tokens(tokens)
            ending = lines[i][len(lines[i].rstrip("\r\n")) :]
            new_line = format_line(
                tokens[0],
                old_admin if admin is None else admin,
                old_groups if groups is None else groups,
                comment,
            )
            if new_line + ending == lines[i]:
                return False
            lines[i] = new_line + ending
        _atomic_write(path, "".join(lines))
        return True


def remove_entry(path: str, identity: str) -> bool:
    """Remove the line of ``identity`` (atomic, everything else kept); True if it was there."""
    with _edit_lock:
        lines = _read_lines(path)
        i = _find(lines, identity)
        if i < 0:
            return False
        del lines[i]
        _atomic_write(path, "".join(lines))
        return True
