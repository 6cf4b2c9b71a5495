"""The culling pass: list users through the Hub API, decide with :mod:`.policy`, act concurrently.

``Culler.run_pass()`` never overlaps itself (one lock), keeps at most ``concurrency`` Hub API
requests in flight (the shared :class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI`), streams the
``state=ready`` listing (``state=active`` when stuck spawns are culled) while stopping servers,
never DELETEs a server that is already stopping, and records one user's failure in the report
without aborting the pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.actions import CullerActions
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.store import CullerStore, Exemption
from jupyterhub_lab_ext.services.culler.webhook import WebhookSender

log = logging.getLogger(__name__)
#: a user's last_activity this close after our stop of their server is the stop itself
STOP_ACTIVITY_SLACK = timedelta(seconds=30)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Culler(CullerActions):
    """Runs passes. All I/O goes through ``hub``, ``store`` and ``webhook``; time through ``clock``."""

    def __init__(
        self,
        hub: HubAPI,
        policy: P.Policy,
        *,
        store: CullerStore | None = None,
        metrics: CullerMetrics | None = None,
        webhook: WebhookSender | None = None,
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
        self.page_size = page_size
        self.remove_named_servers = remove_named_servers
        self.server_base_url = server_base_url.rstrip("/")
        self.report_limit = report_limit
        self.service_name = service_name
        #: called with each finished pass's report (the dashboard's pass history)
        self.on_pass = on_pass
        self.last_report: PassReport | None = None
        self.running: PassReport | None = None
        self.passes = 0
        self.warned: dict[tuple[str, str], datetime] = {}
        self.pending_seen: dict[tuple[str, str], datetime] = {}
        self.busy_since: dict[tuple[str, str], datetime] = {}
        #: user -> (when we stopped their last server, their last_activity before that)
        self.culled_activity: dict[str, tuple[datetime, str | None]] = {}
        self._lock = asyncio.Lock()
        self._exemptions: dict[str, Exemption] = {}
        self._no_kernel_url_logged = False

    async def load(self) -> None:
        """Load persisted warnings and exemptions (call once at start)."""
        if self.store is not None:
            self.warned = await self.store.load_warnings()
            self._exemptions = await self.store.list_exemptions()

    # -- helpers ---------------------------------------------------------------------------
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

    async def group_map(self) -> dict[str, list[str]]:
        """user -> groups, from ``GET /groups`` (only used when user models lack ``groups``)."""
        members: dict[str, list[str]] = {}
        async for group in self.hub.iter_groups():
            for user in group.get("users") or []:
                members.setdefault(user, []).append(group["name"])
        return members

    def timeout_for(self, user: dict, groups, exemptions: dict, now: datetime) -> P.Timeout:
        ex = exemptions.get(user["name"])
        return P.effective_timeout(
            self.policy,
            user["name"],
            groups,
            now,
            exemption_until=ex.until if ex else None,
            exempt_forever=bool(ex and ex.until is None),
        )

    # -- the pass --------------------------------------------------------------------------
    async def run_pass(self, dry_run: bool = False, trigger: str = "timer") -> PassReport:
        """Run one pass (waits for a running one to finish first: passes never overlap)."""
        async with self._lock:
            return await self._run_pass(dry_run, trigger)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

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
        if self.metrics:
            m = self.metrics
            m.passes.labels(result, str(dry_run).lower()).inc()
            m.pass_duration.observe(report.duration)
            m.users_scanned.set(report.users_scanned)
            m.stuck_servers.set(report.counts["stuck"])
            m.last_pass.set(time.time())
        log.info(
            "Pass %d%s: %d users, %d servers, culled %d, stopping %d, warned %d, users deleted %d,"
            " stuck %d, errors %d in %.2fs",
            report.pass_id,
            " (dry run)" if dry_run else "",
            report.users_scanned,
            report.servers_scanned,
            report.counts["culled"],
            report.counts["stopping"],
            report.counts["warned"],
            report.counts["users_deleted"],
            report.counts["stuck"],
            report.counts["errors"],
            report.duration,
        )
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
        groups_task: asyncio.Future | None = None
        alive: set[str] = set()
        handled: set[str] = set()  # users already decided on in this pass
        seen_servers: set[tuple[str, str]] = set()
        new_warnings: dict[tuple[str, str], datetime] = {}
        cleared: set[tuple[str, str]] = set()
        limiter = asyncio.Semaphore(self.concurrency * 2)
        tasks: set[asyncio.Task] = set()

        async def submit(coro):
            await limiter.acquire()
            task = asyncio.ensure_future(coro)
            tasks.add(task)

            def done(t):
                tasks.discard(t)
                limiter.release()

            task.add_done_callback(done)

        async def groups_of(user: dict) -> list[str]:
            nonlocal groups_task
            if not self.uses_groups:
                return []
            if "groups" in user:
                return list(user["groups"] or [])
            if groups_task is None:  # one GET /groups walk per pass, shared by all users
                groups_task = asyncio.ensure_future(self.group_map())
            return (await asyncio.shield(groups_task)).get(user["name"], [])

        async def handle_server(user, timeout, sname, server):
            name = user["name"]
            key = (name, sname)
            seen_servers.add(key)
            report.servers_scanned += 1
            if server.get("pending") == "stop":
                self.pending_seen.setdefault(key, now)
            else:
                self.pending_seen.pop(key, None)
            warned_at = self.warned.get(key)
            last = P.parse_date(server.get("last_activity"))
            if warned_at is not None and last is not None and last > warned_at:
                cleared.add(key)  # activity since the warning
                self.warned.pop(key, None)
                warned_at = None
            dec = P.decide_server(
                self.policy,
                name,
                sname,
                server,
                timeout,
                now,
                warned_at=warned_at,
                pending_since=self.pending_seen.get(key),
                busy_since=self.busy_since.get(key),
            )
            if dec.check_kernels:
                busy = await self.check_kernels(name, server, report)
                dec = P.decide_server(
                    self.policy, name, sname, server, timeout, now, warned_at=warned_at,
                    pending_since=self.pending_seen.get(key), kernels_busy=busy,
                    busy_since=self.busy_since.get(key),
                )  # fmt: skip
                if dec.reason == P.KERNEL_BUSY:
                    self.busy_since.setdefault(key, last or now)
                else:
                    self.busy_since.pop(key, None)
            if dec.reason == P.STUCK_STOP:
                report.add("stuck", dec.as_dict())
            if dec.action == P.WARN:
                alive.add(name)
                await self.warn(dec, report, dry_run, new_warnings)
            elif dec.action == P.CULL:
                gone = await self.stop(dec, report, dry_run)
                if not gone:
                    alive.add(name)
                elif key in self.warned and not dry_run:
                    cleared.add(key)
                    self.warned.pop(key, None)
                return True
            else:
                alive.add(name)
            return False

        async def handle_user(user):
            name = user.get("name", "?")
            try:
                timeout = self.timeout_for(user, await groups_of(user), exemptions, now)
            except Exception as e:
                report.error("user", name, None, f"{type(e).__name__}: {e}")
                alive.add(name)
                return
            servers = user.get("servers") or {}
            stopped_any = False
            for sname, server in servers.items():
                try:
                    stopped_any |= await handle_server(user, timeout, sname, server)
                except Exception as e:  # one server's failure never aborts the pass
                    log.exception("user=%s server=%r: error while culling", name, sname)
                    report.error("server", name, sname, f"{type(e).__name__}: {e}")
                    alive.add(name)
            if not self.policy.cull_users:
                return
            if stopped_any and not dry_run:
                # the hub counts a stop as the user's activity: remember what it was before
                self.culled_activity[name] = (self.clock(), user.get("last_activity"))
            elif not stopped_any:
                self.culled_activity.pop(name, None)
            if stopped_any and name not in alive:
                # every server is gone (or would be): decide on the user now, like
                # jupyterhub-idle-culler, from the model read before the stops
                handled.add(name)
                try:
                    dec = P.decide_user(self.policy, {**user, "servers": {}}, timeout, now)
                    if dec.action == P.CULL:
                        await self.delete_user(dec, report, dry_run)
                except Exception as e:
                    log.exception("user=%s: error while deleting user", name)
                    report.error("user", name, None, f"{type(e).__name__}: {e}")

        async def handle_inactive(user):
            name = user.get("name", "?")
            if name in handled:
                return
            try:
                timeout = self.timeout_for(user, await groups_of(user), exemptions, now)
                seen = self.culled_activity.get(name)
                if seen is not None:
                    stopped_at, before = seen
                    last = P.parse_date(user.get("last_activity"))
                    if last is None or last <= stopped_at + STOP_ACTIVITY_SLACK:
                        # its last activity is our stop: age the user from before it
                        user = {**user, "last_activity": before}
                dec = P.decide_user(self.policy, user, timeout, now, servers_alive=name in alive)
                if dec.action == P.CULL:
                    await self.delete_user(dec, report, dry_run)
            except Exception as e:
                log.exception("user=%s: error while deleting user", name)
                report.error("user", name, None, f"{type(e).__name__}: {e}")

        state = "active" if self.policy.pending_timeout else "ready"
        seen_users: set[str] = set()
        try:
            async for user in self.hub.iter_users(
                state=state, page_size=self.page_size, removal_safe=True
            ):
                if user.get("name") in seen_users:
                    continue
                seen_users.add(user.get("name"))
                report.users_scanned += 1
                await submit(handle_user(user))
        except HubAPIError as e:
            report.complete = False
            report.error("list", None, None, str(e))
            if self.metrics:
                self.metrics.errors.labels("list").inc()
        finally:
            if tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)

        if self.policy.cull_users and report.complete:
            try:
                async for user in self.hub.iter_users(
                    state="inactive", page_size=self.page_size, removal_safe=True
                ):
                    report.inactive_users_scanned += 1
                    await submit(handle_inactive(user))
            except HubAPIError as e:
                report.complete = False
                report.error("list", None, None, f"inactive users: {e}")
                if self.metrics:
                    self.metrics.errors.labels("list").inc()
            finally:
                if tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)

        if report.complete:
            # forget servers that are gone
            for key in [k for k in self.pending_seen if k not in seen_servers]:
                del self.pending_seen[key]
            for key in [k for k in self.busy_since if k not in seen_servers]:
                del self.busy_since[key]
            for key in [k for k in self.warned if k not in seen_servers]:
                cleared.add(key)
                del self.warned[key]
        if self.store is not None and not dry_run:
            await self.store.save_warnings(new_warnings, cleared - set(new_warnings))

    # -- per-user view ---------------------------------------------------------------------
    async def user_view(self, name: str) -> dict | None:
        """Each server's idle time, when it will be culled, and the user's exemption."""
        user = await self.hub.get_user(name)
        if user is None:
            return None
        now = self.clock()
        exemptions = await self.active_exemptions(now)
        groups = []
        if self.uses_groups:
            groups = (
                user.get("groups") if "groups" in user else (await self.group_map()).get(name, [])
            )
        timeout = self.timeout_for(user, groups or [], exemptions, now)
        servers = {}
        for sname, server in (user.get("servers") or {}).items():
            key = (name, sname)
            dec = P.decide_server(
                self.policy, name, sname, server, timeout, now,
                warned_at=self.warned.get(key), pending_since=self.pending_seen.get(key),
            )  # fmt: skip
            servers[sname] = {
                "ready": bool(server.get("ready")),
                "pending": server.get("pending"),
                "last_activity": server.get("last_activity"),
                "started": server.get("started"),
                "idle_seconds": None if dec.inactive is None else round(dec.inactive, 3),
                "cull_at": dec.cull_at.isoformat() if dec.cull_at else None,
                "seconds_left": max(0.0, round((dec.cull_at - now).total_seconds(), 3))
                if dec.cull_at
                else None,
                "warned_at": self.warned[key].isoformat() if key in self.warned else None,
                "next_action": dec.action,
                "reason": dec.reason,
            }
        ex = exemptions.get(name)
        out = {
            "name": name,
            "now": now.isoformat(),
            "timeout_seconds": timeout.seconds,
            "timeout_source": timeout.source,
            "exemption": ex.as_dict() if ex else None,
            "servers": servers,
        }
        if self.policy.cull_users:
            dec = P.decide_user(self.policy, user, timeout, now)
            out["user_cull_at"] = dec.cull_at.isoformat() if dec.cull_at else None
        return out
