"""Which userlist is in force for one authenticator, and what changed since the last look.

:class:`UserlistWatch` wraps a hot-reloaded :class:`~.userlist_file.UserlistFile`: every look costs
one ``stat``; when a new good version appears, ``on_change(old, new)`` is called once, on the
thread that looked (the hub's event loop, or a worker thread via :meth:`UserlistWatch.refresh`,
which then reports the change on the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jupyterhub_lab_ext.auth.userlist import Userlist, UserlistEntry
from jupyterhub_lab_ext.auth.userlist_file import UserlistFile, UserlistLoadError


class UserlistWatch:
    """The list in force over ``file``; ``allow_all``: users without a line are not refused.

    :param on_change: ``(old, new) -> None``, called when a new good list replaces ``old``
        (not for the first list).
    """

    def __init__(
        self,
        file: UserlistFile,
        *,
        allow_all: bool,
        on_change: Callable[[Userlist, Userlist], None],
    ):
        self.file = file
        self.allow_all = allow_all
        self.on_change = on_change
        self._known: Userlist | None = None

    def current(self) -> Userlist:
        """The current good list; raises :class:`UserlistLoadError` if none ever loaded."""
        new = self.file.get()
        if new is not self._known:
            old, self._known = self._known, new
            if old is not None:
                self.on_change(old, new)
        return new

    def in_force(self) -> Userlist | None:
        """The list users are checked against; None when unlisted users are not refused
        (``allow_all``, or no list ever loaded)."""
        if self.allow_all:
            return None
        try:
            return self.current()
        except UserlistLoadError:
            return None

    def entry(self, username: str) -> UserlistEntry | None:
        """The line of ``username`` (None if not listed or no list loaded)."""
        try:
            return self.current().get(username)
        except UserlistLoadError:
            return None

    def listed(self, username: str) -> bool:
        """True if ``username`` has a line in the current list."""
        return self.entry(username) is not None

    async def refresh(self) -> bool:
        """Re-read a changed file in a worker thread, then act on changes here.

        False when no list could ever be loaded.
        """
        try:
            await asyncio.to_thread(self.file.get)
        except UserlistLoadError:
            return False
        self.current()
        return True
