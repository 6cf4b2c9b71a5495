"""The userlist file: parse, validate, hot reload, and edit it in place.

Format (UTF-8, one user a line)::

    # comment lines and blank lines are fine
    user.name@gmail.com admin            # trailing comments too
    jovyan admin
    bob@example.org group:physics group:teachers

``IDENTITY [admin] [group:NAME ...]``: the identity is a provider login or an email (matched
case-insensitively); ``admin`` makes a hub admin; ``group:NAME`` puts the user in hub group
NAME. Anything else is an error. Every error names ``file:line``; duplicate identities and two
identities that map to the same system username are errors naming both lines.

Parsing is pure (:func:`parse_userlist`). :class:`UserlistFile` adds the I/O of hot reload and
:func:`set_entry` / :func:`remove_entry` the atomic edits that keep comments and order.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from jupyterhub_lab_ext.util.atomic import atomic_replace

ADMIN_TOKEN = "admin"
GROUP_PREFIX = "group:"
_GROUP_NAME_RE = re.compile(r"[^\s,/#]+")

UsernameFor = Callable[[str], str]
ReservedCheck = Callable[[str], "str | None"]


@dataclass(frozen=True)
class UserlistEntry:
    """One user line: the identity as written, its system username, admin flag, hub groups."""

    identity: str
    username: str
    admin: bool = False
    groups: tuple[str, ...] = ()
    lineno: int = 0


@dataclass(frozen=True)
class UserlistError:
    """A problem on one line; ``str()`` gives ``file:line: message``."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"


class UserlistParseError(ValueError):
    """A userlist that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[UserlistError]):
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class Userlist:
    """A valid userlist. Look users up by system username or by identity (case-insensitive)."""

    path: str
    entries: tuple[UserlistEntry, ...]
    by_username: MappingProxyType = field(repr=False, compare=False)
    by_identity: MappingProxyType = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, username: str) -> UserlistEntry | None:
        return self.by_username.get(username)

    def find_identity(self, identity: str) -> UserlistEntry | None:
        return self.by_identity.get(identity_key(identity))

    @property
    def usernames(self) -> frozenset[str]:
        return frozenset(self.by_username)


def _fold_char(c: str) -> str:
    folded = c.casefold()
    # a non-ASCII character never folds to ASCII: U+212A KELVIN SIGN is not "k", U+017F LONG S
    # is not "s", "\u00df" is not "ss" (providers treat such logins as different accounts)
    return c if folded.isascii() and not c.isascii() else folded


def identity_key(identity: str) -> str:
    """How identities are compared: case-insensitive (logins and email addresses).

    Case is folded per character, and a non-ASCII character is never folded into an ASCII
    one, so a look-alike identity (``"\u212aate"``, Kelvin sign) never matches ``kate``.
    """
    if identity.isascii():
        return identity.lower()
    return "".join(_fold_char(c) for c in identity)


def split_line(line: str) -> tuple[list[str], str]:
    """Split a line into tokens and its comment (``"# ..."`` with leading space, or ``""``)."""
    hash_at = line.find("#")
    if hash_at < 0:
        return line.split(), ""
    body = line[:hash_at]
    stripped = body.rstrip()
    return body.split(), line[len(stripped) :].rstrip("\r\n")


def _parse_tokens(tokens: list[str]) -> tuple[bool, tuple[str, ...], str | None]:
    admin = False
    groups: list[str] = []
    for tok in tokens[1:]:
        if tok.lower() == ADMIN_TOKEN:
            admin = True
        elif tok.lower().startswith(GROUP_PREFIX):
            name = tok[len(GROUP_PREFIX) :]
            if not _GROUP_NAME_RE.fullmatch(name):
                return admin, (), f"bad group token {tok!r}: expected group:NAME"
            if name not in groups:
                groups.append(name)
        else:
            return admin, (), f"unknown token {tok!r} (expected 'admin' or 'group:NAME')"
    return admin, tuple(groups), None


def _default_username(identity: str) -> str:
    from jupyterhub_lab_ext.auth.naming import normalize_username

    return normalize_username(identity)


def parse_lines(
    lines: Iterable[str],
    *,
    path: str = "<userlist>",
    username_for: UsernameFor | None = None,
    reserved: ReservedCheck | None = None,
) -> tuple[tuple[UserlistEntry, ...], list[UserlistError]]:
    """Parse lines into entries and errors (both complete; nothing raised)."""
    to_name = username_for or _default_username
    entries: list[UserlistEntry] = []
    errors: list[UserlistError] = []
    seen_identity: dict[str, UserlistEntry] = {}
    seen_name: dict[str, UserlistEntry] = {}
    for lineno, line in enumerate(lines, 1):
        if "#" in line:
            line = line[: line.index("#")]
        tokens = line.split()
        if not tokens:
            continue
        identity = tokens[0]
        if identity.lower() == ADMIN_TOKEN or identity.lower().startswith(GROUP_PREFIX):
            errors.append(
                UserlistError(path, lineno, f"line starts with {identity!r}, not an identity")
            )
            continue
        admin, groups, problem = _parse_tokens(tokens)
        if problem:
            errors.append(UserlistError(path, lineno, problem))
            continue
        key = identity_key(identity)
        first = seen_identity.get(key)
        if first is not None:
            errors.append(
                UserlistError(
                    path,
                    lineno,
                    f"duplicate identity {identity!r} (first on line {first.lineno})",
                )
            )
            continue
        try:
            username = to_name(identity)
        except ValueError as e:
            errors.append(UserlistError(path, lineno, f"identity {identity!r}: {e}"))
            continue
        other = seen_name.get(username)
        if other is not None:
            errors.append(
                UserlistError(
                    path,
                    lineno,
                    f"identities {identity!r} (line {lineno}) and {other.identity!r} "
                    f"(line {other.lineno}) both map to system username {username!r}",
                )
            )
            continue
        if reserved is not None:
            why = reserved(username)
            if why:
                errors.append(UserlistError(path, lineno, f"identity {identity!r}: {why}"))
                continue
        entry = UserlistEntry(identity, username, admin, groups, lineno)
        entries.append(entry)
        seen_identity[key] = entry
        seen_name[username] = entry
    return tuple(entries), errors


def parse_userlist(
    text: str,
    *,
    path: str = "<userlist>",
    username_for: UsernameFor | None = None,
    reserved: ReservedCheck | None = None,
) -> Userlist:
    """Parse userlist text; raise :class:`UserlistParseError` listing every error."""
    if text.startswith("\ufeff"):
        text = text[1:]
    entries, errors = parse_lines(
        text.splitlines(), path=path, username_for=username_for, reserved=reserved
    )
    if errors:
        raise UserlistParseError(errors)
    return Userlist(
        path=path,
        entries=entries,
        by_username=MappingProxyType({e.username: e for e in entries}),
        by_identity=MappingProxyType({identity_key(e.identity): e for e in entries}),
    )


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


# ---- editing -------------------------------------------------------------------------------

_edit_lock = threading.Lock()


def format_line(identity: str, admin: bool, groups: Iterable[str], comment: str = "") -> str:
    tokens = [identity]
    if admin:
        tokens.append(ADMIN_TOKEN)
    tokens.extend(f"{GROUP_PREFIX}{g}" for g in groups)
    return " ".join(tokens) + comment


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
        if not _GROUP_NAME_RE.fullmatch(g):
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
            old_admin, old_groups, _ = _parse_tokens(tokens)
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
