"""Background work of the user-limit service: moving the line and reconciling with the hub.

A mixin of :class:`~jupyterhub_lab_ext.services.user_limit.app.UserLimitApp`: when a place frees
up it reserves it for the first waiter that fits and starts that user's server through the Hub
API; it drops reservations whose spawn never came; and it reconciles the book with the hub's
active servers (and users, for seats) at start and periodically.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

from jupyterhub_lab_ext.services.common.hubapi import HubAPIError
from jupyterhub_lab_ext.services.user_limit.ledger import Admission


class BackgroundWork:
    """Needs ``ledger``, ``hub``, ``limit_store``, ``metrics``, ``log``, ``persist`` and the
    ``offer_timeout``/``start_queued_servers``/``reconcile_*``/``housekeeping_interval`` traits."""

    # -- queue progress --------------------------------------------------------------------
    async def fill_free_places(self) -> None:
        """Reserve free places for waiters in order and start their servers."""
        offers, ops = self.ledger.promote(self.offer_timeout)
        if not offers:
            return
        await self.persist(ops)
        for adm in offers:
            self.metrics.offers.inc()
            self.log.info(
                "Place free: offering it to user=%s server=%r (waited in line)",
                adm.user,
                adm.server_name,
            )
            if self.start_queued_servers:
                self._spawn_task(self._start_server(adm))

    def _spawn_task(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _start_server(self, adm: Admission) -> None:
        """Start a queued user's server through the Hub API, retrying until the offer lapses."""
        try:
            await self._start_server_once_placed(adm)
        except Exception:
            self.log.exception("Starting the server of queued user=%s failed", adm.user)

    async def _start_server_once_placed(self, adm: Admission) -> None:
        user = quote(adm.user, safe="")
        path = f"/users/{user}/server"
        if adm.server_name:
            path = f"/users/{user}/servers/{quote(adm.server_name, safe='')}"
        attempt = 0
        while (
            adm.id in self.ledger.admissions and self.ledger.admissions[adm.id].state == "reserved"
        ):
            try:
                status, _ = await self.hub.request(
                    "POST", path, json=adm.options or None, ok=(201, 202), retries=0
                )
            except HubAPIError as e:
                if e.status == 400:
                    # already running or pending: the user's own request is on its way
                    self.log.info("Server of user=%s already starting: %s", adm.user, e.message)
                    return
                if e.status in (403, 404):
                    self.log.error(
                        "Cannot start the server of queued user=%s (%s); giving the place to the next",
                        adm.user,
                        e,
                    )
                    await self.release(adm.id)
                    return
                attempt += 1
                delay = min(10.0, 0.5 * 2**attempt)
                self.log.warning(
                    "Starting the server of user=%s failed (%s); retry in %.1fs", adm.user, e, delay
                )
                await asyncio.sleep(delay)
            else:
                self.metrics.started.inc()
                self.log.info(
                    "Started the server of queued user=%s (hub answered %s)", adm.user, status
                )
                return

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            try:
                gone, ops = self.ledger.expire()
                for a in gone:
                    self.log.warning(
                        "Reserved place of user=%s lapsed (no spawn within %ss)",
                        a.user,
                        self.offer_timeout,
                    )
                if ops:
                    await self.limit_store.write(ops)
                await self.fill_free_places()
            except Exception:
                self.log.exception("Housekeeping failed")

    # -- reconciliation --------------------------------------------------------------------
    async def reconcile(self) -> dict:
        """One pass: match the book to the hub's active servers (and, with seats, its users).

        Servers come from ``GET /users?state=active`` (only users with an active server); the
        full user list is read only when ``max_users`` is set, so a big hub costs little.
        """
        snapshot_started = time.time()
        active = []
        async for u in self.hub.iter_users(state="active"):
            groups = frozenset(u.get("groups") or ())
            for sname, server in (u.get("servers") or {}).items():
                if server.get("ready") or server.get("pending"):
                    spawning = server.get("pending") == "spawn" and not server.get("ready")
                    active.append((u["name"], sname, groups, bool(u.get("admin")), spawning))
        users = None
        if self.ledger.limits.max_users:
            users = [u["name"] async for u in self.hub.iter_users()]
        summary, ops = self.ledger.reconcile(active, users, snapshot_started, self.reconcile_grace)
        await self.limit_store.write(ops)
        self.last_reconcile = time.time()
        self.reconcile_error = ""
        if any(summary.values()):
            self.log.info("Reconciled with the hub: %s", summary)
        await self.fill_free_places()
        return summary

    async def _reconcile_quietly(self) -> None:
        try:
            await self.reconcile()
        except Exception as e:
            self.reconcile_error = str(e)
            self.log.error("Reconciliation with the hub failed: %s", e)

    async def _reconcile_loop(self) -> None:
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.reconcile()
                self.metrics.reconciles.labels("ok").inc()
                delay = self.reconcile_interval
                if not delay:
                    return
            except Exception as e:
                self.metrics.reconciles.labels("error").inc()
                self.reconcile_error = str(e)
                self.log.error("Reconciliation with the hub failed: %s", e)
                delay = min(self.reconcile_interval or 30.0, 5.0)
