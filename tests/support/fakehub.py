"""An in-memory fake of the JupyterHub REST API, for tests and benchmarks.

A tornado app on 127.0.0.1 (free port) implementing the parts of ``/hub/api`` the services use:
``GET /`` (version), ``GET /user`` (token owner), paginated ``GET /users?state=&offset=&limit=``
(with ``Accept: application/jupyterhub-pagination+json``), ``GET/DELETE /users/{name}``,
``DELETE /users/{name}/server`` and ``/servers/{server}`` (configurable latency, 202 slow stops,
injected failures, and a load that slows every answer while stops are in flight), ``GET /groups`` and ``/groups/{name}``; plus the single-user
``/user/{name}/api/kernels`` through "the proxy" for kernel-aware culling.

It records every request (method + endpoint label) and the peak number of DELETEs in flight.

Example::

    hub = FakeHub(token="secret", stop_latency=0.05)
    hub.add_user("alice", last_activity=now - timedelta(hours=2))
    await hub.start()        # hub.api_url == "http://127.0.0.1:<port>/hub/api"
    ...
    await hub.stop()
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode

from tornado import web
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.hubapi import endpoint_label


def isoformat(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    ):
        self.token = token
        self.stop_latency = stop_latency
        #: seconds every request waits per stop in flight (a hub whose CPU the stops take)
        self.load_delay = load_delay
        self.default_page = default_page
        self.max_page = max_page
        self.version = version
        self.users: dict[str, FakeUser] = {}
        self.groups: dict[str, list[str]] = {}
        #: token -> user/service model returned by GET /user (scopes included)
        self.tokens: dict[str, dict] = {
            token: {"kind": "service", "name": "fake-service", "scopes": ["admin-ish"]}
        }
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
        kw = {"hub": self}
        return web.Application(
            [
                (r"/hub/api/?", VersionHandler, kw),
                (r"/hub/api/user", WhoAmIHandler, kw),
                (r"/hub/api/users", UsersHandler, kw),
                (r"/hub/api/users/([^/]+)", UserHandler, kw),
                (r"/hub/api/users/([^/]+)/server", ServerHandler, kw),
                (r"/hub/api/users/([^/]+)/servers/([^/]+)", ServerHandler, kw),
                (r"/hub/api/groups", GroupsHandler, kw),
                (r"/hub/api/groups/([^/]+)", GroupHandler, kw),
                (r"/user/([^/]+)/(?:([^/]+)/)?api/kernels", KernelsHandler, kw),
            ],
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


class _Base(web.RequestHandler):
    public = False

    def initialize(self, hub: FakeHub):
        self.hub = hub

    async def prepare(self):
        now = time.monotonic()
        if self.hub.t_first is None:
            self.hub.t_first = now
        self.hub.in_flight += 1
        self._counted = True
        path = self.request.path
        if path.startswith("/hub/api"):
            path = path[len("/hub/api") :] or "/"
        self.hub.requests[(self.request.method, endpoint_label(path))] += 1
        self.hub.log.append((self.request.method, self.request.uri))
        if self.hub.load_delay and self.hub.deletes_in_flight:
            await asyncio.sleep(self.hub.load_delay * self.hub.deletes_in_flight)
        if self.public:
            return
        auth = self.request.headers.get("Authorization", "")
        token = auth.split(None, 1)[1] if " " in auth else ""
        if token != self.hub.token:
            raise web.HTTPError(403)

    def on_finish(self):
        if getattr(self, "_counted", False):
            self.hub.in_flight -= 1
            self.hub.t_last = time.monotonic()

    def write_error(self, status_code, **kwargs):
        self.finish({"status": status_code, "message": self._reason})

    def send(self, obj, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))


class VersionHandler(_Base):
    public = True

    def get(self):
        self.send({"version": self.hub.version})


class WhoAmIHandler(_Base):
    public = True

    def get(self):
        auth = self.request.headers.get("Authorization", "")
        token = auth.split(None, 1)[1] if " " in auth else ""
        model = self.hub.tokens.get(token)
        if model is None:
            raise web.HTTPError(403)
        self.send(model)


class UsersHandler(_Base):
    def get(self):
        if self.hub.fail_listing > 0:
            self.hub.fail_listing -= 1
            raise web.HTTPError(503)
        state = self.get_argument("state", None)
        if state not in (None, "", "ready", "active", "inactive"):
            raise web.HTTPError(400, "bad state")
        offset = int(self.get_argument("offset", "0"))
        limit = int(self.get_argument("limit", "0") or 0) or self.hub.default_page
        limit = min(limit, self.hub.max_page)
        users = self.hub.listing(state)
        total = len(users)
        page = users[offset : offset + limit]
        items = [u.model() for u in page]
        paginated = "application/jupyterhub-pagination+json" in self.request.headers.get(
            "Accept", ""
        )
        if not paginated:
            self.send(items)
            return
        nxt = None
        if offset + limit < total:
            args = {"offset": offset + limit, "limit": limit}
            if state:
                args["state"] = state
            nxt = {
                "offset": offset + limit,
                "limit": limit,
                "url": f"{self.hub.url}/hub/api/users?{urlencode(args)}",
            }
        self.send(
            {
                "items": items,
                "_pagination": {"offset": offset, "limit": limit, "total": total, "next": nxt},
            }
        )


class UserHandler(_Base):
    def get(self, name):
        user = self.hub.users.get(name)
        if user is None:
            raise web.HTTPError(404)
        self.send(user.model())

    def delete(self, name):
        if self.hub.users.pop(name, None) is None:
            raise web.HTTPError(404)
        self.hub.changed()
        for members in self.hub.groups.values():
            if name in members:
                members.remove(name)
        self.set_status(204)


class ServerHandler(_Base):
    async def delete(self, name, server_name=""):
        hub = self.hub
        hub.deletes_in_flight += 1
        hub.peak_deletes_in_flight = max(hub.peak_deletes_in_flight, hub.deletes_in_flight)
        try:
            if hub.stop_latency:
                await asyncio.sleep(hub.stop_latency)
            user = hub.users.get(name)
            if user is None or server_name not in user.servers:
                raise web.HTTPError(404)
            if name in hub.fail_stop:
                raise web.HTTPError(hub.fail_stop[name])
            server = user.servers[server_name]
            if server.pending == "stop" or name in hub.slow_stop:
                server.pending = "stop"
                server.ready = False
                hub.changed()
                self.set_status(202)
                return
            del user.servers[server_name]
            user.last_activity = hub.clock()  # JupyterHub counts a stop as activity
            hub.changed()
            self.set_status(204)
        finally:
            hub.deletes_in_flight -= 1


class GroupsHandler(_Base):
    def get(self):
        offset = int(self.get_argument("offset", "0"))
        limit = min(
            int(self.get_argument("limit", "0") or 0) or self.hub.default_page, self.hub.max_page
        )
        names = sorted(self.hub.groups)
        items = [{"kind": "group", "name": n, "users": list(self.hub.groups[n])} for n in names]
        page = items[offset : offset + limit]
        nxt = None
        if offset + limit < len(items):
            nxt = {"offset": offset + limit, "limit": limit, "url": ""}
        if "application/jupyterhub-pagination+json" in self.request.headers.get("Accept", ""):
            self.send(
                {
                    "items": page,
                    "_pagination": {
                        "offset": offset,
                        "limit": limit,
                        "total": len(items),
                        "next": nxt,
                    },
                }
            )
        else:
            self.send(page)


class GroupHandler(_Base):
    def get(self, name):
        if name not in self.hub.groups:
            raise web.HTTPError(404)
        self.send({"kind": "group", "name": name, "users": list(self.hub.groups[name])})


class KernelsHandler(_Base):
    def get(self, name, server_name=None):
        user = self.hub.users.get(name)
        server = user.servers.get(server_name or "") if user else None
        if server is None:
            raise web.HTTPError(404)
        self.send(server.kernels)
