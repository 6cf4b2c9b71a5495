"""The idle culler's decisions: pure functions over hub models, a policy and ``now``.

Nothing here does I/O or reads a clock; the app passes ``now`` in (tests inject it).

Which timeout applies to a user (first match wins):

1. an exemption set over REST that has not expired -> never culled;
2. ``exempt_users`` / ``user_timeouts[name]`` (0 = exempt);
3. the user's hub groups: ``exempt_groups``, else the *longest* of ``group_timeouts`` that match
   (0 = exempt), so "teachers: 8 h, students: 1 h" gives a teacher who is also a student 8 h;
4. ``timeout``.

A server is culled when it is ready and idle for at least that timeout (``last_activity``,
falling back to ``started``), or older than ``max_age``; a spawn pending for longer than
``pending_timeout`` is stopped too. With ``warning_period`` a server is first *warned*, and
culled no earlier than ``warning_period`` after the warning. With kernel-aware idleness, a busy
kernel keeps an idle server until it has been idle for ``kernel_busy_ceiling`` (0: no ceiling).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# actions
CULL = "cull"
WARN = "warn"
KEEP = "keep"
SKIP = "skip"

# reasons
IDLE = "idle"
MAX_AGE = "max-age"
STUCK_SPAWN = "stuck-spawn"
STUCK_STOP = "stuck-stop"
STOPPING = "stopping"
PENDING = "pending"
NOT_READY = "not-ready"
ACTIVE = "active"
EXEMPT = "exempt"
KERNEL_BUSY = "kernel-busy"
WARNED = "warned"
DISABLED = "disabled"
ADMIN = "admin"
HAS_SERVERS = "has-servers"


def parse_date(value) -> datetime | None:
    """Hub ISO 8601 timestamp (``...Z``) -> aware UTC datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class Policy:
    """Culling rules. Durations are seconds."""

    timeout: float = 600
    max_age: float = 0
    cull_default_servers: bool = True
    cull_named_servers: bool = True
    cull_users: bool = False
    user_delete_timeout: float | None = None  # None: same as the server timeout
    cull_admin_users: bool = True
    pending_timeout: float = 0
    group_timeouts: Mapping[str, float] = field(default_factory=dict)
    user_timeouts: Mapping[str, float] = field(default_factory=dict)
    exempt_groups: frozenset[str] = frozenset()
    exempt_users: frozenset[str] = frozenset()
    kernel_aware: bool = False
    kernel_busy_ceiling: float = 0
    warning_period: float = 0


@dataclass(frozen=True)
class Timeout:
    """The idle timeout that applies to a user; ``seconds`` None means exempt."""

    seconds: float | None
    source: str  # "exemption", "user", "group:<name>", "default"
    exempt_until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    user: str
    server: str | None  # None: the user itself
    action: str
    reason: str
    inactive: float | None = None
    timeout: Timeout | None = None
    cull_at: datetime | None = None
    check_kernels: bool = False

    def as_dict(self) -> dict:
        return {
            "user": self.user,
            "server": self.server,
            "action": self.action,
            "reason": self.reason,
            "inactive_seconds": None if self.inactive is None else round(self.inactive, 3),
            "timeout_seconds": None if self.timeout is None else self.timeout.seconds,
            "timeout_source": None if self.timeout is None else self.timeout.source,
            "cull_at": None if self.cull_at is None else self.cull_at.isoformat(),
        }


def effective_timeout(
    policy: Policy,
    user: str,
    groups: Iterable[str],
    now: datetime,
    exemption_until: datetime | None = None,
    exempt_forever: bool = False,
) -> Timeout:
    """The timeout that applies to ``user`` (see the module docstring for the order)."""
    if exempt_forever:
        return Timeout(None, "exemption")
    if exemption_until is not None and exemption_until > now:
        return Timeout(None, "exemption", exemption_until)
    if user in policy.exempt_users:
        return Timeout(None, "user")
    if user in policy.user_timeouts:
        seconds = policy.user_timeouts[user]
        return Timeout(seconds if seconds > 0 else None, "user")
    groups = sorted(set(groups))
    for g in groups:
        if g in policy.exempt_groups:
            return Timeout(None, f"group:{g}")
    best: tuple[float, str] | None = None
    for g in groups:
        if g in policy.group_timeouts:
            seconds = policy.group_timeouts[g]
            if seconds <= 0:
                return Timeout(None, f"group:{g}")
            if best is None or seconds > best[0]:
                best = (seconds, g)
    if best is not None:
        return Timeout(best[0], f"group:{best[1]}")
    return Timeout(policy.timeout, "default")


