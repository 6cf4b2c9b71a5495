"""The culler: runs passes (:class:`~.cullpass.CullingPass`) one at a time and answers per-user views.

``Culler.run_pass()`` never overlaps itself (one lock), reads the exemptions, runs a
:class:`~.cullpass.CullingPass` with the stops-in-flight limit of the :class:`~.throttle.Throttle`
(fixed ``concurrency``, or adapted to a hub-latency budget), persists the warnings and reports:
the pass report, the metrics and one log line. The shared
:class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI` keeps at most ``concurrency``
requests in flight; the ``state=ready`` listing (``state=active`` when stuck spawns are culled)
is streamed while servers are stopped, a server that is already stopping is never sent a second
DELETE, and one user's failure goes into the report without aborting the pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from jupyterhub_lab_ext.services.common.hubapi import HubAPI
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.actions import Actions
from jupyterhub_lab_ext.services.culler.cullpass import CullingPass, timeout_with
from jupyterhub_lab_ext.services.culler.groups import GroupLookup
from jupyterhub_lab_ext.services.culler.memory import CullerMemory
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.store import CullerStore, Exemption
from jupyterhub_lab_ext.services.culler.throttle import Throttle
from jupyterhub_lab_ext.services.culler.userview import user_view
from jupyterhub_lab_ext.services.culler.webhook import WebhookSender

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Culler:
    """Runs passes. All I/O goes through ``hub``, ``store``, ``webhook`` and the ``throttle``'s
    probe; time through ``clock``. Without a ``throttle``, ``concurrency`` stops are in flight."""

    def __init__(
        self,
        hub: HubAPI,
        policy: P.Policy,
        *,
        store: CullerStore | None = None,
        metrics: CullerMetrics | None = None,
        webhook: WebhookSender | None = None,
        throttle: Throttle | None = None,
        clock: Callable[[], datetime] = utcnow,
        concurrency: int = 10,
        page_size: int = 0,
        remove_named_servers: bool = False,
        server_base_url: str = "",
        report_limit: int = 1000,
        service_name: str = "",
        on_pass: Callable[[PassReport], Awaitable[None]] | None = None,
    ):
        self.hub = hub
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.webhook = webhook
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.throttle = throttle or Throttle(self.concurrency, metrics=metrics)
        self.page_size = page_size
        self.report_limit = report_limit
        self.memory = CullerMemory()
        self.actions = Actions(
            hub,
            self.memory,
            self.throttle,
            clock=clock,
            metrics=metrics,
            webhook=webhook,
            remove_named_servers=remove_named_servers,
            server_base_url=server_base_url,
            service_name=service_name,
        )
        #: called with each finished pass's report (the dashboard's pass history)
        self.on_pass = on_pass
        self.last_report: PassReport | None = None
        self.running: PassReport | None = None
        self.passes = 0
        self._lock = asyncio.Lock()
        self._exemptions: dict[str, Exemption] = {}

    async def load(self) -> None:
        """Load persisted warnings and exemptions (call once at start)."""
        if self.store is not None:
            self.memory.load_warnings(await self.store.load_warnings())
            self._exemptions = await self.store.list_exemptions()

    @property
    def uses_groups(self) -> bool:
        return bool(self.policy.group_timeouts or self.policy.exempt_groups)

    async def active_exemptions(self, now: datetime) -> dict[str, Exemption]:
        if self.store is not None:
            self._exemptions = await self.store.list_exemptions()
        active = {n: e for n, e in self._exemptions.items() if e.active(now)}
        if self.metrics:
            self.metrics.exemptions.set(len(active))
        return active

    # -- the pass --------------------------------------------------------------------------
    async def run_pass(self, dry_run: bool = False, trigger: str = "timer") -> PassReport:
        """Run one pass (waits for a running one to finish first: passes never overlap)."""
        async with self._lock:
            return await self._run_pass(dry_run, trigger)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def wait_idle(self, timeout: float) -> None:
        """Wait until no pass runs (at most ``timeout`` seconds), without starting one."""
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            return
        self._lock.release()

    async def _run_pass(self, dry_run: bool, trigger: str) -> PassReport:
        now = self.clock()
        self.passes += 1
        report = PassReport(self.passes, trigger, dry_run, now, self.report_limit)
        self.running = report
        t0 = time.perf_counter()
        result = "ok"
        try:
            await self._scan(report, now, dry_run)
            if not report.complete or report.counts["errors"]:
                result = "partial"
        except Exception as e:  # store down etc.: nothing was decided without exemptions
            log.exception("Culling pass %d failed", report.pass_id)
            report.complete = False
            report.error("pass", None, None, f"{type(e).__name__}: {e}")
            result = "error"
        finally:
            report.duration = time.perf_counter() - t0
            report.finished = self.clock()
            self.running = None
            self.last_report = report
        self._record(report, result)
        if self.on_pass is not None:
            try:
                await self.on_pass(report)
            except Exception:
                log.exception("Could not record pass %d in the history", report.pass_id)
        return report

    async def _scan(self, report: PassReport, now: datetime, dry_run: bool) -> None:
        exemptions = await self.active_exemptions(now)
        if self.store is not None and not dry_run:
            await self.store.purge_expired(now)
        culling = CullingPass(
            self.hub,
            self.policy,
            self.memory,
            self.actions,
            report,
            now=now,
            clock=self.clock,
            dry_run=dry_run,
            exemptions=exemptions,
            groups=GroupLookup(self.hub, self.uses_groups),
            tasks=self.concurrency * 2,
            page_size=self.page_size,
            metrics=self.metrics,
        )
        await self.throttle.begin(measure=not dry_run)
        try:
            await culling.run()
        finally:
            report.hub_latency = await self.throttle.end()
        if self.store is not None and not dry_run:
            cleared = culling.cleared - set(culling.new_warnings)
            await self.store.save_warnings(culling.new_warnings, cleared)

    # -- report ----------------------------------------------------------------------------
    def _record(self, report: PassReport, result: str) -> None:
        """The pass's metrics and its log line."""
        if self.metrics:
            m = self.metrics
            m.passes.labels(result, str(report.dry_run).lower()).inc()
            m.pass_duration.observe(report.duration)
            m.users_scanned.set(report.users_scanned)
            m.stuck_servers.set(report.counts["stuck"])
            m.last_pass.set(time.time())
        log.info("%s", report.log_line())

    # -- per-user view ---------------------------------------------------------------------
    async def user_view(self, name: str) -> dict | None:
        """Each server's idle time, when it will be culled, and the user's exemption."""
        user = await self.hub.get_user(name)
        if user is None:
            return None
        now = self.clock()
        exemptions = await self.active_exemptions(now)
        groups = await GroupLookup(self.hub, self.uses_groups).of(user)
        timeout = timeout_with(self.policy, name, groups, exemptions, now)
        return user_view(self.policy, self.memory, user, timeout, exemptions.get(name), now)
