"""Side effects of the userlist authenticator: system accounts, polling, removal actions.

Removal actions (see ``on_removal``): stop the user's servers through the hub app, lock the
system account, archive the home. Each runs as a task on the hub's event loop; failures are
logged, never raised into a request. Tokens and cookies are :mod:`._auth_access`'s job.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Awaitable

from tornado.ioloop import PeriodicCallback
from tornado.web import HTTPError

from jupyterhub_lab_ext.auth.access import check_interval


def refusal(status: int, message: str) -> HTTPError:
    """An HTTPError whose page shows ``status : <standard reason>`` and then ``message``."""
    return HTTPError(status, message, reason=http.client.responses[status])


class RemovalActions:
    """Background work of one authenticator (``auth``): polling and removal actions."""

    def __init__(self, auth):
        self.auth = auth
        self.log = auth.log
        self._tasks: set[asyncio.Task] = set()
        self._poller: PeriodicCallback | None = None
        self._stopping: dict[str, asyncio.Lock] = {}

    def spawn(self, coro: Awaitable) -> asyncio.Task | None:
        """Run ``coro`` as a tracked task (or drop it with a log line if no loop runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.log.warning("no running event loop: removal action skipped")
            coro.close()
            return None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("userlist removal action failed", exc_info=task.exception())

    async def wait(self) -> None:
        """Wait for pending removal actions (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def start_polling(self) -> None:
        """Start the background pass (file check, then :meth:`.HubAccess.sync`) every
        :func:`._auth_access.check_interval` seconds (idempotent, needs a running loop)."""
        interval = check_interval(self.auth.userlist_poll_interval, self.auth.auth_refresh_age)
        if self._poller is not None or interval <= 0:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._poller = PeriodicCallback(self.auth.poll_userlist, interval * 1000, jitter=0.1)
        self._poller.start()

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    async def apply(self, username: str) -> None:
        """Apply ``on_removal`` and ``archive_removed_homes`` to a removed user."""
        auth = self.auth
        mode = auth.on_removal
        if mode == "revoke":
            return
        await self.stop_servers(username)
        if mode == "lock" and auth.create_system_users:
            await self._system_user_action(username, "lock_account")
        if auth.archive_removed_homes and auth.create_system_users:  # after the servers stopped
            await self._system_user_action(username, "archive_home", auth.archive_removed_homes)

    async def _system_user_action(self, username: str, method: str, *args) -> None:
        su = self.auth.system_users
        if not await asyncio.to_thread(su.created_by_us, username):
            self.log.info("user=%s: no account created by us, %s skipped", username, method)
            return
        try:
            result = await getattr(su, method)(username, *args)
        except Exception as e:  # SystemUserError and friends: log, keep going
            self.log.error("user=%s: %s failed: %s", username, method, e)
        else:
            self.log.info("user=%s: %s done%s", username, method, f" ({result})" if result else "")

    async def stop_servers(self, username: str, *, only_unlisted: bool = False) -> int:
        """Stop every active server of ``username`` (via the hub app); return how many.

        One stop at a time per user: a second call waits for the first and then finds nothing
        left to stop. ``only_unlisted``: do nothing if the user is (back) in the userlist.
        """
        app = getattr(self.auth, "parent", None)
        users = getattr(app, "users", None)
        if users is None:
            self.log.warning("user=%s: no hub app available, servers not stopped", username)
            return 0
        async with self._stopping.setdefault(username, asyncio.Lock()):
            if only_unlisted and self.auth.userlist_entry(username) is not None:
                return 0
            return await self._stop_all(app, users, username)

    async def _stop_all(self, app, users, username: str) -> int:
        try:
            user = users[username]
        except KeyError:
            return 0
        stopped = 0
        for name, spawner in list(user.spawners.items()):
            if not spawner.active or spawner.pending == "stop":
                continue
            self.log.info("user=%s is not in the userlist: stopping server %r", username, name)
            try:
                await app.proxy.delete_user(user, name)
                await user.stop(name)
                stopped += 1
            except Exception as e:
                self.log.error("user=%s: stopping server %r failed: %s", username, name, e)
        return stopped


async def provision(auth, username: str, *, during_login: bool = False) -> None:
    """Ensure the system account and home of ``username`` (once per process per user).

    Unlocks an account locked at removal when the user is back; fills a new home from the
    template. Refusals become 403/500 pages with a clear message when ``during_login``.
    """
    if not auth.create_system_users or username in auth._ensured:
        return
    from jupyterhub_lab_ext.accounts.system_users import ExistingAccountError, SystemUserError

    su = auth.system_users
    try:
        record = await asyncio.to_thread(lambda: su.accounts().get(username) or {})
        if record.get("locked"):
            await su.unlock_account(username)
        account = await su.ensure_account(auth.account_spec_for(username))
        if account.created and auth.home_template:
            n = await su.populate_home(account, auth.home_template, readonly=auth.template_readonly)
            auth.log.info(
                "user=%s home %s filled with %d template files", username, account.home, n
            )
    except ExistingAccountError as e:
        auth.log.error("user=%s refused: %s", username, e)
        raise refusal(
            403,
            f"Login refused: the system account name {username!r} belongs to an existing "
            "account that this hub did not create. Ask the hub administrator.",
        ) from None
    except SystemUserError as e:
        auth.log.error("user=%s: creating the system account failed: %s", username, e)
        if during_login:
            raise refusal(
                500,
                "Your system account could not be created; the administrator can see why in the hub log.",
            ) from None
        raise
    auth._ensured.add(username)
