"""The userlist format: parse and validate it, pure (no I/O).

Format (UTF-8, one user a line)::

    # comment lines and blank lines are fine
    user.name@gmail.com admin            # trailing comments too
    jovyan admin
    bob@example.org group:physics group:teachers

``IDENTITY [admin] [group:NAME ...]``: the identity is a provider login or an email (matched
case-insensitively); ``admin`` makes a hub admin; ``group:NAME`` puts the user in hub group
NAME. Anything else is an error. Every error names ``file:line``; duplicate identities and two
identities that map to the same system username are errors naming both lines.

:func:`parse_userlist` turns text into a :class:`Userlist`; :mod:`.userlist_file` reads the file,
reloads it when it changes and edits it in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from jupyterhub_lab_ext.auth.naming import normalize_username

ADMIN_TOKEN = "admin"
GROUP_PREFIX = "group:"
GROUP_NAME_RE = re.compile(r"[^\s,/#]+")

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


def parse_tokens(tokens: list[str]) -> tuple[bool, tuple[str, ...], str | None]:
    """``(admin, groups, problem)`` of the tokens after the identity (``problem``: None if ok)."""
    admin = False
    groups: list[str] = []
    for tok in tokens[1:]:
        if tok.lower() == ADMIN_TOKEN:
            admin = True
        elif tok.lower().startswith(GROUP_PREFIX):
            name = tok[len(GROUP_PREFIX) :]
            if not GROUP_NAME_RE.fullmatch(name):
                return admin, (), f"bad group token {tok!r}: expected group:NAME"
            if name not in groups:
                groups.append(name)
        else:
            return admin, (), f"unknown token {tok!r} (expected 'admin' or 'group:NAME')"
    return admin, tuple(groups), None


class _Seen:
    """The lines parsed so far, to find duplicate identities and clashing usernames."""

    def __init__(self):
        self.identities: dict[str, UserlistEntry] = {}
        self.names: dict[str, UserlistEntry] = {}

    def add(self, entry: UserlistEntry) -> None:
        self.identities[identity_key(entry.identity)] = entry
        self.names[entry.username] = entry


def _parse_line(
    tokens: list[str],
    lineno: int,
    seen: _Seen,
    to_name: UsernameFor,
    reserved: ReservedCheck | None,
) -> UserlistEntry | str:
    """The entry of one non-empty line, or the message of its error."""
    identity = tokens[0]
    if identity.lower() == ADMIN_TOKEN or identity.lower().startswith(GROUP_PREFIX):
        return f"line starts with {identity!r}, not an identity"
    admin, groups, problem = parse_tokens(tokens)
    if problem:
        return problem
    first = seen.identities.get(identity_key(identity))
    if first is not None:
        return f"duplicate identity {identity!r} (first on line {first.lineno})"
    try:
        username = to_name(identity)
    except ValueError as e:
        return f"identity {identity!r}: {e}"
    other = seen.names.get(username)
    if other is not None:
        return (
            f"identities {identity!r} (line {lineno}) and {other.identity!r} "
            f"(line {other.lineno}) both map to system username {username!r}"
        )
    why = reserved(username) if reserved is not None else None
    if why:
        return f"identity {identity!r}: {why}"
    return UserlistEntry(identity, username, admin, groups, lineno)


def parse_lines(
    lines: Iterable[str],
    *,
    path: str = "<userlist>",
    username_for: UsernameFor | None = None,
    reserved: ReservedCheck | None = None,
) -> tuple[tuple[UserlistEntry, ...], list[UserlistError]]:
    """Parse lines into entries and errors (both complete; nothing raised)."""
    to_name = username_for or normalize_username
    entries: list[UserlistEntry] = []
    errors: list[UserlistError] = []
    seen = _Seen()
    for lineno, line in enumerate(lines, 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        result = _parse_line(tokens, lineno, seen, to_name, reserved)
        if isinstance(result, str):
            errors.append(UserlistError(path, lineno, result))
            continue
        entries.append(result)
        seen.add(result)
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


def format_line(identity: str, admin: bool, groups: Iterable[str], comment: str = "") -> str:
    """A userlist line (``comment``: ``" # ..."`` kept from an edited line, or ``""``)."""
    tokens = [identity]
    if admin:
        tokens.append(ADMIN_TOKEN)
    tokens.extend(f"{GROUP_PREFIX}{g}" for g in groups)
    return " ".join(tokens) + comment
