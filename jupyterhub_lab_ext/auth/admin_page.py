"""The hub's admin page (and REST API) edits the userlist file.

With ``sync_admin_page_changes``, a user added there gets a line in the file and a user deleted
there loses theirs. The line carries the identity the admin typed (``Frank@Example.org``), not
the username JupyterHub made of it (``frank``); :class:`~.identities.IdentityMemo` remembers
which is which. Edits are atomic and keep comments and the order of lines
(:func:`~.userlist_file.set_entry`, :func:`~.userlist_file.remove_entry`).
"""

from __future__ import annotations

import asyncio
import logging

from jupyterhub_lab_ext.auth.identities import IdentityMemo
from jupyterhub_lab_ext.auth.userlist_file import remove_entry, set_entry
from jupyterhub_lab_ext.auth.watch import UserlistWatch


class AdminPageEdits:
    """Write admin-page additions and deletions into the file ``watch`` reads.

    :param enabled: ``sync_admin_page_changes``; when False the file is never written.
    """

    def __init__(
        self,
        watch: UserlistWatch,
        memo: IdentityMemo,
        *,
        enabled: bool,
        log: logging.Logger | logging.LoggerAdapter,
    ):
        self.enabled = enabled
        self.watch = watch
        self.file = watch.file
        self.memo = memo
        self.log = log

    async def add(self, username: str, *, admin: bool) -> bool:
        """Add the identity typed for ``username``; True when the user can now log in.

        Undoes the edit and raises ValueError when the file then has no line for ``username``
        (a broken file, or the identity maps elsewhere). False when not :attr:`enabled`.
        """
        if not self.enabled:
            self.log.warning(
                "user=%s added on the admin page but not in the userlist: cannot log in", username
            )
            return False
        identity = self.memo.identity_for(username)
        self.log.info(
            "user=%s added on the admin page: writing %r to the userlist", username, identity
        )
        await asyncio.to_thread(set_entry, self.file.path, identity, admin=admin)
        self.file.invalidate()
        if self.watch.entry(username) is not None:
            return True
        await asyncio.to_thread(remove_entry, self.file.path, identity)
        self.file.invalidate()
        errors = "; ".join(str(e) for e in self.file.errors)
        raise ValueError(
            f"{identity!r} could not be added to the userlist as {username!r}: "
            + (errors or "type the identity (login or email) on the admin page")
        )

    async def remove(self, username: str) -> bool:
        """Remove the line of ``username``; False if it has none (or not :attr:`enabled`)."""
        entry = self.watch.entry(username) if self.enabled else None
        if entry is None:
            return False
        self.log.info("user=%s deleted on the admin page: removing %r", username, entry.identity)
        await asyncio.to_thread(remove_entry, self.file.path, entry.identity)
        self.file.invalidate()
        return True
