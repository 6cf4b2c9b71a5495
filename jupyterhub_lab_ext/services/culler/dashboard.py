"""The culler's admin page and the read endpoints it uses besides ``api/status``.

- ``GET dashboard``: the page (read access; its change controls need the admin scope, checked
  again by the REST API on every change);
- ``GET api/servers``: every running server, its idle time and when it will be culled;
- ``GET api/exemptions``: the exemptions in the store;
- ``GET api/history``: culls per hour and the last passes.

Changes go through the existing endpoints (``PUT``/``DELETE api/exemptions/{name}``,
``POST api/passes``).
"""

from __future__ import annotations

from datetime import timedelta

from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler
from jupyterhub_lab_ext.services.common.pages import STATIC_ROUTE, PageHandler, StaticHandler
from jupyterhub_lab_ext.services.culler.history import RETENTION, hourly

MAX_HOURS = int(RETENTION / timedelta(hours=1))


class DashboardHandler(PageHandler):
    template = "culler-dashboard.html"
    script = "culler-dashboard.js"
    title = "Idle culler"


class ServersHandler(ServiceHandler):
    async def get(self):
        self.require_read()
        self.write_json(await self.service.server_overview.get())


class ExemptionsHandler(ServiceHandler):
    async def get(self):
        self.require_read()
        now = self.service.culler.clock()
        stored = await self.service.culler.store.list_exemptions()
        items = [
            {**ex.as_dict(), "active": ex.active(now)}
            for ex in sorted(stored.values(), key=lambda e: e.name)
        ]
        self.write_json({"now": now.isoformat(), "exemptions": items})


def _int_arg(handler: web.RequestHandler, name: str, default: int, low: int, high: int) -> int:
    raw = handler.get_query_argument(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise web.HTTPError(400, f"{name} must be an integer from {low} to {high}")
    return value


class HistoryHandler(ServiceHandler):
    async def get(self):
        self.require_read()
        hours = _int_arg(self, "hours", 24, 1, MAX_HOURS)
        limit = _int_arg(self, "limit", 20, 1, 200)
        history = self.service.pass_history
        now = self.service.culler.clock()
        rows = await history.since(now - timedelta(hours=hours))
        self.write_json(
            {
                "now": now.isoformat(),
                "hourly": [b.as_dict() for b in hourly(rows, now, hours)],
                "passes": await history.recent(limit),
            }
        )


def dashboard_handlers() -> list[tuple]:
    """Routes (relative to the service prefix) of the page and its endpoints."""
    return [
        ("dashboard", DashboardHandler),
        (STATIC_ROUTE, StaticHandler),
        ("api/servers", ServersHandler),
        ("api/exemptions", ExemptionsHandler),
        ("api/history", HistoryHandler),
    ]
