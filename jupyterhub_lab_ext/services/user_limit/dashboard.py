"""The user-limit service's admin page and its usage-history endpoint.

- ``GET dashboard``: the page (read access; changing a cap needs the admin scope, checked again
  by ``PUT api/limits``);
- ``GET api/history``: active servers, held places, queue length and seats over time.

The page also reads ``api/status`` and ``api/queue`` and changes caps with ``PUT api/limits``.
"""

from __future__ import annotations

from tornado import web

from jupyterhub_lab_ext.services.common.pages import STATIC_ROUTE, PageHandler, StaticHandler
from jupyterhub_lab_ext.services.user_limit.handlers import LimitHandler
from jupyterhub_lab_ext.services.user_limit.history import downsample


def usage_counts(ledger) -> dict[str, int]:
    """What a history sample records, read from the service's book."""
    return {
        "active": ledger.usage().total,
        "reserved": sum(1 for a in ledger.admissions.values() if a.state == "reserved"),
        "queued": len(ledger.queue),
        "seats": len(ledger.seats),
    }


class DashboardHandler(PageHandler, LimitHandler):
    template = "user-limit-dashboard.html"
    script = "user-limit-dashboard.js"
    title = "User limits"


def _number(handler: web.RequestHandler, name: str, default: float, low: float, high: float):
    raw = handler.get_query_argument(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN fails too
        raise web.HTTPError(400, f"{name} must be a number from {low:g} to {high:g}")
    return value


class HistoryHandler(LimitHandler):
    """``GET api/history?hours=24&step=300``: the highest values per ``step`` seconds."""

    async def get(self):
        self.require_read()
        app = self.app
        sampler = app.history
        span = sampler.retention / 3600
        hours = _number(self, "hours", min(24.0, span), 1 / 60, span)
        step = _number(self, "step", max(300.0, sampler.interval), sampler.interval, 86400)
        now = sampler.clock()
        # whole steps, so that the buckets stay put between two polls
        end = (now // step + 1) * step
        start = end - max(step, (hours * 3600 // step) * step)
        rows = await sampler.since(start)
        self.write_json(
            {
                "now": now,
                "start": start,
                "end": end,
                "step": step,
                "interval": sampler.interval,
                "cap": app.ledger.limits.max_active_servers,
                "points": [p.as_dict() for p in downsample(rows, start, end, step)],
            }
        )


def dashboard_handlers() -> list[tuple]:
    """Routes (relative to the service prefix) of the page and its endpoints."""
    return [
        ("dashboard", DashboardHandler),
        (STATIC_ROUTE, StaticHandler),
        ("api/history", HistoryHandler),
    ]
