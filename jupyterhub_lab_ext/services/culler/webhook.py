"""The optional cull-warning webhook: one JSON POST per warning, own HTTP client."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class WebhookSender:
    """POSTs a JSON warning to ``url`` (own HTTP client; headers e.g. for a shared secret)."""

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 10.0):
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self._client = AsyncHTTPClient(force_instance=True)

    async def send(self, payload: dict) -> int:
        req = HTTPRequest(
            self.url,
            method="POST",
            headers=self.headers,
            body=json.dumps(payload),
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        resp = await self._client.fetch(req, raise_error=False)
        if resp.code >= 400 or resp.code == 599:
            raise RuntimeError(f"webhook answered {resp.code}")
        return resp.code

    def close(self):
        self._client.close()
