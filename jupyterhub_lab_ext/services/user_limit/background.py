"""Background work of the user-limit service: moving the line and reconciling with the hub.

:class:`Background` is a component the service app owns. When a place frees up it reserves it
for the first waiter that fits and starts that user's server through the Hub API; it drops
reservations whose spawn never came; and it reconciles the book with the hub's active servers
(and users, for seats) at start and periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError
from jupyterhub_lab_ext.services.user_limit.ledger import Ledger
from jupyterhub_lab_ext.services.user_limit.metrics import UserLimitMetrics
from jupyterhub_lab_ext.services.user_limit.records import Admission, Op
from jupyterhub_lab_ext.services.user_limit.store import LimitStore


@dataclass(frozen=True)
class Timing:
    """The service options that pace the background work (see ``UserLimitApp``)."""

    offer_timeout: float = 120.0
    start_queued_servers: bool = True
    reconcile_interval: float = 60.0
    reconcile_grace: float = 10.0
    housekeeping_interval: float = 2.0


class Background:
    """Moves the line and reconciles the book; owns its asyncio tasks.

    :param persist: writes store operations before an answer (raises on a database error).
    :param release: frees a place (used when a queued user's server cannot be started).
    """

    def __init__(
        self,
        ledger: Ledger,
        hub: HubAPI,
        store: LimitStore,
        metrics: UserLimitMetrics,
        timing: Timing,
        *,
        persist: Callable[[list[Op]], Awaitable[None]],
        release: Callable[[str], Awaitable[bool]],
        log: logging.Logger | logging.LoggerAdapter,
    ):
        self.ledger = ledger
        self.hub = hub
        self.store = store
        self.metrics = metrics
        self.timing = timing
        self.persist = persist
        self.release = release
        self.log = log
        self.tasks: list[asyncio.Task] = []
        #: time of the last successful reconciliation, and the error of the last failed one
        self.last_reconcile: float | None = None
        self.reconcile_error = ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.spawn_task(self._reconcile_loop())
        self.spawn_task(self._housekeeping_loop())

    async def stop(self) -> None:
        tasks, self.tasks = list(self.tasks), []
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def spawn_task(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        task.add_done_callback(lambda t: self.tasks.remove(t) if t in self.tasks else None)

    # -- queue progress --------------------------------------------------------------------
    async def fill_free_places(self) -> None:
        """Reserve free places for waiters in order and start their servers."""
        offers, ops = self.ledger.promote(self.timing.offer_timeout)
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
            if self.timing.start_queued_servers:
                self.spawn_task(self._start_server(adm))

    async def _start_server(self, adm: Admission) -> None:
        """Start a queued user's server through the Hub API, retrying until the offer lapses."""
        try:
            await self._start_server_once_placed(adm)
        except Exception:
            self.log.exception("Starting the server of queued user=%s failed", adm.user)

    def _still_reserved(self, adm: Admission) -> bool:
        held = self.ledger.admissions.get(adm.id)
        return held is not None and held.state == "reserved"

    async def _start_server_once_placed(self, adm: Admission) -> None:
        user = quote(adm.user, safe="")
        path = f"/users/{user}/server"
        if adm.server_name:
            path = f"/users/{user}/servers/{quote(adm.server_name, safe='')}"
        attempt = 0
        while self._still_reserved(adm):
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
            await asyncio.sleep(self.timing.housekeeping_interval)
            try:
                gone, ops = self.ledger.expire()
                for a in gone:
                    self.log.warning(
                        "Reserved place of user=%s lapsed (no spawn within %ss)",
                        a.user,
                        self.timing.offer_timeout,
                    )
                if ops:
                    await self.store.write(ops)
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
        summary, ops = self.ledger.reconcile(
            active, users, snapshot_started, self.timing.reconcile_grace
        )
        await self.store.write(ops)
        self.last_reconcile = time.time()
        self.reconcile_error = ""
        if any(summary.values()):
            self.log.info("Reconciled with the hub: %s", summary)
        await self.fill_free_places()
        return summary

    def reconcile_soon(self) -> None:
        """Reconcile now, in the background (e.g. seats just started to matter)."""
        self.spawn_task(self._reconcile_quietly())

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
                delay = self.timing.reconcile_interval
                if not delay:
                    return
            except Exception as e:
                self.metrics.reconciles.labels("error").inc()
                self.reconcile_error = str(e)
                self.log.error("Reconciliation with the hub failed: %s", e)
                delay = min(self.timing.reconcile_interval or 30.0, 5.0)
