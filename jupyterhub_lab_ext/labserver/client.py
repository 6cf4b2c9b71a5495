"""The server extension's calls out of the user's server: the services' self views, the hub.

Every call uses the server's own ``$JUPYTERHUB_API_TOKEN`` (never a browser credential). Each
service's answer is cached for ``ttl`` seconds and concurrent askers share one request, so the
services see at most one request per server per ``ttl``, whatever the number of open tabs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from jupyterhub_lab_ext.labserver.status import Fetched

#: seconds a service or the hub gets to answer
REQUEST_TIMEOUT = 5.0
#: the most of a service's answer that is read as JSON
MAX_ANSWER = 256 * 1024

Fetch = Callable[[HTTPRequest], Awaitable[object]]


def default_fetch(request: HTTPRequest):
    return AsyncHTTPClient().fetch(request, raise_error=False)


def user_path(base_url: str, user: str, server_name: str) -> str:
    """``<base>api/users/<user>`` (``?server=NAME`` for a named server)."""
    url = base_url.rstrip("/") + "/api/users/" + quote(user, safe="")
    return url + (f"?server={quote(server_name, safe='')}" if server_name else "")


def interpret(code: int, body: bytes | None) -> Fetched:
    """A service's HTTP answer as :class:`Fetched` (599 is tornado's "no answer")."""
    if code == 599 or code == 0:
        return Fetched(problem="not running")
    if code != 200:
        return Fetched(problem="refused")
    try:
        view = json.loads((body or b"")[:MAX_ANSWER])
    except ValueError:
        return Fetched(problem="refused")
    return Fetched(view=view) if isinstance(view, dict) else Fetched(problem="refused")


class CachedView:
    """One service's self view of this server's user, asked at most once per ``ttl`` seconds."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ttl: float,
        fetch: Fetch = default_fetch,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.token = token
        self.ttl = ttl
        self._fetch = fetch
        self._clock = clock
        self._answer: Fetched | None = None
        self._at = 0.0
        self._pending: asyncio.Future | None = None
        #: requests actually sent (for the benchmark and the tests)
        self.sent = 0

    def forget(self) -> None:
        """Ask again next time (after "Keep my server" changed what the service will say)."""
        self._answer = None

    async def get(self) -> Fetched:
        if not self.url:
            return Fetched(problem="not configured")
        if self._answer is not None and self._clock() - self._at < self.ttl:
            return self._answer
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._ask())
        pending = self._pending
        try:
            return await asyncio.shield(pending)
        finally:
            if self._pending is pending and pending.done():
                self._pending = None

    async def _ask(self) -> Fetched:
        self.sent += 1
        request = HTTPRequest(
            self.url,
            headers={"Authorization": f"token {self.token}", "Accept": "application/json"},
            request_timeout=REQUEST_TIMEOUT,
            connect_timeout=REQUEST_TIMEOUT,
        )
        try:
            resp = await self._fetch(request)
            answer = interpret(resp.code, resp.body)
        except OSError:
            answer = Fetched(problem="not running")
        self._answer, self._at = answer, self._clock()
        return answer


def activity_body(server_name: str, now: datetime) -> dict:
    """The hub's ``POST /users/<name>/activity`` body for this server, at ``now``."""
    stamp = now.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"last_activity": stamp, "servers": {server_name: {"last_activity": stamp}}}


async def post_activity(
    api_url: str,
    token: str,
    user: str,
    server_name: str,
    now: datetime,
    fetch: Fetch = default_fetch,
) -> int:
    """Tell the hub this server is in use now; returns the HTTP status (599: no answer)."""
    request = HTTPRequest(
        api_url.rstrip("/") + "/users/" + quote(user, safe="") + "/activity",
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        body=json.dumps(activity_body(server_name, now)),
        request_timeout=REQUEST_TIMEOUT,
        connect_timeout=REQUEST_TIMEOUT,
    )
    try:
        resp = await fetch(request)
    except OSError:
        return 599
    return resp.code
