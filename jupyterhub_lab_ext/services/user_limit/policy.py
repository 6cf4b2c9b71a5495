"""Pure admission policy of the user-limit service: caps, group quotas, seats and the queue.

Everything here is a function of plain data, with no clock, I/O or global state, so the
decisions are easy to test with tables. The service (``ledger.py``) keeps the data and applies
the decisions atomically.

Vocabulary:

- a **place** is one server that holds capacity: a spawn admitted by the hub-side hook, a place
  reserved for the head of the queue while the service starts that user's server, or a server
  the hub reports as active (found by reconciliation);
- a **waiter** is a queued spawn request, one per user, in first-come order;
- a **seat** is a user who may log in (``max_users``).

Fairness rule: a request is admitted only if it fits under every limit that applies to it *and*
no earlier waiter fits in the capacity that is free right now. A waiter that is blocked by a
limit the request does not touch (another group's quota) does not hold it back, so a full group
never stalls everybody else (first come, first served per bottleneck).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

ADMIT = "admit"
QUEUE = "queue"
REFUSE = "refuse"

# reasons (also metric labels)
OK = "ok"
EXEMPT = "exempt"
ALREADY = "already-admitted"
RESERVED = "reserved"
GLOBAL_CAP = "max-active-servers"
GROUP_QUOTA = "group-quota"
USER_CAP = "max-servers-per-user"
WAITERS_AHEAD = "waiters-ahead"
SEATS = "max-users"


@dataclass(frozen=True)
class Limits:
    """The limits in force. 0 means "no limit"."""

    max_active_servers: int = 0
    max_users: int = 0
    group_quotas: Mapping[str, int] = field(default_factory=dict)
    max_servers_per_user: int = 0
    exempt_admins: bool = True

    def to_dict(self) -> dict:
        return {
            "max_active_servers": self.max_active_servers,
            "max_users": self.max_users,
            "group_quotas": dict(self.group_quotas),
            "max_servers_per_user": self.max_servers_per_user,
            "exempt_admins": self.exempt_admins,
        }


LIMIT_FIELDS = (
    "max_active_servers",
    "max_users",
    "group_quotas",
    "max_servers_per_user",
    "exempt_admins",
)


def validate_limits_patch(patch: object) -> dict:
    """Check a (partial) limits document from ``PUT api/limits``; return it normalised.

    A field set to ``null`` means "back to the configured value". Raises ``ValueError`` with a
    message fit for a 400 answer.
    """
    if not isinstance(patch, dict):
        raise ValueError("body must be a JSON object")
    if not patch:
        raise ValueError(f"body must set at least one of: {', '.join(LIMIT_FIELDS)}")
    unknown = sorted(set(patch) - set(LIMIT_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(map(str, unknown))}")
    out: dict = {}
    for key, value in patch.items():
        if value is None:
            out[key] = None
        elif key == "exempt_admins":
            if not isinstance(value, bool):
                raise ValueError("exempt_admins must be true or false")
            out[key] = value
        elif key == "group_quotas":
            if not isinstance(value, dict):
                raise ValueError("group_quotas must be an object {group: count}")
            quotas = {}
            for group, count in value.items():
                if not group or len(group) > 255:
                    raise ValueError("group names in group_quotas must be 1-255 characters")
                if not _is_count(count):
                    raise ValueError(f"group_quotas[{group!r}] must be an integer >= 0")
                quotas[group] = count
            out[key] = quotas
        else:
            if not _is_count(value):
                raise ValueError(f"{key} must be an integer >= 0")
            out[key] = value
    return out


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**9


def merge_limits(base: Limits, overrides: Mapping[str, object]) -> Limits:
    """``base`` with every non-null override applied."""
    changes = {k: v for k, v in overrides.items() if k in LIMIT_FIELDS and v is not None}
    if "group_quotas" in changes:
        changes["group_quotas"] = dict(changes["group_quotas"])
    return replace(base, **changes)


@dataclass(frozen=True)
class Place:
    """One unit of capacity in use (see the module docs)."""

    user: str
    server_name: str = ""
    groups: frozenset[str] = frozenset()
    admin: bool = False
    reserved: bool = False


@dataclass(frozen=True)
class Request:
    """A spawn request: who, which server, the user's hub groups, whether the user is an admin."""

    user: str
    server_name: str = ""
    groups: frozenset[str] = frozenset()
    admin: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: str  # ADMIT, QUEUE or REFUSE
    reason: str
    #: the limit that decided it, e.g. "max_active_servers=10" or "group_quotas[students]=5"
    limit: str = ""
    #: 1-based place in line when queued
    position: int = 0

    @property
    def admitted(self) -> bool:
        return self.outcome == ADMIT


@dataclass(frozen=True)
class Usage:
    total: int
    per_group: Mapping[str, int]
    per_user: Mapping[str, int]


def usage(places: Iterable[Place]) -> Usage:
    """Servers in use overall, per group and per user (reservations included)."""
    total = 0
    groups: Counter[str] = Counter()
    users: Counter[str] = Counter()
    for p in places:
        total += 1
        users[p.user] += 1
        for g in p.groups:
            groups[g] += 1
    return Usage(total, dict(groups), dict(users))


def is_exempt(limits: Limits, admin: bool) -> bool:
    return bool(admin and limits.exempt_admins)


