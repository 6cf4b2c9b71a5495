"""What a pass does to one server or user: stop, warn, delete, ask for kernels.

Each action records itself in the pass report and the metrics, and turns Hub API errors into
report entries instead of exceptions. Stops and user deletions go through the throttle, which
decides how many are in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.memory import CullerMemory
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.throttle import Throttle
from jupyterhub_lab_ext.services.culler.webhook import WebhookSender

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".engine")


class Actions:
    """The culler's hands. ``memory`` learns what they did (warnings, pending stops)."""

    def __init__(
        self,
        hub: HubAPI,
        memory: CullerMemory,
        throttle: Throttle,
        *,
        clock: Callable[[], datetime],
        metrics: CullerMetrics | None = None,
        webhook: WebhookSender | None = None,
        remove_named_servers: bool = False,
        server_base_url: str = "",
        service_name: str = "",
    ):
        self.hub = hub
        self.memory = memory
        self.throttle = throttle
        self.clock = clock
        self.metrics = metrics
        self.webhook = webhook
        self.remove_named_servers = remove_named_servers
        self.server_base_url = server_base_url.rstrip("/")
        self.service_name = service_name
        self._no_kernel_url_logged = False

    def _count_error(self, stage: str) -> None:
        if self.metrics:
            self.metrics.errors.labels(stage).inc()

    def server_url(self, server: dict) -> str | None:
        if server.get("full_url"):
            return server["full_url"]
        if self.server_base_url and server.get("url"):
            return self.server_base_url + server["url"]
        return None

    async def check_kernels(self, user: str, server: dict, report: PassReport) -> bool:
        """Whether a kernel of the server is busy (False when it cannot be asked)."""
        url = self.server_url(server)
        if not url:
            if not self._no_kernel_url_logged:
                log.warning(
                    "kernel_aware is on but no server_base_url is set: not checking kernels"
                )
                self._no_kernel_url_logged = True
            return False
        try:
            # no_track_activity: asking must not count as activity on the server itself
            _, kernels = await self.hub.request(
                "GET",
                url.rstrip("/") + "/api/kernels",
                params={"no_track_activity": 1},
                ok=(200,),
                retries=1,
            )
        except HubAPIError as e:
            report.error("kernels", user, server.get("name", ""), str(e))
            self._count_error("kernels")
            return False
        return P.kernels_busy(kernels)

    async def stop(self, dec: P.Decision, report: PassReport, dry_run: bool) -> bool:
        """Stop a server; True if it is gone (204, or would be in a dry run)."""
        entry = dec.as_dict()
        if dry_run:
            report.add("culled", {**entry, "status": None})
            return True
        remove = self.remove_named_servers and bool(dec.server)
        try:
            async with self.throttle.slot():
                status = await self.hub.stop_server(dec.user, dec.server or "", remove=remove)
        except HubAPIError as e:
            if e.status == 404:  # gone already
                return True
            report.error("stop", dec.user, dec.server, str(e))
            self._count_error("stop")
            return False
        if self.metrics:
            self.metrics.culls.labels("server", dec.reason).inc()
        log.info(
            "user=%s server=%r: stopped (%s, idle %s s) -> %s",
            dec.user,
            dec.server,
            dec.reason,
            None if dec.inactive is None else int(dec.inactive),
            status,
        )
        if status == 202:
            self.memory.stopping((dec.user, dec.server or ""), self.clock())
            report.add("stopping", {**entry, "status": status})
            return False
        report.add("culled", {**entry, "status": status})
        return True

    async def warn(self, dec: P.Decision, report: PassReport, dry_run: bool) -> datetime | None:
        """Warn of a coming cull (and POST the webhook); when it was warned (None: dry run)."""
        entry = dec.as_dict()
        if dry_run:
            report.add("warned", {**entry, "webhook_status": None})
            return None
        now = self.clock()
        self.memory.warn((dec.user, dec.server or ""), now)
        if self.metrics:
            self.metrics.warnings.inc()
        status = None
        if self.webhook is not None:
            status = await self._send_webhook(dec, entry, now, report)
        log.info("user=%s server=%r: warned, cull at %s", dec.user, dec.server, entry["cull_at"])
        report.add("warned", {**entry, "webhook_status": status})
        return now

    async def _send_webhook(
        self, dec: P.Decision, entry: dict, now: datetime, report: PassReport
    ) -> int | None:
        payload = {
            "event": "cull-warning",
            "service": self.service_name,
            "user": dec.user,
            "server": dec.server or "",
            "reason": dec.reason,
            "idle_seconds": entry["inactive_seconds"],
            "timeout_seconds": entry["timeout_seconds"],
            "cull_at": entry["cull_at"],
            "seconds_left": max(0, round((dec.cull_at - now).total_seconds()))
            if dec.cull_at
            else None,
        }
        try:
            return await self.webhook.send(payload)
        except Exception as e:
            report.error("webhook", dec.user, dec.server, f"{type(e).__name__}: {e}")
            self._count_error("webhook")
            return None

    async def delete_user(self, dec: P.Decision, report: PassReport, dry_run: bool) -> None:
        entry = dec.as_dict()
        if dry_run:
            report.add("users_deleted", {**entry, "status": None})
            return
        try:
            async with self.throttle.slot():
                status = await self.hub.delete_user(dec.user)
        except HubAPIError as e:
            if e.status == 404:
                return
            report.error("delete_user", dec.user, None, str(e))
            self._count_error("delete_user")
            return
        self.memory.forget_user(dec.user)
        if self.metrics:
            self.metrics.culls.labels("user", dec.reason).inc()
        log.info("user=%s: deleted (%s)", dec.user, dec.reason)
        report.add("users_deleted", {**entry, "status": status})
