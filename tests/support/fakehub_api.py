"""The request handlers of :class:`fakehub.FakeHub` (the tests' fake JupyterHub REST API).

Each handler gets the ``FakeHub`` as ``hub`` and reads and changes its plain attributes;
:data:`ROUTES` maps the hub's paths to them.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

from tornado import web

from jupyterhub_lab_ext.services.common.hubapi import endpoint_label
from jupyterhub_lab_ext.services.common.pagination import PAGINATION_MEDIA_TYPE


class _Base(web.RequestHandler):
    public = False

    def initialize(self, hub):
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
            # a hub busy with stops answers everyone more slowly (the culler's latency budget)
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
        paginated = PAGINATION_MEDIA_TYPE in self.request.headers.get("Accept", "")
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
    def post(self, name, server_name=""):
        # recorded for any name: the tests start servers of users they never added
        body = json.loads(self.request.body) if self.request.body else None
        self.hub.starts.append((name, server_name or "", body))
        self.set_status(202)

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
        if PAGINATION_MEDIA_TYPE in self.request.headers.get("Accept", ""):
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


ROUTES = [
    (r"/hub/api/?", VersionHandler),
    (r"/hub/api/user", WhoAmIHandler),
    (r"/hub/api/users", UsersHandler),
    (r"/hub/api/users/([^/]+)", UserHandler),
    (r"/hub/api/users/([^/]+)/server", ServerHandler),
    (r"/hub/api/users/([^/]+)/servers/([^/]+)", ServerHandler),
    (r"/hub/api/groups", GroupsHandler),
    (r"/hub/api/groups/([^/]+)", GroupHandler),
    (r"/user/([^/]+)/(?:([^/]+)/)?api/kernels", KernelsHandler),
]
