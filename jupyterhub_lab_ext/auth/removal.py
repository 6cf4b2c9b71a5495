"""What happens to a user whose line left the userlist, once their credentials are revoked.

Revoking tokens and cookies is :mod:`.access`'s job and happens whatever ``on_removal`` says.
Then, per ``on_removal``: stop the user's servers through the hub app (:class:`ServerStopper`),
lock the system account, and archive the home into ``removed_homes_archive_dir``
(:class:`RemovalActions`). Failures are logged and the next step still runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from jupyterhub_lab_ext.accounts.system_users import SystemUsers

Log = logging.Logger | logging.LoggerAdapter


class ServerStopper:
    """Stop every active server of a user through the JupyterHub ``app`` (its proxy and users).

    :param is_listed: ``username -> bool``, for stops that must not hit a user who is back.
    """

    def __init__(self, app: Any, *, is_listed: Callable[[str], bool], log: Log):
        self.app = app
        self.is_listed = is_listed
        self.log = log
        self._stopping: dict[str, asyncio.Lock] = {}

    async def stop(self, username: str, *, only_unlisted: bool = False) -> int:
        """Stop every active server of ``username``; return how many.

        One stop at a time per user: a second call waits for the first and then finds nothing
        left to stop. ``only_unlisted``: do nothing if the user is (back) in the userlist.
        """
        users = getattr(self.app, "users", None)
        if users is None:
            self.log.warning("user=%s: no hub app available, servers not stopped", username)
            return 0
        async with self._stopping.setdefault(username, asyncio.Lock()):
            if only_unlisted and self.is_listed(username):
                return 0
            try:
                user = users[username]
            except KeyError:
                return 0
            return await self._stop_all(user, username)

    async def _stop_all(self, user, username: str) -> int:
        stopped = 0
        for name, spawner in list(user.spawners.items()):
            if not spawner.active or spawner.pending == "stop":
                continue
            self.log.info("user=%s is not in the userlist: stopping server %r", username, name)
            try:
                await self.app.proxy.delete_user(user, name)
                await user.stop(name)
                stopped += 1
            except Exception as e:
                self.log.error("user=%s: stopping server %r failed: %s", username, name, e)
        return stopped


class RemovalActions:
    """Apply ``on_removal`` (``mode``) and the home archive to a removed user.

    :param system_users: None when the authenticator manages no system accounts (then only
        servers are stopped).
    :param archive_dir: ``removed_homes_archive_dir`` (``""``: no archive).
    """

    def __init__(
        self,
        *,
        mode: str,
        archive_dir: str,
        servers: ServerStopper,
        system_users: SystemUsers | None,
        log: Log,
    ):
        if archive_dir and mode == "revoke":
            log.warning("removed_homes_archive_dir needs on_removal 'stop' or 'lock': ignored")
        self.mode = mode
        self.archive_dir = archive_dir
        self.servers = servers
        self.system_users = system_users
        self.log = log

    async def apply(self, username: str) -> None:
        """Stop the servers, then lock and archive as configured (``"revoke"``: nothing)."""
        if self.mode == "revoke":
            return
        await self.servers.stop(username)
        if self.system_users is None:
            return
        if self.mode == "lock":
            await self._account_action(username, "lock_account")
        if self.archive_dir:  # after the servers stopped
            await self._account_action(username, "archive_home", self.archive_dir)

    async def _account_action(self, username: str, method: str, *args) -> None:
        su = self.system_users
        if not await asyncio.to_thread(su.created_by_us, username):
            self.log.info("user=%s: no account created by us, %s skipped", username, method)
            return
        try:
            result = await getattr(su, method)(username, *args)
        except Exception as e:  # SystemUserError and friends: log, keep going
            self.log.error("user=%s: %s failed: %s", username, method, e)
        else:
            self.log.info("user=%s: %s done%s", username, method, f" ({result})" if result else "")