def blocking_limits(limits: Limits, used: Usage, groups: Iterable[str]) -> list[str]:
    """The capacity limits one more server of a user in ``groups`` would exceed (sorted)."""
    out = []
    if limits.max_active_servers and used.total >= limits.max_active_servers:
        out.append(f"max_active_servers={limits.max_active_servers}")
    for g in sorted(groups):
        quota = limits.group_quotas.get(g)
        if quota is not None and used.per_group.get(g, 0) >= quota:
            out.append(f"group_quotas[{g}]={quota}")
    return out


def _add(used: Usage, user: str, groups: Iterable[str]) -> Usage:
    per_group = dict(used.per_group)
    for g in groups:
        per_group[g] = per_group.get(g, 0) + 1
    per_user = dict(used.per_user)
    per_user[user] = per_user.get(user, 0) + 1
    return Usage(used.total + 1, per_group, per_user)


def decide(
    limits: Limits,
    used: Usage,
    req: Request,
    held: bool,
    reserved: bool,
    queue_length: int,
    position: int,
    ahead: Iterable[Request],
) -> Decision:
    """Decide one spawn request (first come, first served) on facts the service keeps up to
    date incrementally (``ledger.py``).

    ``used``: places in use; ``held``: this server already holds a place; ``reserved``: the
    user holds a reservation; ``position``: the user's place in line (0: none); ``ahead``: the
    waiters before it (only iterated when the request fits).

    - the same server already holds a place, or the user holds a reservation: admit (idempotent);
    - admins are admitted when ``exempt_admins``;
    - a user at ``max_servers_per_user`` is refused (waiting would not help);
    - a request over a capacity limit, or behind an earlier waiter that fits now, is queued at
      the user's existing place in line or at the end.
    """
    if reserved:
        return Decision(ADMIT, RESERVED)
    if held:
        return Decision(ADMIT, ALREADY)
    if is_exempt(limits, req.admin):
        return Decision(ADMIT, EXEMPT)
    if (
        limits.max_servers_per_user
        and used.per_user.get(req.user, 0) >= limits.max_servers_per_user
    ):
        return Decision(REFUSE, USER_CAP, f"max_servers_per_user={limits.max_servers_per_user}")
    blocked = blocking_limits(limits, used, req.groups)
    if blocked:
        return Decision(QUEUE, _reason(blocked[0]), blocked[0], position or queue_length + 1)
    for w in ahead:
        if _fits(limits, used, w):
            return Decision(QUEUE, WAITERS_AHEAD, "", position or queue_length + 1)
    return Decision(ADMIT, OK)


def _reason(limit: str) -> str:
    return GROUP_QUOTA if limit.startswith("group_quotas") else GLOBAL_CAP


def _fits(limits: Limits, used: Usage, w: Request) -> bool:
    if limits.max_servers_per_user and used.per_user.get(w.user, 0) >= limits.max_servers_per_user:
        return False
    return not blocking_limits(limits, used, w.groups)


def promote(limits: Limits, places: Sequence[Place], queue: Sequence[Request]) -> list[Request]:
    """The waiters to offer a place to now, in queue order (each one's reservation counts
    against the limits for the ones after it)."""
    used = usage(places)
    reserved_users = {p.user for p in places if p.reserved}
    out = []
    for w in queue:
        if w.user in reserved_users:
            continue
        if is_exempt(limits, w.admin) or _fits(limits, used, w):
            out.append(w)
            used = _add(used, w.user, w.groups)
    return out


def decide_seat(
    limits: Limits, seats: Iterable[str] | int, user: str, admin: bool, has_seat: bool
) -> Decision:
    """May ``user`` log in? ``seats``: how many seats are taken (or the seat holders)."""
    if has_seat:
        return Decision(ADMIT, ALREADY)
    if is_exempt(limits, admin) or not limits.max_users:
        return Decision(ADMIT, EXEMPT if is_exempt(limits, admin) else OK)
    taken = seats if isinstance(seats, int) else sum(1 for _ in seats)
    if taken >= limits.max_users:
        return Decision(REFUSE, SEATS, f"max_users={limits.max_users}")
    return Decision(ADMIT, OK)


def retry_after(
    position: int, per_position: float, minimum: float = 5, maximum: float = 600
) -> int:
    """Seconds an API client should wait before asking again, growing with the position."""
    return int(max(minimum, min(maximum, position * per_position)))


def describe(decision: Decision) -> str:
    """A sentence for a person about a decision."""
    if decision.outcome == ADMIT:
        return "You may start a server now."
    if decision.outcome == REFUSE:
        if decision.reason == USER_CAP:
            n = decision.limit.split("=", 1)[-1]
            return (
                f"You already run the maximum of {n} server(s) per user. "
                "Stop one of your servers before starting another."
            )
        if decision.reason == SEATS:
            n = decision.limit.split("=", 1)[-1]
            return (
                f"This hub is full: all {n} user seats are taken. "
                "Please ask the hub's administrators for a seat."
            )
        return "Your server cannot be started."
    what = "the hub is full"
    if decision.reason == GROUP_QUOTA:
        group = decision.limit.split("[", 1)[-1].split("]", 1)[0]
        what = f"your group {group} is using all of its servers"
    return (
        f"{what[0].upper()}{what[1:]}: you are number {decision.position} in line. "
        "Your server starts by itself when a place frees up."
    )
