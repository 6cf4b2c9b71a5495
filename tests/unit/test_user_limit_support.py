"""An in-process user-limit service plus a tiny fake Hub API, on their own loop in a thread.

The fake hub answers what the service asks: ``GET /hub/api/user`` (token owner, from
``tokens``), paginated ``GET /hub/api/users`` (from ``users``), ``GET /hub/api/users/{name}``
and ``POST /hub/api/users/{name}/server[s/{name}]`` (recorded in ``starts``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from tornado import web
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.user_limit.app import UserLimitApp

HOOK = "hook-secret-0123456789abcdef0123456789abcdef"
TOKENS = {
    "reader": {
        "kind": "user",
        "name": "alice",
        "admin": False,
        "scopes": ["access:services!service=user-limit"],
    },
    "noscope": {"kind": "user", "name": "bob", "admin": False, "scopes": ["read:users!user=bob"]},
    # a hub admin's full token, as the hub expands the admin role
    "hubadmin": {
        "kind": "user",
        "name": "root",
        "admin": True,
        "scopes": ["admin:users", "admin:servers", "access:services", "admin-ui"],
    },
    # tokens an admin made with narrow scopes: the owner's admin flag must not count
    "narrow-admin": {
        "kind": "user",
        "name": "root",
        "admin": True,
        "scopes": ["read:users:activity!user=root"],
    },
    "read-only-admin": {
        "kind": "user",
        "name": "root",
        "admin": True,
        "scopes": ["access:services!service=user-limit"],
    },
    "filtered-admin": {
        "kind": "user",
        "name": "root",
        "admin": True,
        "scopes": ["access:services", "admin:servers!user=root", "custom:user-limit:admin!user=x"],
    },
    "limitadmin": {
        "kind": "service",
        "name": "ops",
        "scopes": ["custom:user-limit:admin", "access:services!service=user-limit"],
    },
    "service-token": {"kind": "service", "name": "user-limit", "scopes": ["list:users"]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHubState:
    def __init__(self):
        self.tokens = dict(TOKENS)
        self.users: dict[str, dict] = {}
        self.starts: list[tuple[str, str, dict | None]] = []


class _H(web.RequestHandler):
    def initialize(self, state):
        self.state = state

    def send(self, obj, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def token(self):
        auth = self.request.headers.get("Authorization", "")
        return auth.split(None, 1)[1] if " " in auth else ""


class WhoAmI(_H):
    def get(self):
        model = self.state.tokens.get(self.token())
        if model is None:
            return self.send({"status": 403, "message": "bad token"}, 403)
        self.send(model)


class Users(_H):
    def get(self):
        items = list(self.state.users.values())
        offset = int(self.get_argument("offset", "0"))
        limit = int(self.get_argument("limit", "50"))
        page = items[offset : offset + limit]
        nxt = {"offset": offset + limit, "limit": limit} if offset + limit < len(items) else None
        self.send(
            {
                "items": page,
                "_pagination": {"offset": offset, "limit": limit, "total": len(items), "next": nxt},
            }
        )


class OneUser(_H):
    def get(self, name):
        if name not in self.state.users:
            return self.send({"status": 404, "message": "no such user"}, 404)
        self.send(self.state.users[name])


class Start(_H):
    def post(self, name, server_name=""):
        body = json.loads(self.request.body) if self.request.body else None
        self.state.starts.append((name, server_name or "", body))
        self.send({}, 202)


class Service:
    """Start with :meth:`start`; ``url`` is the service prefix URL; stop with :meth:`stop`."""

    def __init__(self, tmp_path, **traits):
        self.tmp_path = tmp_path
        self.traits = traits
        self.hub = FakeHubState()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: UserLimitApp | None = None
        self._servers: list[HTTPServer] = []

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self):
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self):
        hub_port, port = free_port(), free_port()
        kw = {"state": self.hub}
        hub_app = web.Application(
            [
                (r"/hub/api/user", WhoAmI, kw),
                (r"/hub/api/users", Users, kw),
                (r"/hub/api/users/([^/]+)", OneUser, kw),
                (r"/hub/api/users/([^/]+)/server", Start, kw),
                (r"/hub/api/users/([^/]+)/servers/([^/]+)", Start, kw),
            ],
            log_function=lambda h: None,
        )
        hs = HTTPServer(hub_app)
        hs.listen(hub_port, "127.0.0.1")
        self._servers.append(hs)
        app = UserLimitApp(
            url=f"http://127.0.0.1:{hub_port}/hub/api",
            api_token="service-token",
            service_name="user-limit",
            service_url=f"http://127.0.0.1:{port}",
            service_prefix="/services/user-limit/",
            db_url=f"sqlite:///{self.tmp_path}/user-limit.sqlite",
            hook_token=HOOK,
            hub_retries=0,
            **self.traits,
        )
        app.initialize([])
        await app.setup()
        srv = HTTPServer(app.make_tornado_app())
        srv.listen(port, "127.0.0.1")
        self._servers.append(srv)
        self.app = app
        self.url = f"http://127.0.0.1:{port}/services/user-limit"

    def stop(self):
        if self.loop.is_closed():
            return

        async def _stop():
            for s in self._servers:
                s.stop()
            if self.app is not None:
                await self.app.on_stop()
                await self.app.teardown()

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
