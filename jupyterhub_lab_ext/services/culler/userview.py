"""``GET api/users/{name}``: what the culler will do with a user's servers, and when (pure)."""

from __future__ import annotations

from datetime import datetime

from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.memory import CullerMemory
from jupyterhub_lab_ext.services.culler.store import Exemption


def server_view(
    policy: P.Policy,
    memory: CullerMemory,
    name: str,
    sname: str,
    server: dict,
    timeout: P.Timeout,
    now: datetime,
) -> dict:
    """One server's idle time, ``cull_at``, time left, warning and next action."""
    key = (name, sname)
    warned_at = memory.warned.get(key)
    dec = P.decide_server(
        policy,
        name,
        sname,
        server,
        timeout,
        now,
        warned_at=warned_at,
        pending_since=memory.pending_seen.get(key),
    )
    return {
        "ready": bool(server.get("ready")),
        "pending": server.get("pending"),
        "last_activity": server.get("last_activity"),
        "started": server.get("started"),
        "idle_seconds": None if dec.inactive is None else round(dec.inactive, 3),
        "cull_at": dec.cull_at.isoformat() if dec.cull_at else None,
        "seconds_left": max(0.0, round((dec.cull_at - now).total_seconds(), 3))
        if dec.cull_at
        else None,
        "warned_at": warned_at.isoformat() if warned_at is not None else None,
        "next_action": dec.action,
        "reason": dec.reason,
    }


def user_view(
    policy: P.Policy,
    memory: CullerMemory,
    user: dict,
    timeout: P.Timeout,
    exemption: Exemption | None,
    now: datetime,
) -> dict:
    """The view of a user model (``GET /users/{name}``) under ``timeout``."""
    name = user["name"]
    servers = {
        sname: server_view(policy, memory, name, sname, server, timeout, now)
        for sname, server in (user.get("servers") or {}).items()
    }
    out = {
        "name": name,
        "now": now.isoformat(),
        "timeout_seconds": timeout.seconds,
        "timeout_source": timeout.source,
        "exemption": exemption.as_dict() if exemption else None,
        "servers": servers,
    }
    if policy.cull_users:
        dec = P.decide_user(policy, user, timeout, now)
        out["user_cull_at"] = dec.cull_at.isoformat() if dec.cull_at else None
    return out
