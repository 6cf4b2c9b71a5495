"""Blocking account database lookups for :mod:`.system_users` (``pwd``/``grp`` through NSS).

Everything here may block (NSS can be LDAP or SSSD), so callers run it in a thread.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


@dataclass(frozen=True)
class UserEntry:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


class NssLookup:
    """The account database through NSS (``pwd``/``grp``); tests substitute a fake."""

    def user(self, name: str) -> UserEntry | None:
        try:
            return self._user(pwd.getpwnam(name))
        except KeyError:
            return None

    def user_by_uid(self, uid: int) -> UserEntry | None:
        try:
            return self._user(pwd.getpwuid(uid))
        except KeyError:
            return None

    def group(self, name: str) -> GroupEntry | None:
        try:
            return self._group(grp.getgrnam(name))
        except KeyError:
            return None

    def group_by_gid(self, gid: int) -> GroupEntry | None:
        try:
            return self._group(grp.getgrgid(gid))
        except KeyError:
            return None

    def group_names_of(self, name: str, gid: int) -> set[str]:
        """Names of all groups ``name`` belongs to (primary ``gid`` included)."""
        names = set()
        for g in os.getgrouplist(name, gid):
            entry = self.group_by_gid(g)
            if entry is not None:
                names.add(entry.name)
        return names

    @staticmethod
    def _user(p) -> UserEntry:
        return UserEntry(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell)

    @staticmethod
    def _group(g) -> GroupEntry:
        return GroupEntry(g.gr_name, g.gr_gid, tuple(g.gr_mem))
