"""``GET api/users/{name}`` of the user-limit service, readable by the user's own server.

The document of :class:`..handlers.UserHandler`, plus what the JupyterLab status item tells the
person: ``usage`` (each limit that applies to them, with its current use, e.g. 40 of 40 servers)
and ``from_queue`` (their running server got its place from the waiting queue, after how long).
The service's read scope lets a credential read any user; without it, the user's own server
token may read that user only (:mod:`..common.self_access`).
"""

from __future__ import annotations

from jupyterhub_lab_ext.services.common.self_access import may_read_self
from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.services.user_limit.handlers import UserHandler
from jupyterhub_lab_ext.services.user_limit.ledger import Ledger
from jupyterhub_lab_ext.services.user_limit.records import Admission


def usage_of_limits(ledger: Ledger, user: str, groups: frozenset[str]) -> list[dict]:
    """Each limit in force for ``user`` with its use: ``{"name", "limit", "used"}``."""
    limits, used = ledger.limits, ledger.usage()
    out = []
    if limits.max_active_servers:
        out.append(
            {"name": "max_active_servers", "limit": limits.max_active_servers, "used": used.total}
        )
    for g in sorted(groups):
        if g in limits.group_quotas:
            quota = limits.group_quotas[g]
            out.append(
                {"name": f"group_quotas[{g}]", "limit": quota, "used": used.per_group.get(g, 0)}
            )
    if limits.max_users:
        out.append({"name": "max_users", "limit": limits.max_users, "used": len(ledger.seats)})
    if limits.max_servers_per_user:
        out.append(
            {
                "name": "max_servers_per_user",
                "limit": limits.max_servers_per_user,
                "used": used.per_user.get(user, 0),
            }
        )
    return out


def queue_fact(admissions: list[Admission], server_name: str) -> dict | None:
    """``{"waited_seconds", "enqueued", "started"}`` when the server's place came from the queue."""
    for a in admissions:
        if a.server_name == server_name and a.queued_since is not None:
            return {
                "waited_seconds": round(max(0.0, a.created - a.queued_since), 1),
                "enqueued": a.queued_since,
                "started": a.created,
            }
    return None


class SelfUserHandler(UserHandler):
    """Where one user stands, for the service's readers and for the user's own server."""

    _self_access = False
    _extra: dict | None = None

    def authorize(self) -> None:
        name = self.path_args[0] if self.path_args else ""
        if self.request.method == "GET" and may_read_self(self.current_user, name):
            self._self_access = True  # the user's own server: this user only
            return
        super().authorize()

    def require_read(self) -> None:
        if not self._self_access:
            super().require_read()

    async def get(self, name):
        groups, admin = await self.app.user_groups(name)
        ledger = self.app.ledger
        self._extra = {
            "usage": []
            if policy.is_exempt(ledger.limits, admin)
            else usage_of_limits(ledger, name, groups),
            "from_queue": queue_fact(ledger.for_user(name), self.get_argument("server", "")),
        }
        await super().get(name)

    def write_json(self, obj, status: int = 200) -> None:
        if self._extra is not None and status == 200 and isinstance(obj, dict):
            obj = {**obj, **self._extra}
        super().write_json(obj, status)