def decide_server(
    policy: Policy,
    user: str,
    server_name: str,
    server: Mapping,
    timeout: Timeout,
    now: datetime,
    *,
    warned_at: datetime | None = None,
    pending_since: datetime | None = None,
    kernels_busy: bool | None = None,
    busy_since: datetime | None = None,
) -> Decision:
    """What to do with one server model (``GET /users`` ``servers[name]``).

    ``warned_at``: when this server was last warned (None: never). ``pending_since``: when the
    culler first saw the current pending stop. ``kernels_busy``: result of a kernel check (None:
    not checked; a CULL decision with ``check_kernels`` asks the caller to check and call again).
    ``busy_since``: idle time origin when the culler first found this server busy.
    """

    def d(action, reason, inactive=None, cull_at=None, check_kernels=False):
        return Decision(
            user, server_name, action, reason, inactive, timeout, cull_at, check_kernels
        )

    enabled = policy.cull_named_servers if server_name else policy.cull_default_servers
    started = parse_date(server.get("started"))
    if server.get("pending"):
        pending = server["pending"]
        return _decide_pending(policy, d, pending, started, enabled, timeout, now, pending_since)
    if not server.get("ready"):
        return d(SKIP, NOT_READY)
    if not enabled:
        return d(KEEP, DISABLED)
    last = parse_date(server.get("last_activity")) or started
    inactive = (now - last).total_seconds() if last else None
    if timeout.seconds is None:
        return d(KEEP, EXEMPT, inactive)
    if policy.max_age and started and (now - started).total_seconds() >= policy.max_age:
        return d(CULL, MAX_AGE, inactive, now)
    if inactive is None:
        return d(KEEP, ACTIVE)
    cull_at = last + timedelta(seconds=timeout.seconds)
    if policy.warning_period > 0:
        period = timedelta(seconds=policy.warning_period)
        if warned_at is not None and last is not None and warned_at < last:
            warned_at = None  # activity since the warning: it no longer applies
        if warned_at is not None:
            cull_at = max(cull_at, warned_at + period)
        elif now >= cull_at - period:
            # warn now; cull no earlier than a full warning period from now
            return d(WARN, IDLE, inactive, max(cull_at, now + period))
    if now < cull_at:
        return d(KEEP, WARNED if warned_at is not None else ACTIVE, inactive, cull_at)
    if policy.kernel_aware:
        return _decide_busy(policy, d, last, inactive, cull_at, now, kernels_busy, busy_since)
    return d(CULL, IDLE, inactive, cull_at)


def _decide_pending(policy, d, pending, started, enabled, timeout, now, pending_since) -> Decision:
    """A server with a stop, a spawn (or a rename) in progress."""
    if pending == "stop":
        since = pending_since or now
        age = (now - since).total_seconds()
        if policy.pending_timeout and age >= policy.pending_timeout:
            return d(SKIP, STUCK_STOP, age)
        return d(SKIP, STOPPING, age)
    # a spawn (or rename) in progress: stop it only when stuck for too long
    age = (now - started).total_seconds() if started else None
    if (
        pending == "spawn"
        and enabled
        and policy.pending_timeout
        and age is not None
        and age >= policy.pending_timeout
        and timeout.seconds is not None
    ):
        return d(CULL, STUCK_SPAWN, age)
    return d(SKIP, PENDING, age)


def _decide_busy(policy, d, last, inactive, cull_at, now, kernels_busy, busy_since) -> Decision:
    """An idle server under kernel-aware idleness: ask for its kernels, keep it while busy.

    The ceiling counts from when the server first looked idle-but-busy: the kernel check
    itself goes through the proxy and may refresh last_activity.
    """
    ceiling = policy.kernel_busy_ceiling
    origin = min(last, busy_since) if busy_since else last
    over = bool(ceiling) and (now - origin).total_seconds() >= ceiling
    if not over and kernels_busy is None:
        return d(CULL, IDLE, inactive, cull_at, check_kernels=True)
    if not over and kernels_busy:
        later = origin + timedelta(seconds=ceiling) if ceiling else None
        return d(KEEP, KERNEL_BUSY, inactive, later)
    return d(CULL, IDLE, inactive, cull_at)


def decide_user(
    policy: Policy,
    user: Mapping,
    timeout: Timeout,
    now: datetime,
    *,
    servers_alive: bool = False,
) -> Decision:
    """Whether to delete a hub user (only with ``cull_users``), from its ``GET /users`` model."""
    name = user["name"]

    def d(action, reason, inactive=None, cull_at=None):
        return Decision(name, None, action, reason, inactive, timeout, cull_at)

    if not policy.cull_users:
        return d(KEEP, DISABLED)
    if user.get("admin") and not policy.cull_admin_users:
        return d(KEEP, ADMIN)
    active = [s for s in (user.get("servers") or {}).values() if not s.get("stopped")]
    if servers_alive or active:
        return d(KEEP, HAS_SERVERS)
    limit = (
        policy.user_delete_timeout if policy.user_delete_timeout is not None else timeout.seconds
    )
    if timeout.seconds is None:
        return d(KEEP, EXEMPT)
    created = parse_date(user.get("created"))
    last = parse_date(user.get("last_activity")) or created
    inactive = (now - last).total_seconds() if last else None
    if policy.max_age and created and (now - created).total_seconds() >= policy.max_age:
        return d(CULL, MAX_AGE, inactive, now)
    if inactive is None:
        return d(KEEP, ACTIVE)
    cull_at = last + timedelta(seconds=limit)
    if now >= cull_at:
        return d(CULL, IDLE, inactive, cull_at)
    return d(KEEP, ACTIVE, inactive, cull_at)


def kernels_busy(kernels) -> bool:
    """True if any kernel in a ``GET /api/kernels`` answer is busy (or still starting)."""
    if not isinstance(kernels, list):
        return False
    return any(
        isinstance(k, dict) and k.get("execution_state") in ("busy", "starting") for k in kernels
    )
