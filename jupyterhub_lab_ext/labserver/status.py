"""What the status item says: a pure function of the services' self views and the clock.

No I/O here. :func:`compose` turns the culler's and the user-limit service's answers about one
user (or the reason there is none) into the document the JupyterLab extension shows: a short
status-bar text, the popup's lines, and whether to raise the "Keep my server" notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

#: the item shows the countdown once the server has been idle this share of its timeout
IDLE_SHARE = 0.5
#: warning window when the culler has none (``warning_period`` 0): this share of the timeout ...
DEFAULT_WARNING_SHARE = 0.25
#: ... but at most this many seconds
DEFAULT_WARNING_MAX = 300.0


@dataclass(frozen=True)
class Fetched:
    """One service's answer: ``view`` (its JSON) or ``problem`` (why there is none).

    ``problem`` is ``"not configured"`` (the spawner gave no URL), ``"not running"`` (no answer)
    or ``"refused"`` (the service answered but not with the view, e.g. 403 or 404).
    """

    view: dict | None = None
    problem: str | None = None


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time from the services (``Z`` or an offset; naive means UTC)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def duration(seconds: float) -> str:
    """``45 s``, ``8 min``, ``2 h 5 min``, ``3 days``: rounded for a person, never negative."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    minutes = (s + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{(hours + 12) // 24} days"


def when_text(when: datetime, now: datetime) -> str:
    """``18:00`` today, ``Fri 18:00`` within a week, else ``2026-12-24 18:00`` (local time)."""
    local, today = when.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if 0 < (local.date() - today.date()).days < 7:
        return local.strftime("%a %H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def warning_seconds(view: dict) -> float:
    """The culler's warning time, or a share of the timeout when the culler warns nobody."""
    configured = view.get("warning_seconds") or 0
    if configured > 0:
        return float(configured)
    timeout = view.get("timeout_seconds") or 0
    return min(DEFAULT_WARNING_MAX, DEFAULT_WARNING_SHARE * timeout)


def _server(view: dict, server_name: str) -> dict | None:
    return (view.get("servers") or {}).get(server_name)


def exemption_text(exemption: dict, now: datetime) -> str:
    """``kept running until Fri 18:00: exam week`` (an admin's exemption from culling)."""
    until = parse_time(exemption.get("until"))
    text = "kept running"
    if until is not None:
        text += f" until {when_text(until, now)}"
    reason = (exemption.get("reason") or "").strip()
    return f"{text}: {reason}" if reason else text


def culler_status(fetched: Fetched, server_name: str, now: datetime) -> dict:
    """The culler's part: ``state`` and, when it knows this server, the countdown."""
    if fetched.view is None:
        state = "off" if fetched.problem == "not configured" else "unavailable"
        text = "" if state == "off" else "culler not running"
        return {"state": state, "text": text, "warn": False}
    view = fetched.view
    out = {"state": "running", "warn": False, "timeout_seconds": view.get("timeout_seconds")}
    exemption = view.get("exemption")
    if exemption:
        out.update(state="exempt", text=exemption_text(exemption, now), exemption=exemption)
        return out
    server = _server(view, server_name)
    cull_at = parse_time((server or {}).get("cull_at"))
    if server is None or cull_at is None:
        out.update(text="not culled" if view.get("timeout_seconds") == 0 else "")
        return out
    left = (cull_at - now).total_seconds()
    timeout = view.get("timeout_seconds") or 0
    idle = server.get("idle_seconds") or 0
    idle += max(0.0, (now - (parse_time(view.get("now")) or now)).total_seconds())
    warn_window = warning_seconds(view)
    out.update(
        cull_at=cull_at.isoformat(),
        seconds_left=round(max(0.0, left), 1),
        left_text=duration(left),
        idle_seconds=round(idle, 1),
        warning_seconds=warn_window,
        warn=left <= warn_window,
    )
    if left <= warn_window or (timeout and idle >= IDLE_SHARE * timeout):
        out.update(state="idle", text=f"idle - stops in {duration(left)}")
    else:
        out.update(state="active", text="")
    out["detail"] = (
        f"Stopped after {duration(timeout)} without activity; "
        f"idle for {duration(idle)}, stops at {when_text(cull_at, now)} unless you work in it."
    )
    return out


def _usage_phrase(limit: dict) -> str:
    what = limit.get("name", "")
    used, cap = limit.get("used", 0), limit.get("limit", 0)
    if what.startswith("group_quotas["):
        group = what.split("[", 1)[1].rstrip("]")
        return f"group {group}: {used}/{cap} servers"
    if what == "max_users":
        return f"{used}/{cap} users"
    return f"{used}/{cap} servers"


def limits_status(fetched: Fetched) -> dict:
    """The user-limit service's part: the limit that applies, its usage, and the queue fact."""
    if fetched.view is None:
        state = "off" if fetched.problem == "not configured" else "unavailable"
        return {"state": state, "text": ""}
    view = fetched.view
    limits = [lim for lim in view.get("usage") or [] if isinstance(lim, dict)]
    full = [lim for lim in limits if lim.get("limit") and lim.get("used", 0) >= lim["limit"]]
    parts = []
    if view.get("exempt"):
        parts.append("no limit applies to you")
    elif full:
        parts.append("hub full: " + ", ".join(_usage_phrase(lim) for lim in full))
    elif limits:
        parts.append("hub: " + ", ".join(_usage_phrase(lim) for lim in limits))
    queued = view.get("from_queue")
    if isinstance(queued, dict):
        parts.append(
            f"you started from the queue after {duration(queued.get('waited_seconds', 0))}"
        )
    return {
        "state": "queued" if isinstance(queued, dict) else "ok",
        "text": "; ".join(parts),
        "from_queue": queued if isinstance(queued, dict) else None,
        "limits": limits,
    }


def compose(
    env: str | None,
    culler: Fetched,
    limits: Fetched,
    *,
    server_name: str = "",
    now: datetime,
) -> dict:
    """The document ``GET {base_url}jupyterhub-lab-ext/status`` answers."""
    c = culler_status(culler, server_name, now)
    u = limits_status(limits)
    item = " · ".join(t for t in (env, c["text"] if c["state"] == "idle" else "") if t)
    details = [f"Environment: {env}" if env else "Environment: not chosen by the spawner"]
    if c.get("text") and c["state"] != "idle":
        details.append(f"Idle culler: {c['text']}")
    if c.get("detail"):
        details.append(c["detail"])
    if u["text"]:
        details.append(u["text"][0].upper() + u["text"][1:])
    return {
        "env": env,
        "item": item,
        "details": details,
        "culler": c,
        "limits": u,
        "warn": bool(c.get("warn")),
        "now": now.isoformat(),
    }
