"""The account we want (:class:`AccountSpec`) and the account we got (:class:`Account`).

Plain values shared by the command builders (:mod:`.commands`), the rules (:mod:`.policy`) and
the front door (:mod:`.system_users`); this module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountSpec:
    """The account we want to exist.

    ``group`` is the primary group (default: a personal group named like the account),
    ``uid``/``gid`` pin the numeric ids (e.g. to match an NFS server), ``home_mode`` is the
    exact mode of a newly created home (the umask does not apply).
    """

    name: str
    home: str
    home_mode: int = 0o700
    uid: int | None = None
    gid: int | None = None
    group: str | None = None
    supplementary_groups: tuple[str, ...] = ()
    shell: str = "/bin/bash"
    comment: str = ""


@dataclass(frozen=True)
class Account:
    """An account that exists. ``created`` is True if the call that returned it created it."""

    name: str
    uid: int
    gid: int
    home: str
    created: bool
