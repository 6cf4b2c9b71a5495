"""Every running server with its idle time and cull time (``GET api/servers``, the dashboard).

The same decision a pass would make right now (:func:`.policy.decide_server` with the culler's
warnings and exemptions), for all users with an active server, read from one ``GET /users``
listing. The listing is shared for :data:`MAX_AGE` seconds between callers, so several open
dashboards cost the hub one listing per few seconds, not one each.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.cullpass import timeout_with
from jupyterhub_lab_ext.services.culler.groups import GroupLookup

#: seconds a listing of the hub's servers is reused
MAX_AGE = 4.0


def server_row(
    name: str, sname: str, server: dict, timeout: P.Timeout, dec: P.Decision, now: datetime, warned
) -> dict:
    """One server as the API shows it (pure)."""
    return {
        "user": name,
        "server": sname,
        "ready": bool(server.get("ready")),
        "pending": server.get("pending"),
        "started": server.get("started"),
        "last_activity": server.get("last_activity"),
        "idle_seconds": None if dec.inactive is None else round(dec.inactive, 3),
        "timeout_seconds": timeout.seconds,
        "timeout_source": timeout.source,
        "exempt_until": timeout.exempt_until.isoformat() if timeout.exempt_until else None,
        "cull_at": dec.cull_at.isoformat() if dec.cull_at else None,
        "seconds_left": max(0.0, round((dec.cull_at - now).total_seconds(), 3))
        if dec.cull_at
        else None,
        "warned_at": warned.isoformat() if warned else None,
        "next_action": dec.action,
        "reason": dec.reason,
    }


class ServerOverview:
    """The running servers as the culler sees them; ``culler`` is the pass engine.

    Only the hub's listing is shared between callers; the decisions are made for each request
    with the exemptions and warnings of that moment, so a change shows at once.
    """

    def __init__(self, culler, *, max_age: float = MAX_AGE):
        self.culler = culler
        self.max_age = max_age
        self._cached: tuple[float, list[dict]] | None = None
        self._inflight: asyncio.Future | None = None

    async def users(self) -> list[dict]:
        """Users with an active server (with their groups), at most ``max_age`` seconds old."""
        if self._cached and time.monotonic() - self._cached[0] < self.max_age:
            return self._cached[1]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._list())
            self._inflight.add_done_callback(lambda _: setattr(self, "_inflight", None))
        users = await asyncio.shield(self._inflight)
        self._cached = (time.monotonic(), users)
        return users

    async def _list(self) -> list[dict]:
        c = self.culler
        users = [u async for u in c.hub.iter_users(state="active", page_size=c.page_size)]
        lookup = GroupLookup(c.hub, c.uses_groups)
        return [{**u, "groups": await lookup.of(u)} for u in users]

    async def get(self) -> dict:
        """``{"now": ..., "servers": [...]}``, soonest cull first."""
        c = self.culler
        users = await self.users()
        now = c.clock()
        exemptions = await c.active_exemptions(now)
        rows = []
        for user in users:
            name = user["name"]
            groups = list(user.get("groups") or []) if c.uses_groups else []
            timeout = timeout_with(c.policy, name, groups, exemptions, now)
            for sname, server in sorted((user.get("servers") or {}).items()):
                key = (name, sname)
                dec = P.decide_server(
                    c.policy,
                    name,
                    sname,
                    server,
                    timeout,
                    now,
                    warned_at=c.memory.warned.get(key),
                    pending_since=c.memory.pending_seen.get(key),
                    busy_since=c.memory.busy_since.get(key),
                )
                rows.append(
                    server_row(name, sname, server, timeout, dec, now, c.memory.warned.get(key))
                )
        rows.sort(key=lambda r: (r["cull_at"] is None, r["cull_at"] or "", r["user"], r["server"]))
        return {"now": now.isoformat(), "servers": rows}
