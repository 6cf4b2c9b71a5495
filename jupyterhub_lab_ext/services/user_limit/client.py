"""A small keep-alive JSON client for the hub-side hook's calls to the user-limit service.

It runs on the hub's event loop, on the spawn path, so it avoids what makes a general client slow
there: a new TCP connection and a resolver thread hop per request. Connections to the service
are kept open and reused (HTTP/1.1 keep-alive); an IP literal needs no resolver. A request on a
reused connection that turns out to be closed is retried once on a fresh one; connection errors
and 5xx answers are retried ``retries`` times with a short backoff.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from urllib.parse import urlsplit


class ServiceUnavailable(Exception):
    """The service could not be reached or answered 5xx after the retries."""

    def __init__(self, message: str, status: int = 599):
        super().__init__(message)
        self.status = status


class _Closed(Exception):
    pass


class ServiceClient:
    """``await client.request("POST", "admissions", {...})`` -> ``(status, parsed JSON or None)``.

    :param base_url: e.g. ``http://127.0.0.1:10102/services/user-limit/api/``.
    :param token: sent as ``Authorization: token ...`` (never logged).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_idle: int = 32,
    ):
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("the service URL must be http:// (the hub reaches it on the host)")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_idle = max_idle
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.connections_opened = 0

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {self.path}{path.lstrip('/')} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: token {self.token}\r\n"
            "Accept: application/json\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, data = await asyncio.wait_for(self._exchange(head + payload), self.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                last = e
                continue
            if status >= 500:
                last = ServiceUnavailable(f"{method} {path} -> {status}", status)
                continue
            return status, data
        if isinstance(last, ServiceUnavailable):
            raise last
        raise ServiceUnavailable(f"{method} {path}: {type(last).__name__}: {last}") from last

    async def _exchange(self, raw: bytes) -> tuple[int, object]:
        while self._idle:
            reader, writer = self._idle.popleft()
            if writer.is_closing() or reader.at_eof():
                writer.close()
                continue
            try:
                return await self._send(reader, writer, raw)
            except (_Closed, ConnectionError):
                continue  # the server closed an idle connection: use a fresh one
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connections_opened += 1
        try:
            return await self._send(reader, writer, raw)
        except _Closed as e:
            raise ConnectionResetError("service closed the connection") from e

    async def _send(self, reader, writer, raw: bytes) -> tuple[int, object]:
        keep = False
        try:
            writer.write(raw)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise _Closed()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError("not an HTTP response")
            status = int(parts[1])
            length = 0
            keep = parts[0] == b"HTTP/1.1"
            for _ in range(100):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "connection" and value.strip().lower() == "close":
                    keep = False
                elif name == "transfer-encoding":
                    raise ValueError("chunked answers are not expected from the service")
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            keep = False
            raise
        finally:
            if keep and len(self._idle) < self.max_idle:
                self._idle.append((reader, writer))
            else:
                writer.close()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        return status, data

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.popleft()
            writer.close()
