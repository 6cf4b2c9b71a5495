"""One async client for the JupyterHub REST API, shared by the package's hub services.

:class:`HubAPI` owns its own tornado ``AsyncHTTPClient`` instance (no global ``configure``), so
``concurrency`` really is the number of requests in flight. It retries connection errors, 5xx
and 429 answers with bounded exponential backoff, follows the hub's pagination (prefetching the
next page while the caller works on the current one), counts calls per method and endpoint for
metrics, and never logs tokens or query strings.

Example::

    hub = HubAPI(concurrency=20)          # url/token from JUPYTERHUB_API_URL/JUPYTERHUB_API_TOKEN
    async for user in hub.iter_users(state="ready"):
        ...
    status = await hub.stop_server("alice")   # 204 stopped, 202 still stopping
    await hub.aclose()
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json as _json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from urllib.parse import quote, urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger(__name__)

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# path segments followed by a name; used to turn a path into a low-cardinality metrics label
_NAMED_COLLECTIONS = frozenset({"users", "groups", "servers", "services", "tokens", "shares"})
_MAX_PAGES = 1_000_000


class HubAPIError(Exception):
    """A Hub API call failed (after retries). ``status`` is the HTTP status, 599 for no answer."""

    def __init__(self, method: str, endpoint: str, status: int, message: str = ""):
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.message = message
        super().__init__(f"{method} {endpoint} -> {status}" + (f": {message}" if message else ""))


def endpoint_label(path: str) -> str:
    """``/users/alice/servers/x`` -> ``/users/{}/servers/{}``: a path without names or query.

    Absolute URLs (a single-user server's API through the proxy) become ``server:/api/...``.
    """
    if path.startswith(("http://", "https://")):
        p = urlsplit(path).path
        i = p.rfind("/api/")
        return "server:" + (p[i:] if i >= 0 else "/")
    parts = path.split("?", 1)[0].strip("/").split("/")
    out = []
    named = False
    for part in parts:
        if named:
            out.append("{}")
            named = False
        else:
            out.append(part)
            named = part in _NAMED_COLLECTIONS
    return "/" + "/".join(p for p in out if p)


def _error_message(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        data = _json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error_description") or data.get("error") or "")
    return ""


class _TTLCache:
    """Small dict with per-entry expiry and a size bound; keys are token hashes, never tokens."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._data: dict[str, tuple[float, object]] = {}

    def get(self, key: str):
        hit = self._data.get(key)
        if hit is None:
            return False, None
        expires, value = hit
        if expires < self.clock():
            del self._data[key]
            return False, None
        return True, value

    def set(self, key: str, value, ttl: float | None = None):
        now = self.clock()
        if len(self._data) >= self.max_entries:
            for k in [k for k, (exp, _) in self._data.items() if exp < now]:
                del self._data[k]
            while len(self._data) >= self.max_entries:
                self._data.pop(next(iter(self._data)))
        self._data[key] = (now + (self.ttl if ttl is None else ttl), value)

    def clear(self):
        self._data.clear()


class HubAPI:
    """Async client for the Hub REST API.

    :param url: Hub API URL, e.g. ``http://127.0.0.1:8081/hub/api``; default ``$JUPYTERHUB_API_URL``.
    :param token: API token; default ``$JUPYTERHUB_API_TOKEN``.
    :param concurrency: requests in flight at most (one semaphore and the client's ``max_clients``).
    :param request_timeout: seconds per attempt; default ``$JUPYTERHUB_REQUEST_TIMEOUT`` or 60.
    :param retries: extra attempts for connection errors, 5xx and 429 (idempotent methods).
    :param backoff_base, backoff_max: the n-th retry waits ``min(max, base * 2**n)`` with jitter.
    :param page_size: default ``limit`` for paginated listings (0: the hub's default).
    :param token_cache_ttl: seconds :meth:`token_owner` remembers a valid token's answer: the
        longest a revoked token or a demoted owner can still be taken for what it was.
    :param negative_cache_ttl: seconds an invalid token's answer is remembered (a refusal only).
    :param on_call: optional ``f(method, endpoint, status, seconds)`` called after every attempt.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        concurrency: int = 10,
        request_timeout: float | None = None,
        connect_timeout: float = 10.0,
        retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        page_size: int = 0,
        token_cache_ttl: float = 5.0,
        negative_cache_ttl: float = 10.0,
        ssl_options=None,
        on_call: Callable[[str, str, int, float], None] | None = None,
    ):
        url = url if url is not None else os.environ.get("JUPYTERHUB_API_URL", "")
        if not url:
            raise ValueError("Hub API URL missing: pass url= or set JUPYTERHUB_API_URL")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        if request_timeout is None:
            request_timeout = float(os.environ.get("JUPYTERHUB_REQUEST_TIMEOUT") or 60)
        self.request_timeout = request_timeout
        self.connect_timeout = min(connect_timeout, request_timeout)
        self.retries = max(0, retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.ssl_options = ssl_options
        self.on_call = on_call
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._sem = asyncio.Semaphore(concurrency)
        self._client: AsyncHTTPClient | None = None  # made on first use, on the running loop
        self._token_cache = _TTLCache(token_cache_ttl)
        self.negative_cache_ttl = negative_cache_ttl
        self._token_lookups: dict[str, asyncio.Future] = {}
        self._closed = False

    # -- core ------------------------------------------------------------------------------
    def _full_url(self, path: str, params: dict | None) -> str:
        if path.startswith(("http://", "https://")):
            url = path
        else:
            url = self.url + "/" + path.lstrip("/")
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            clean = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in clean.items()}
            if clean:
                url += ("&" if "?" in url else "?") + urlencode(clean, doseq=True)
        return url

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        return delay * (0.5 + random.random() / 2)

    async def _fetch_once(self, req: HTTPRequest, method: str, label: str):
        async with self._sem:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.calls[(method, label)] += 1
            started = time.perf_counter()
            status = 599
            try:
                if self._client is None:
                    self._client = AsyncHTTPClient(
                        force_instance=True, max_clients=self.concurrency
                    )
                resp = await self._client.fetch(req, raise_error=False)
                status = resp.code
                return resp
            finally:
                self.in_flight -= 1
                if self.on_call is not None:
                    try:
                        self.on_call(method, label, status, time.perf_counter() - started)
                    except Exception:  # metrics must never break a call
                        log.exception("on_call hook failed")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json=None,
        params: dict | None = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        headers: dict | None = None,
        token: str | None = None,
        retries: int | None = None,
    ) -> tuple[int, object]:
        """Call the Hub API; return ``(status, parsed JSON body or None)``.

        A status not in ``ok`` raises :class:`HubAPIError` (after retries for 5xx/429 and
        connection errors). ``token`` overrides the client's token (used by :meth:`token_owner`).
        """
        if self._closed:
            raise RuntimeError("HubAPI is closed")
        method = method.upper()
        ok = frozenset(ok)
        label = endpoint_label(path)
        if retries is None:
            retries = self.retries if method in IDEMPOTENT_METHODS else 0
        hdrs = {"Accept": "application/json"}
        if headers:
            hdrs.update(headers)
        tok = self.token if token is None else token
        if tok:
            hdrs["Authorization"] = f"token {tok}"
        body = None
        if json is not None:
            body = _json.dumps(json)
            hdrs["Content-Type"] = "application/json"
        req = HTTPRequest(
            self._full_url(path, params),
            method=method,
            headers=hdrs,
            body=body,
            allow_nonstandard_methods=True,
            request_timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
            ssl_options=self.ssl_options,
            follow_redirects=False,
        )
        attempt = 0
        while True:
            failure = ""
            resp = None
            try:
                resp = await self._fetch_once(req, method, label)
            except (OSError, HTTPClientError, asyncio.TimeoutError) as e:
                # no answer: connection refused/reset, timeout (tornado raises 599 here)
                status, raw, failure = 599, None, type(e).__name__
            else:
                status, raw = resp.code, resp.body
                if status == 599:
                    failure = type(resp.error).__name__ if resp.error else "no response"
            if status in ok:
                return status, self._parse(raw)
            if (status == 599 or status in RETRY_STATUSES) and attempt < retries:
                delay = self._backoff(attempt)
                if status == 429 and resp is not None and failure == "":
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = min(self.backoff_max, float(retry_after))
                log.warning(
                    "Hub API %s %s -> %s%s; retry %d/%d in %.1fs",
                    method,
                    label,
                    status,
                    f" ({failure})" if failure else "",
                    attempt + 1,
                    retries,
                    delay,
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise HubAPIError(method, label, status, failure or _error_message(raw))

    @staticmethod
    def _parse(raw: bytes | None):
        if not raw:
            return None
        try:
            return _json.loads(raw)
        except ValueError:
            return None

    # -- pagination ------------------------------------------------------------------------
    async def paginate(
        self,
        path: str,
        params: dict | None = None,
        page_size: int | None = None,
        *,
        removal_safe: bool = False,
    ) -> AsyncIterator[dict]:
        """Yield every item of a paginated listing, prefetching the next page.

        Uses ``offset``/``limit`` from ``_pagination`` against our own API URL (a hub behind a
        proxy with another public URL still works). A hub that answers with a bare list (no
        pagination support) is yielded as is.

        ``removal_safe``: the caller removes items from the listing while iterating (stopping
        servers of a ``state=ready`` listing). Offset pagination would then skip items that
        shift into pages already read. So after the first page (which gives ``total``) the
        pages are read from the last one down, and the first page's items are yielded last:
        removing an item only shifts items at higher offsets, which have been read already.
        """
        params = dict(params or {})
        size = self.page_size if page_size is None else page_size
        if size:
            params["limit"] = size
        headers = {"Accept": PAGINATION_MEDIA_TYPE}
        label = endpoint_label(path)

        def fetch(offset: int, limit: int | None = None):
            p = dict(params)
            if offset:
                p["offset"] = offset
            if limit:
                p["limit"] = limit
            coro = self.request("GET", path, params=p, headers=headers, ok=(200,))
            return asyncio.ensure_future(coro)

        def unpack(page):
            if isinstance(page, list):
                return page, None
            if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
                raise HubAPIError("GET", label, 200, "unexpected listing body")
            return page.get("items") or [], page.get("_pagination") or {}

        task = fetch(0)
        try:
            _, first = await task
            task = None
            items, pag = unpack(first)
            if pag is None or not pag.get("next"):
                for item in items:
                    yield item
                return
            limit = int(pag.get("limit") or size or len(items) or 1)
            if removal_safe:
                total = int(pag.get("total") or 0)
                offsets = list(range(limit * ((max(total, 1) - 1) // limit), 0, -limit))[
                    :_MAX_PAGES
                ]
                if offsets:
                    task = fetch(offsets[0], limit)
                for i in range(len(offsets)):
                    _, page = await task
                    task = fetch(offsets[i + 1], limit) if i + 1 < len(offsets) else None
                    for item in unpack(page)[0]:
                        yield item
                for item in items:
                    yield item
                return
            last_offset = 0
            for _ in range(_MAX_PAGES):
                nxt = pag.get("next") if pag else None
                if nxt and items:
                    offset = int(nxt.get("offset") or 0)
                    if offset > last_offset:
                        last_offset = offset
                        task = fetch(offset, int(nxt.get("limit") or limit))
                for item in items:
                    yield item
                if task is None:
                    return
                _, page = await task
                task = None
                items, pag = unpack(page)
        finally:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    def iter_users(
        self,
        state: str | None = None,
        page_size: int | None = None,
        include_stopped_servers: bool = False,
        *,
        removal_safe: bool = False,
        **params,
    ) -> AsyncIterator[dict]:
        """Page through ``GET /users`` (``state``: ``active``, ``ready``, ``inactive`` or None).

        See :meth:`paginate` for ``removal_safe``.
        """
        if state:
            params["state"] = state
        if include_stopped_servers:
            params["include_stopped_servers"] = True
        return self.paginate("/users", params, page_size, removal_safe=removal_safe)

    def iter_groups(self, page_size: int | None = None) -> AsyncIterator[dict]:
        """Page through ``GET /groups``."""
        return self.paginate("/groups", None, page_size)

    # -- resources -------------------------------------------------------------------------
    async def get_version(self) -> str:
        """The hub's version from the unauthenticated ``GET /`` (no ``read:hub`` needed)."""
        _, body = await self.request("GET", "/", ok=(200,))
        return (body or {}).get("version", "") if isinstance(body, dict) else ""

    async def get_user(self, name: str) -> dict | None:
        """The user model, or None if the hub has no such user."""
        status, body = await self.request("GET", f"/users/{quote(name, safe='')}", ok=(200, 404))
        return body if status == 200 else None

    async def get_group(self, name: str) -> dict | None:
        status, body = await self.request("GET", f"/groups/{quote(name, safe='')}", ok=(200, 404))
        return body if status == 200 else None

    async def stop_server(self, user: str, server_name: str = "", remove: bool = False) -> int:
        """Stop (and with ``remove`` delete) a server: 204 stopped, 202 still stopping."""
        u = quote(user, safe="")
        if server_name:
            path = f"/users/{u}/servers/{quote(server_name, safe='')}"
            body = {"remove": True} if remove else None
        else:
            path = f"/users/{u}/server"
            body = None
        status, _ = await self.request("DELETE", path, json=body, ok=(202, 204))
        return status

    async def delete_user(self, name: str) -> int:
        status, _ = await self.request("DELETE", f"/users/{quote(name, safe='')}", ok=(204,))
        return status

    async def token_owner(self, token: str, *, fresh: bool = False) -> dict | None:
        """The user or service model owning ``token`` (with the token's ``scopes``), or None.

        Answers are cached for ``token_cache_ttl`` seconds (invalid tokens for
        ``negative_cache_ttl``), keyed by a SHA-256 of the token; concurrent lookups of the
        same token share one hub request. ``fresh=True`` skips the cache (its answer is cached
        for the next callers): use it before any change. Hub errors raise :class:`HubAPIError`
        and are not cached.
        """
        if not token:
            return None
        key = hashlib.sha256(token.encode("utf8", "replace")).hexdigest()
        if fresh:
            # a lookup sent after this call began: never one that was already in flight
            return await self._ask_token_owner(key, token)
        hit, value = self._token_cache.get(key)
        if hit:
            return value
        pending = self._token_lookups.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._token_lookups[key] = fut
        try:
            model = await self._ask_token_owner(key, token)
            fut.set_result(model)
            return model
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            del self._token_lookups[key]

    async def _ask_token_owner(self, key: str, token: str) -> dict | None:
        status, body = await self.request("GET", "/user", token=token, ok=(200, 401, 403))
        model = body if status == 200 and isinstance(body, dict) else None
        self._token_cache.set(key, model, None if model else self.negative_cache_ttl)
        return model

    def forget_tokens(self):
        """Drop the token cache (e.g. after a role change in tests)."""
        self._token_cache.clear()

    async def aclose(self):
        if not self._closed:
            self._closed = True
            if self._client is not None:
                self._client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
