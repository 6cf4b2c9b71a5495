"""The transport under :class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI`: HTTP calls to
the JupyterHub REST API with bounded concurrency, retries and a hook per attempt.

:class:`HubHTTP` owns its own tornado ``AsyncHTTPClient`` instance (no global ``configure``),
so ``concurrency`` really is the number of requests in flight. It retries connection errors, 5xx
and 429 answers of idempotent methods with bounded exponential backoff (a 429's ``Retry-After``
honoured), counts calls per method and endpoint (:func:`endpoint_label`: names replaced by
``{}``) and never logs tokens, names or query strings.
"""

from __future__ import annotations

import asyncio
import collections
import json as _json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

log = logging.getLogger(__name__)

#: what the hub sets for each service it starts: the API's URL, the service's token, and the
#: seconds a Hub API request may take
API_URL_ENV = "JUPYTERHUB_API_URL"
API_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
REQUEST_TIMEOUT_ENV = "JUPYTERHUB_REQUEST_TIMEOUT"

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# path segments followed by a name; used to turn a path into a low-cardinality metrics label
_NAMED_COLLECTIONS = frozenset({"users", "groups", "servers", "services", "tokens", "shares"})


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


def default_request_timeout() -> float:
    """Seconds per Hub API request attempt: ``$JUPYTERHUB_REQUEST_TIMEOUT`` or 60."""
    return float(os.environ.get(REQUEST_TIMEOUT_ENV) or 60)


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


class HubHTTP:
    """Calls to the Hub REST API (see :class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI`
    for the resources).

    :param url: Hub API URL, e.g. ``http://127.0.0.1:8081/hub/api``; default ``$JUPYTERHUB_API_URL``.
    :param token: API token; default ``$JUPYTERHUB_API_TOKEN``.
    :param concurrency: requests in flight at most (one semaphore and the client's ``max_clients``).
    :param request_timeout: seconds per attempt; default ``$JUPYTERHUB_REQUEST_TIMEOUT`` or 60.
    :param retries: extra attempts for connection errors, 5xx and 429 (idempotent methods).
    :param backoff_base, backoff_max: the n-th retry waits ``min(max, base * 2**n)`` with jitter.
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
        ssl_options=None,
        on_call: Callable[[str, str, int, float], None] | None = None,
    ):
        url = url if url is not None else os.environ.get(API_URL_ENV, "")
        if not url:
            raise ValueError("Hub API URL missing: pass url= or set JUPYTERHUB_API_URL")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(API_TOKEN_ENV, "")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        if request_timeout is None:
            request_timeout = default_request_timeout()
        self.request_timeout = request_timeout
        self.connect_timeout = min(connect_timeout, request_timeout)
        self.retries = max(0, retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.ssl_options = ssl_options
        self.on_call = on_call
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._sem = asyncio.Semaphore(concurrency)
        self._client: AsyncHTTPClient | None = None  # made on first use, on the running loop
        self._closed = False

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
        if retries is None:
            retries = self.retries if method in IDEMPOTENT_METHODS else 0
        req = self._http_request(method, path, json, params, headers, token)
        return await self._send(req, method, endpoint_label(path), frozenset(ok), retries)

    def _http_request(
        self, method: str, path: str, json, params: dict | None, headers: dict | None, token
    ) -> HTTPRequest:
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
        return HTTPRequest(
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

    async def _send(
        self, req: HTTPRequest, method: str, label: str, ok: frozenset[int], retries: int
    ) -> tuple[int, object]:
        """Send ``req`` until its status is in ``ok`` or the retries are spent."""
        for attempt in range(retries + 1):
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
            if not (status == 599 or status in RETRY_STATUSES) or attempt >= retries:
                break
            delay = self._retry_delay(attempt, status, resp if not failure else None)
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
            await asyncio.sleep(delay)
        raise HubAPIError(method, label, status, failure or _error_message(raw))

    def _retry_delay(self, attempt: int, status: int, resp: HTTPResponse | None) -> float:
        """The backoff, or a 429 answer's ``Retry-After`` seconds (capped by ``backoff_max``)."""
        if status == 429 and resp is not None:
            retry_after = resp.headers.get("Retry-After", "")
            if retry_after.isdigit():
                return min(self.backoff_max, float(retry_after))
        return self._backoff(attempt)

    @staticmethod
    def _parse(raw: bytes | None):
        if not raw:
            return None
        try:
            return _json.loads(raw)
        except ValueError:
            return None

    async def aclose(self) -> None:
        """Close the HTTP client; later calls raise ``RuntimeError``."""
        if not self._closed:
            self._closed = True
            if self._client is not None:
                self._client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
