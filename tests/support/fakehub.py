"""An in-memory fake of the JupyterHub REST API, for tests and benchmarks.

A tornado app on 127.0.0.1 (free port) implementing the parts of ``/hub/api`` the services use:
``GET /`` (version), ``GET /user`` (token owner), paginated ``GET /users?state=&offset=&limit=``
(with ``Accept: application/jupyterhub-pagination+json``), ``GET/DELETE /users/{name}``,
``DELETE /users/{name}/server`` and ``/servers/{server}`` (configurable latency, 202 slow stops,
injected failures, and a load that slows every answer while stops are in flight), ``POST`` to the
same two paths (a start: recorded in ``starts``, answered 202), ``GET /groups`` and
``/groups/{name}``; plus the single-user ``/user/{name}/api/kernels`` through "the proxy" for
kernel-aware culling.

It records every request (method + endpoint label) and the peak number of DELETEs in flight;
the handlers are in :mod:`fakehub_api`.
The one fake hub of the tests and benchmarks: the culler's and the user-limit service's tests use it.

Example::

    hub = FakeHub(token="secret", stop_latency=0.05)
    hub.add_user("alice", last_activity=now - timedelta(hours=2))
    await hub.start()        # hub.api_url == "http://127.0.0.1:<port>/hub/api"
    ...
    await hub.stop()
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fakehub_api import ROUTES
from ports import free_port
from tornado import web
from tornado.httpserver import HTTPServer


def isoformat(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class FakeServer:
    name: str = ""
    ready: bool = True
    pending: str | None = None
    started: datetime | None = None
    last_activity: datetime | None = None
    kernels: list = field(default_factory=list)  # [{"execution_state": "busy", ...}]

    def model(self, user: str, base: str = "/") -> dict:
        path = f"{base}user/{user}/" + (f"{self.name}/" if self.name else "")
        return {
            "name": self.name,
            "ready": self.ready,
            "pending": self.pending,
            "stopped": False,
            "started": isoformat(self.started),
            "last_activity": isoformat(self.last_activity),
            "url": path,
            "user_options": {},
            "progress_url": f"{base}hub/api/users/{user}/server/progress",
        }


@dataclass
class FakeUser:
    name: str
    admin: bool = False
    groups: list = field(default_factory=list)
    created: datetime | None = None
    last_activity: datetime | None = None
    servers: dict = field(default_factory=dict)

    def model(self, base: str = "/") -> dict:
        return {
            "kind": "user",
            "name": self.name,
            "admin": self.admin,
            "groups": list(self.groups),
            "created": isoformat(self.created),
            "last_activity": isoformat(self.last_activity),
            "server": f"{base}user/{self.name}/" if "" in self.servers else None,
            "pending": (self.servers[""].pending if "" in self.servers else None),
            "servers": {n: s.model(self.name, base) for n, s in self.servers.items()},
        }

    @classmethod
    def from_model(cls, model: dict) -> FakeUser:
        """A user from a REST model (``name``, ``admin``, ``groups``, ``servers`` with ``ready``
        and ``pending``), as a test writes it."""
        servers = {
            name: FakeServer(name=name, ready=bool(s.get("ready")), pending=s.get("pending"))
            for name, s in (model.get("servers") or {}).items()
        }
        return cls(
            model["name"],
            bool(model.get("admin")),
            list(model.get("groups") or ()),
            servers=servers,
        )

    def has_state(self, state: str) -> bool:
        """The hub's ``state`` filter: active = any server (ready or pending), ready, inactive."""
        if state == "ready":
            return any(s.ready for s in self.servers.values())
        if state == "active":
            return bool(self.servers)
        return not self.servers


class FakeHub:
    """The fake hub: mutable state + a tornado server. All knobs are plain attributes."""

    def __init__(
        self,
        token: str = "fake-hub-token",
        *,
        stop_latency: float = 0.0,
        load_delay: float = 0.0,
        default_page: int = 50,
        max_page: int = 200,
        version: str = "6.1.1",
        tokens: dict[str, dict] | None = None,
    ):
        self.token = token
        self.stop_latency = stop_latency
        #: seconds every request waits per stop in flight (a hub whose CPU the stops take)
        self.load_delay = load_delay
        self.default_page = default_page
        self.max_page = max_page
        self.version = version
        self._users: dict[str, FakeUser] = {}
        self.groups: dict[str, list[str]] = {}
        #: token -> user/service model returned by GET /user (scopes included)
        self.tokens: dict[str, dict] = {
            token: {"kind": "service", "name": "fake-service", "scopes": ["admin-ish"]},
            **(tokens or {}),
        }
        #: servers started through the API: ``(user, server name, request body or None)``
        self.starts: list[tuple[str, str, dict | None]] = []
        #: users whose server stops slowly: first DELETE answers 202, server stays pending stop
        self.slow_stop: set[str] = set()
        #: users whose DELETE answers this status (e.g. 500) every time
        self.fail_stop: dict[str, int] = {}
        #: answer the next N requests to /users listings with 503
        self.fail_listing = 0
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.log: list[tuple[str, str]] = []
        self.deletes_in_flight = 0
        self.peak_deletes_in_flight = 0
        self.port = 0
        self._server: HTTPServer | None = None
        #: "now" for the hub's own timestamps (a stop sets the user's last_activity, as the hub does)
        self.clock = lambda: datetime.now(timezone.utc)
        #: monotonic times of the first request received and the last response finished
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.in_flight = 0
        self._version = 0  # bumped on every change of users/servers (listing cache key)
        self._listing_cache: dict = {}

    @property
    def users(self) -> dict[str, FakeUser]:
        """The hub's users by name. Assign a dict of REST user models to replace them all."""
        return self._users

    @users.setter
    def users(self, models: dict[str, dict]) -> None:
        self._users = {name: FakeUser.from_model(m) for name, m in models.items()}
        self.changed()

    def changed(self) -> None:
        """Call after changing ``users``/servers directly (invalidates the listing cache)."""
        self._version += 1
        self._listing_cache.clear()

    def listing(self, state: str | None) -> list:
        key = (state, self._version)
        hit = self._listing_cache.get(key)
        if hit is None:
            hit = [u for u in self.users.values() if not state or u.has_state(state)]
            self._listing_cache[key] = hit
        return hit

    # -- state helpers ---------------------------------------------------------------------
    def add_user(
        self, name, *, admin=False, groups=(), created=None, last_activity=None, servers=None
    ):
        user = FakeUser(name, admin, list(groups), created, last_activity, dict(servers or {}))
        self.users[name] = user
        self.changed()
        for g in groups:
            members = self.groups.setdefault(g, [])
            if name not in members:
                members.append(name)
        return user

    def add_server(self, user, name="", **kw) -> FakeServer:
        server = FakeServer(name=name, **kw)
        self.users[user].servers[name] = server
        self.changed()
        return server

    def count(self, method: str, endpoint: str) -> int:
        return self.requests[(method, endpoint)]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    # -- server ----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        return web.Application(
            [(path, handler, {"hub": self}) for path, handler in ROUTES],
            log_function=lambda handler: None,
        )

    async def start(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._server = HTTPServer(self.make_app())
        self._server.listen(self.port, "127.0.0.1")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
