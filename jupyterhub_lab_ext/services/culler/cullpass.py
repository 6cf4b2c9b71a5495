"""One culling pass: list users, decide with :mod:`.policy`, act through :class:`~.actions.Actions`.

The stages are methods of :class:`CullingPass`: :meth:`~CullingPass.list_users` pages through
``GET /users`` and hands each user to a bounded pool of tasks; :meth:`~CullingPass.decide_server`
asks the policy (and, for kernel-aware idleness, the server's kernels);
:meth:`~CullingPass.act_on_server` and :meth:`~CullingPass.delete_if_idle` act; what the pass
learnt for the next one is in ``memory``, what it saw and did in ``report``, and the warnings to
persist in ``new_warnings`` and ``cleared``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.actions import Actions
from jupyterhub_lab_ext.services.culler.groups import GroupLookup
from jupyterhub_lab_ext.services.culler.memory import CullerMemory, ServerKey
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.store import Exemption

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".engine")


def timeout_with(
    policy: P.Policy,
    name: str,
    groups: list[str],
    exemptions: dict[str, Exemption],
    now: datetime,
) -> P.Timeout:
    """The timeout of user ``name`` given the exemptions set over REST."""
    ex = exemptions.get(name)
    return P.effective_timeout(
        policy,
        name,
        groups,
        now,
        exemption_until=ex.until if ex else None,
        exempt_forever=bool(ex and ex.until is None),
    )


class TaskPool:
    """Runs coroutines as tasks, at most ``size`` at once: :meth:`submit` waits for a place."""

    def __init__(self, size: int):
        self._places = asyncio.Semaphore(size)
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, coro: Coroutine) -> None:
        await self._places.acquire()
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._places.release()

    async def drain(self) -> None:
        """Wait for every submitted task (their errors are theirs to report)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class CullingPass:
    """A single pass over the hub's users; make a new one per pass."""

    def __init__(
        self,
        hub: HubAPI,
        policy: P.Policy,
        memory: CullerMemory,
        actions: Actions,
        report: PassReport,
        *,
        now: datetime,
        clock: Callable[[], datetime],
        dry_run: bool,
        exemptions: dict[str, Exemption],
        groups: GroupLookup,
        tasks: int,
        page_size: int = 0,
        metrics: CullerMetrics | None = None,
    ):
        self.hub = hub
        self.policy = policy
        self.memory = memory
        self.actions = actions
        self.report = report
        self.now = now
        self.clock = clock
        self.dry_run = dry_run
        self.exemptions = exemptions
        self.groups = groups
        self.pool = TaskPool(tasks)
        self.page_size = page_size
        self.metrics = metrics
        self.alive: set[str] = set()  # users with a server that stays (or may stay)
        self.handled: set[str] = set()  # users already decided on in this pass
        self.seen_users: set[str] = set()
        self.seen_servers: set[ServerKey] = set()
        self.new_warnings: dict[ServerKey, datetime] = {}
        self.cleared: set[ServerKey] = set()  # warnings to drop from the store

    async def run(self) -> None:
        state = "active" if self.policy.pending_timeout else "ready"
        await self.list_users(state, self._user_with_servers, "")
        if self.policy.cull_users and self.report.complete:
            await self.list_users("inactive", self._user_without_servers, "inactive users: ")
        if self.report.complete:  # forget servers that are gone
            self.cleared |= self.memory.forget_gone(self.seen_servers)

    # -- list ------------------------------------------------------------------------------
    async def list_users(
        self, state: str, each: Callable[[dict], Coroutine | None], what: str
    ) -> None:
        """Page through ``GET /users?state=``; ``each(user)`` gives the work for a user (a
        coroutine for the pool, or None). A failed listing makes the pass incomplete."""
        try:
            async for user in self.hub.iter_users(
                state=state, page_size=self.page_size, removal_safe=True
            ):
                work = each(user)
                if work is not None:
                    await self.pool.submit(work)
        except HubAPIError as e:
            self.report.complete = False
            self.report.error("list", None, None, f"{what}{e}")
            if self.metrics:
                self.metrics.errors.labels("list").inc()
        finally:
            await self.pool.drain()

    def _user_with_servers(self, user: dict) -> Coroutine | None:
        if user.get("name") in self.seen_users:  # listed twice (pages shifted)
            return None
        self.seen_users.add(user.get("name"))
        self.report.users_scanned += 1
        return self.handle_user(user)

    def _user_without_servers(self, user: dict) -> Coroutine:
        self.report.inactive_users_scanned += 1
        return self.handle_inactive(user)

    async def timeout_of(self, user: dict) -> P.Timeout:
        groups = await self.groups.of(user)
        return timeout_with(self.policy, user["name"], groups, self.exemptions, self.now)

    # -- a user with servers ---------------------------------------------------------------
    async def handle_user(self, user: dict) -> None:
        name = user.get("name", "?")
        try:
            timeout = await self.timeout_of(user)
        except Exception as e:
            self.report.error("user", name, None, f"{type(e).__name__}: {e}")
            self.alive.add(name)
            return
        stopped_any = False
        for sname, server in (user.get("servers") or {}).items():
            try:
                stopped_any |= await self.handle_server(name, timeout, sname, server)
            except Exception as e:  # one server's failure never aborts the pass
                log.exception("user=%s server=%r: error while culling", name, sname)
                self.report.error("server", name, sname, f"{type(e).__name__}: {e}")
                self.alive.add(name)
        if not self.policy.cull_users:
            return
        if stopped_any and not self.dry_run:
            # the hub counts a stop as the user's activity: remember what it was before
            self.memory.stopped_servers_of(name, self.clock(), user.get("last_activity"))
        elif not stopped_any:
            self.memory.forget_user(name)
        if stopped_any and name not in self.alive:
            # every server is gone (or would be): decide on the user now, like
            # jupyterhub-idle-culler, from the model read before the stops
            self.handled.add(name)
            await self.delete_if_idle({**user, "servers": {}}, timeout)

    async def handle_server(self, name: str, timeout: P.Timeout, sname: str, server: dict) -> bool:
        """Decide on one server and act; True if the decision was to cull it."""
        key = (name, sname)
        self.seen_servers.add(key)
        self.report.servers_scanned += 1
        self.memory.saw_server(key, server, self.now)
        if self.memory.active_since_warning(key, P.parse_date(server.get("last_activity"))):
            self.cleared.add(key)
        dec = await self.decide_server(name, timeout, sname, server, self.memory.warned.get(key))
        if dec.reason == P.STUCK_STOP:
            self.report.add("stuck", dec.as_dict())
        return await self.act_on_server(dec, key)

    async def decide_server(
        self, name: str, timeout: P.Timeout, sname: str, server: dict, warned_at
    ) -> P.Decision:
        """The policy's decision; for an idle kernel-aware candidate, after asking its kernels."""
        key = (name, sname)

        def decide(kernels_busy: bool | None = None) -> P.Decision:
            return P.decide_server(
                self.policy,
                name,
                sname,
                server,
                timeout,
                self.now,
                warned_at=warned_at,
                pending_since=self.memory.pending_seen.get(key),
                kernels_busy=kernels_busy,
                busy_since=self.memory.busy_since.get(key),
            )

        dec = decide()
        if dec.check_kernels:
            dec = decide(await self.actions.check_kernels(name, server, self.report))
            last = P.parse_date(server.get("last_activity"))
            self.memory.kernels_checked(key, dec.reason == P.KERNEL_BUSY, last or self.now)
        return dec

    # -- act -------------------------------------------------------------------------------
    async def act_on_server(self, dec: P.Decision, key: ServerKey) -> bool:
        """Warn or stop as decided; True if the decision was to cull."""
        name = key[0]
        if dec.action == P.WARN:
            self.alive.add(name)
            warned = await self.actions.warn(dec, self.report, self.dry_run)
            if warned is not None:
                self.new_warnings[key] = warned
            return False
        if dec.action != P.CULL:
            self.alive.add(name)
            return False
        gone = await self.actions.stop(dec, self.report, self.dry_run)
        if not gone:
            self.alive.add(name)
        elif not self.dry_run and self.memory.forget_warning(key):
            self.cleared.add(key)
        return True

    async def delete_if_idle(self, user: dict, timeout: P.Timeout, alive: bool = False) -> None:
        """Delete a user the policy finds idle; an error is the report's, not the pass's."""
        name = user.get("name", "?")
        try:
            dec = P.decide_user(self.policy, user, timeout, self.now, servers_alive=alive)
            if dec.action == P.CULL:
                await self.actions.delete_user(dec, self.report, self.dry_run)
        except Exception as e:
            log.exception("user=%s: error while deleting user", name)
            self.report.error("user", name, None, f"{type(e).__name__}: {e}")

    # -- a user without servers ------------------------------------------------------------
    async def handle_inactive(self, user: dict) -> None:
        name = user.get("name", "?")
        if name in self.handled:
            return
        try:
            timeout = await self.timeout_of(user)
            user = self.memory.as_before_our_stop(user)
        except Exception as e:
            log.exception("user=%s: error while deleting user", name)
            self.report.error("user", name, None, f"{type(e).__name__}: {e}")
            return
        await self.delete_if_idle(user, timeout, alive=name in self.alive)
