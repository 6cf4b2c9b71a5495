"""An in-process user-limit service plus the tests' fake Hub API, on their own loop in a thread.

The fake hub (tests/support/fakehub.py) answers what the service asks: ``GET /hub/api/user``
(token owner, from ``TOKENS``), paginated ``GET /hub/api/users`` (from ``users``),
``GET /hub/api/users/{name}`` and ``POST /hub/api/users/{name}/server[s/{name}]`` (recorded in
``starts``).
"""

from __future__ import annotations

import asyncio
import threading

from fakehub import FakeHub
from ports import free_port
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


class Service:
    """Start with :meth:`start`; ``url`` is the service prefix URL; stop with :meth:`stop`."""

    def __init__(self, tmp_path, **traits):
        self.tmp_path = tmp_path
        self.traits = traits
        self.hub = FakeHub("service-token", tokens=TOKENS)
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
        await self.hub.start()
        port = free_port()
        app = UserLimitApp(
            url=self.hub.api_url,
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
            await self.hub.stop()
            if self.app is not None:
                await self.app.on_stop()
                await self.app.teardown()

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
