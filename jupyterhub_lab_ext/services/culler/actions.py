"""What a pass does to one server or user: stop, warn, delete, ask for kernels.

A mixin of :class:`~.engine.Culler`: each action records itself in the pass report and the
metrics, and turns Hub API errors into report entries instead of exceptions.
"""

from __future__ import annotations

import logging

from jupyterhub_lab_ext.services.common.hubapi import HubAPIError
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.report import PassReport

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".engine")


class CullerActions:
    """Needs ``hub``, ``metrics``, ``webhook``, ``clock``, ``warned``, ``pending_seen``,
    ``culled_activity``, ``server_base_url``, ``service_name`` and ``_no_kernel_url_logged``."""

    def server_url(self, server: dict) -> str | None:
        if server.get("full_url"):
            return server["full_url"]
        if self.server_base_url and server.get("url"):
            return self.server_base_url + server["url"]
        return None

    async def check_kernels(self, user: str, server: dict, report: PassReport) -> bool:
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
            if self.metrics:
                self.metrics.errors.labels("kernels").inc()
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
            status = await self.hub.stop_server(dec.user, dec.server or "", remove=remove)
        except HubAPIError as e:
            if e.status == 404:  # gone already
                return True
            report.error("stop", dec.user, dec.server, str(e))
            if self.metrics:
                self.metrics.errors.labels("stop").inc()
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
            self.pending_seen.setdefault((dec.user, dec.server or ""), self.clock())
            report.add("stopping", {**entry, "status": status})
            return False
        report.add("culled", {**entry, "status": status})
        return True

    async def warn(self, dec: P.Decision, report: PassReport, dry_run: bool, new: dict) -> None:
        entry = dec.as_dict()
        if dry_run:
            report.add("warned", {**entry, "webhook_status": None})
            return
        key = (dec.user, dec.server or "")
        now = self.clock()
        self.warned[key] = now
        new[key] = now
        if self.metrics:
            self.metrics.warnings.inc()
        status = None
        if self.webhook is not None:
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
                status = await self.webhook.send(payload)
            except Exception as e:
                report.error("webhook", dec.user, dec.server, f"{type(e).__name__}: {e}")
                if self.metrics:
                    self.metrics.errors.labels("webhook").inc()
        log.info("user=%s server=%r: warned, cull at %s", dec.user, dec.server, entry["cull_at"])
        report.add("warned", {**entry, "webhook_status": status})

    async def delete_user(self, dec: P.Decision, report: PassReport, dry_run: bool) -> None:
        entry = dec.as_dict()
        if dry_run:
            report.add("users_deleted", {**entry, "status": None})
            return
        try:
            status = await self.hub.delete_user(dec.user)
        except HubAPIError as e:
            if e.status == 404:
                return
            report.error("delete_user", dec.user, None, str(e))
            if self.metrics:
                self.metrics.errors.labels("delete_user").inc()
            return
        self.culled_activity.pop(dec.user, None)
        if self.metrics:
            self.metrics.culls.labels("user", dec.reason).inc()
        log.info("user=%s: deleted (%s)", dec.user, dec.reason)
        report.add("users_deleted", {**entry, "status": status})
