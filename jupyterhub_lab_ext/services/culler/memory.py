"""What the culler remembers from one pass to the next.

Warnings are also kept in the store (so a restart neither warns twice nor postpones a cull
again); the rest lives only in memory: when a pending stop was first seen, when a server was
first found idle with a busy kernel, and the user's activity before our last stop of their server.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from jupyterhub_lab_ext.services.culler.policy import parse_date

#: a user's last_activity this close after our stop of their server is the stop itself
STOP_ACTIVITY_SLACK = timedelta(seconds=30)

ServerKey = tuple[str, str]  # (user, server name)


class CullerMemory:
    """Per-server and per-user facts carried between passes; changed only through its methods."""

    def __init__(self, warned: dict[ServerKey, datetime] | None = None):
        #: server -> when it was warned
        self.warned: dict[ServerKey, datetime] = dict(warned or {})
        #: server -> when its current pending stop was first seen
        self.pending_seen: dict[ServerKey, datetime] = {}
        #: server -> idle-time origin when it was first found idle with a busy kernel
        self.busy_since: dict[ServerKey, datetime] = {}
        #: user -> (when we stopped their last server, their last_activity before that)
        self.culled_activity: dict[str, tuple[datetime, str | None]] = {}

    def load_warnings(self, warned: dict[ServerKey, datetime]) -> None:
        self.warned = dict(warned)

    # -- servers ---------------------------------------------------------------------------
    def saw_server(self, key: ServerKey, server: dict, now: datetime) -> None:
        """Note a server of the listing: a pending stop's first sighting, or no pending stop."""
        if server.get("pending") == "stop":
            self.pending_seen.setdefault(key, now)
        else:
            self.pending_seen.pop(key, None)

    def stopping(self, key: ServerKey, now: datetime) -> None:
        """Our DELETE answered 202: the stop is pending from now."""
        self.pending_seen.setdefault(key, now)

    def active_since_warning(self, key: ServerKey, last_activity: datetime | None) -> bool:
        """True (and the warning forgotten) if the server was active after its warning."""
        warned_at = self.warned.get(key)
        if warned_at is not None and last_activity is not None and last_activity > warned_at:
            del self.warned[key]
            return True
        return False

    def warn(self, key: ServerKey, now: datetime) -> None:
        self.warned[key] = now

    def forget_warning(self, key: ServerKey) -> bool:
        """Drop a server's warning; True if it had one."""
        return self.warned.pop(key, None) is not None

    def kernels_checked(self, key: ServerKey, busy: bool, origin: datetime) -> None:
        """Remember the idle-time origin of a server found busy; forget it when it is not."""
        if busy:
            self.busy_since.setdefault(key, origin)
        else:
            self.busy_since.pop(key, None)

    def forget_gone(self, seen: Iterable[ServerKey]) -> set[ServerKey]:
        """Forget servers not in ``seen`` (a complete listing); return the warnings dropped."""
        seen = set(seen)
        for key in [k for k in self.pending_seen if k not in seen]:
            del self.pending_seen[key]
        for key in [k for k in self.busy_since if k not in seen]:
            del self.busy_since[key]
        dropped = {k for k in self.warned if k not in seen}
        for key in dropped:
            del self.warned[key]
        return dropped

    # -- users -----------------------------------------------------------------------------
    def stopped_servers_of(self, user: str, when: datetime, last_activity: str | None) -> None:
        """We stopped a server of ``user`` at ``when``; their activity before was ``last_activity``."""
        self.culled_activity[user] = (when, last_activity)

    def forget_user(self, user: str) -> None:
        self.culled_activity.pop(user, None)

    def as_before_our_stop(self, user: dict) -> dict:
        """The user model aged from before our stop if its last activity is that stop.

        JupyterHub counts a stop as the user's activity; that is not the user's doing.
        """
        seen = self.culled_activity.get(user.get("name", ""))
        if seen is None:
            return user
        stopped_at, before = seen
        last = parse_date(user.get("last_activity"))
        if last is None or last <= stopped_at + STOP_ACTIVITY_SLACK:
            return {**user, "last_activity": before}
        return user
