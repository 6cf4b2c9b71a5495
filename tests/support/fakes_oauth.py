"""A fake OAuth2/OIDC provider behind a fake tornado HTTP client (no sockets).

``FakeHTTPClient`` routes ``(host, path)`` to handler callables; ``FakeProvider`` registers a
token endpoint (authorization_code + refresh_token grants, PKCE S256 check) and a userinfo
endpoint, and makes request handlers for a user model, so a test can drive a complete
``authenticator.get_authenticated_user(handler, None)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from io import BytesIO
from unittest.mock import Mock
from urllib.parse import parse_qs, urlparse

from oauthenticator.oauth2 import _serialize_state
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import RequestHandler

HOST = "provider.test"


class FakeHTTPClient:
    """Stands in for ``AsyncHTTPClient``: ``routes[(host, path)] = handler(request) -> reply``.

    A reply is an int status, a dict/list (JSON, 200) or ``(status, dict)``. Unrouted requests
    fail the test loudly (404 and recorded in ``unrouted``).
    """

    def __init__(self):
        self.routes: dict[tuple[str, str], object] = {}
        self.requests: list[HTTPRequest] = []
        self.unrouted: list[str] = []

    def add(self, host: str, path: str, handler) -> None:
        self.routes[(host, path)] = handler

    async def fetch(self, request, raise_error=True, **kwargs):
        if isinstance(request, str):
            request = HTTPRequest(request, **kwargs)
        self.requests.append(request)
        url = urlparse(request.url)
        handler = self.routes.get((url.hostname, url.path))
        if handler is None:
            self.unrouted.append(request.url)
            status, body = 404, {"error": "not found"}
        else:
            reply = handler(request)
            if isinstance(reply, int):
                status, body = reply, None
            elif isinstance(reply, tuple):
                status, body = reply
            else:
                status, body = 200, reply
        data = b"" if body is None else json.dumps(body).encode()
        response = HTTPResponse(
            request,
            status,
            headers=HTTPHeaders({"Content-Type": "application/json"}),
            buffer=BytesIO(data),
        )
        if raise_error and status >= 400:
            raise HTTPClientError(status, response=response)
        return response


def _form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


class FakeProvider:
    """OAuth2 provider state: one-time codes, access and refresh tokens -> user models."""

    def __init__(self, client: FakeHTTPClient, host: str = HOST):
        self.client = client
        self.host = host
        self.codes: dict[str, tuple[dict, str]] = {}
        self.tokens: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.userinfo_status = 200
        client.add(host, "/token", self.token)
        client.add(host, "/userinfo", self.userinfo)

    @property
    def config(self) -> dict:
        base = f"https://{self.host}"
        return {
            "authorize_url": f"{base}/authorize",
            "token_url": f"{base}/token",
            "userdata_url": f"{base}/userinfo",
            "client_id": "hub-client",
            "client_secret": "hub-secret",
            "oauth_callback_url": "https://hub.test/hub/oauth_callback",
            "http_client": self.client,
        }

    def _issue(self, user: dict) -> dict:
        access, refresh = secrets.token_hex(8), secrets.token_hex(8)
        self.tokens[access] = user
        self.refresh_tokens[refresh] = user
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "scope": "openid email",
        }

    def token(self, request):
        form = _form(request)
        if form.get("client_id") != "hub-client" or form.get("client_secret") != "hub-secret":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == "authorization_code":
            code = form.get("code", "")
            if code not in self.codes:
                return 400, {"error": "invalid_grant"}
            user, challenge = self.codes.pop(code)
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
            return self._issue(user)
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                return 400, {"error": "invalid_grant"}
            return self._issue(user)
        return 400, {"error": "unsupported_grant_type"}

    def userinfo(self, request):
        auth = request.headers.get("Authorization", "")
        user = self.tokens.get(auth.removeprefix("Bearer "))
        if user is None:
            return 401, {"error": "invalid_token"}
        if self.userinfo_status != 200:
            return self.userinfo_status
        return dict(user)

    def expire_access_tokens(self) -> None:
        self.tokens.clear()

    def handler_for(self, user: dict):
        """A mock callback RequestHandler carrying a fresh code and PKCE state for ``user``."""
        code = secrets.token_hex(8)
        verifier = secrets.token_urlsafe(32)
        digest = hashlib.sha256(verifier.encode()).digest()
        self.codes[code] = (user, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())
        handler = Mock(spec=RequestHandler)
        handler.get_argument = Mock(return_value=code)
        handler.request = HTTPServerRequest(
            start_line=RequestStartLine("GET", f"/hub/oauth_callback?code={code}", "HTTP/1.1"),
            headers=HTTPHeaders({"Host": "hub.test"}),
        )
        handler.hub = Mock(server=Mock(base_url="/hub/"), base_url="/hub/")
        handler.get_state_cookie = Mock(
            return_value=_serialize_state(
                {"state_id": "s", "next_url": "/hub/", "code_verifier": verifier}
            )
        )
        return handler
