"""Request authentication and scope checks for the services' tornado handlers.

Subclass :class:`ServiceHandler`. Its ``async prepare()``, before a byte of the body is read:

1. refuses a declared body over ``max_body_size`` with 413;
2. identifies the caller with a hub token (``Authorization: token|bearer ...``, resolved by
   ``HubAPI.token_owner``) or, for browsers, with the hub OAuth cookie (``HubOAuth``), and answers
   401 without one. Answers are cached for ``auth_cache_ttl`` seconds (5 by default) for reads;
   a change (any method but GET/HEAD/OPTIONS) is checked with the hub again, uncached;
3. requires read access, ``access:services!service=<name>``, on the credential itself, and for
   a change the service's admin scope (403; :meth:`ServiceHandler.authorize`).

Only then is the body streamed in, still capped (413 past the cap, the connection closed).
In a handler method::

    class LimitsHandler(ServiceHandler):
        async def put(self):
            self.require_admin(self.service.admin_scope)  # custom:<name>:admin or admin:servers
            body = self.get_json_body()                    # 400 on malformed or too deep JSON

Every error is JSON ``{"status": code, "message": ...}``: 401 unauthenticated, 403 under-scoped,
400 bad input, 413 body too large, 502 when the hub cannot be asked. What each scope allows is
decided in :mod:`.scopes`.
"""

from __future__ import annotations

import json
import re
from http.client import responses

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.log import app_log

from jupyterhub_lab_ext.services.common import scopes as scope_policy
from jupyterhub_lab_ext.services.common.hubapi import HubAPIError

AUTH_HEADER = re.compile(r"\s*(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)
#: methods that change nothing: their credential check may come from the short cache
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: headers of every JSON answer (they hold names and scopes: never cached on the way)
JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
#: the challenge of a 401 answer: how to authenticate here
TOKEN_CHALLENGE = 'token realm="jupyterhub"'


def error_json(status: int, message: str) -> bytes:
    """The body of every error answer."""
    return json.dumps({"status": status, "message": message}).encode()


def error_message(error: web.HTTPError) -> str:
    """What an ``HTTPError`` says to the client (its ``log_message`` with its arguments)."""
    return error.log_message % error.args if error.args else (error.log_message or "")


class JSONErrorMixin:
    """Render every error as ``{"status": code, "message": ...}``."""

    def log_exception(self, typ, value, tb):
        if isinstance(value, HubAPIError):
            app_log.warning("%s %s: %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            return  # the access log has it; the message went to the client
        super().log_exception(typ, value, tb)

    def write_error(self, status_code, **kwargs):
        message = responses.get(status_code, "Unknown error")
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, web.HTTPError):
            message = error_message(exc) or message
        elif isinstance(exc, HubAPIError):
            # the hub failed us: a gateway problem, not a bug here
            status_code = 404 if exc.status == 404 else 502
            message = f"Hub API error: {exc}"
            self.set_status(status_code)
        elif status_code >= 500:
            message = "Internal error; see the service log"
        self.clear_header("Location")
        self.set_error_headers(status_code)
        self.finish(error_json(status_code, message))

    def set_error_headers(self, status: int) -> None:
        for name, value in JSON_HEADERS:
            self.set_header(name, value)
        if status == 401:
            self.set_header("WWW-Authenticate", TOKEN_CHALLENGE)


@web.stream_request_body
class ServiceHandler(JSONErrorMixin, HubOAuthenticated, web.RequestHandler):
    """Base handler: authenticates in ``prepare`` unless ``public`` is True; capped body."""

    #: no authentication at all (health, OpenAPI document)
    public = False

    @property
    def service(self):
        """The :class:`~jupyterhub_lab_ext.services.common.app.ServiceApp` serving this request."""
        return self.settings["service_app"]

    @property
    def hub(self):
        return self.settings["hub"]

    @property
    def log(self):
        return self.service.log

    @property
    def hub_auth(self):
        return self.settings.get("hub_auth")

    @hub_auth.setter
    def hub_auth(self, value):  # HubAuthenticated defines a setter; ours comes from settings
        raise AttributeError("hub_auth comes from the application settings")

    @property
    def service_name(self) -> str:
        return self.settings["service_name"]

    def set_default_headers(self):
        for name, value in JSON_HEADERS:
            self.set_header(name, value)

    def get_current_user(self):
        # identification happens in prepare(); never fall back to HubAuth's blocking sync path
        return None

    def check_xsrf_cookie(self):
        # cookie-authenticated writes are xsrf-checked by HubOAuth during prepare()
        if self.hub_auth is not None:
            return super().check_xsrf_cookie()

    @property
    def max_body_size(self) -> int:
        return self.service.max_body_size

    def _body_too_large(self) -> web.HTTPError:
        return web.HTTPError(
            413, f"Request body larger than {self.max_body_size} bytes (max_body_size)"
        )

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        self._body = bytearray()
        self._body_refused = False

    async def prepare(self):
        try:
            await self.check_request()
        except web.HTTPError as e:
            if not self._body_unread():
                raise
            self._answer_early(e)

    async def check_request(self) -> None:
        """Everything decided before the body: its declared size, who calls, what they may do."""
        if self.public:
            return
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise web.HTTPError(400, "Malformed Content-Length") from None
            if size > self.max_body_size:
                raise self._body_too_large()
        model = await self.authenticate()
        if model is None:
            if (
                self.request.method in ("GET", "HEAD")
                and self.hub_auth is not None
                and "text/html" in self.request.headers.get("Accept", "")
            ):
                self.redirect(self.get_login_url())
                return
            raise web.HTTPError(
                401, "Authentication required: send 'Authorization: token <hub token>'"
            )
        model.setdefault("kind", "user")
        self.current_user = model
        self.authorize()

    def _answer_early(self, error: web.HTTPError) -> None:
        """Send the refusal now and discard the body as it arrives.

        Closing the connection with the body unread makes the kernel reset it, and a proxy in
        between (configurable-http-proxy) may then lose the answer and say 503 instead. So the
        complete answer goes out at once, the body is read and thrown away (never kept; bounded
        by the HTTP server's ``max_body_size`` and ``body_timeout``), and the request finishes
        when the body is in, which keeps the connection usable.
        """
        self._body_refused = True
        self._body = bytearray()
        payload = error_json(error.status_code, error_message(error))
        self.clear()
        self.set_status(error.status_code)
        self.set_error_headers(error.status_code)
        self.set_header("Content-Length", str(len(payload)))
        self.write(payload)
        self.flush()
        # whatever the method, the request ends once tornado has the body
        setattr(self, self.request.method.lower(), self._finish_refused)

    def _finish_refused(self, *args, **kwargs) -> None:
        self.finish()

    def authorize(self) -> None:
        """Called once the caller is known, before the body is read.

        Default: read access for every request, and the service's admin scope (see
        :mod:`.scopes`) for every change (any method but GET/HEAD/OPTIONS).
        """
        self.require_read()
        if self.request.method not in SAFE_METHODS:
            self.require_admin(getattr(self.service, "admin_scope", None))

    def data_received(self, chunk: bytes) -> None:
        if self._finished or self._body_refused:
            return  # an early answer went out: discard
        if len(self._body) + len(chunk) > self.max_body_size:
            # undeclared (chunked) or lying Content-Length
            self._answer_early(self._body_too_large())
            return
        self._body += chunk

    def _body_unread(self) -> bool:
        pending = getattr(self.request, "_body_future", None)
        return pending is not None and not pending.done()

    @property
    def body(self) -> bytes:
        """The request body (complete once a handler method runs)."""
        return bytes(self._body)

    async def authenticate(self) -> dict | None:
        fresh = self.request.method not in SAFE_METHODS
        header = self.request.headers.get("Authorization", "")
        try:
            if header:
                m = AUTH_HEADER.match(header)
                if not m:
                    return None
                model = await self.hub.token_owner(m.group(1), fresh=fresh)
                if model:
                    self._token_authenticated = True
                return model
            if self.hub_auth is not None:
                # xsrf-checked for changes, cached for cache_max_age (= auth_cache_ttl)
                model = await self.hub_auth.get_user(self, sync=False)
                if model and fresh:
                    token = self.hub_auth.get_token(self, in_cookie=True)
                    model = await self.hub.token_owner(token, fresh=True) if token else None
                return model
        except HubAPIError as e:
            self.log.warning("Could not identify caller with the hub: %s", e)
            raise web.HTTPError(502, "Could not reach the hub to check the token") from None
        except web.HTTPError as e:
            if e.status_code >= 500:
                raise web.HTTPError(502, "Could not reach the hub to check the cookie") from None
            raise
        return None

    # -- scopes ----------------------------------------------------------------------------
    @property
    def scopes(self) -> set[str]:
        """The scopes of the credential of this request (never its owner's)."""
        return set((self.current_user or {}).get("scopes") or ())

    @property
    def read_scope(self) -> str:
        return scope_policy.read_scope(self.service_name)

    def has_read(self) -> bool:
        return scope_policy.can_read(self.scopes, self.service_name)

    def is_admin(self, custom_scope: str | None = None) -> bool:
        """True when the credential may change things here (see :mod:`.scopes`)."""
        return scope_policy.can_change(self.scopes, self.service_name, custom_scope)

    def require_read(self) -> None:
        """403 unless the credential has ``access:services!service=<name>`` (or broader)."""
        if not self.has_read():
            raise web.HTTPError(403, f"Requires scope {self.read_scope} on the token")

    def require_admin(self, custom_scope: str | None = None) -> None:
        """403 unless the credential has read access and ``custom_scope`` or admin:servers."""
        if not self.is_admin(custom_scope):
            wanted = custom_scope or scope_policy.admin_scope(self.service_name)
            raise web.HTTPError(
                403,
                f"Requires scope {wanted} (or {scope_policy.IMPLYING_SCOPE}) and "
                f"{self.read_scope} on the token",
            )

    # -- JSON helpers ----------------------------------------------------------------------
    def get_json_body(self, required: bool = True):
        """The parsed JSON body; 400 if malformed, nested too deep, or missing and ``required``."""
        raw = self.body
        if not raw or not raw.strip():
            if required:
                raise web.HTTPError(400, "Request body must be a JSON object")
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise web.HTTPError(400, f"Malformed JSON body: {e}") from None
        except RecursionError:
            raise web.HTTPError(400, "Malformed JSON body: nested too deeply") from None

    def write_json(self, obj, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, default=str))


@web.stream_request_body
class OAuthCallbackHandler(JSONErrorMixin, HubOAuthCallbackHandler):
    """Completes the hub OAuth flow at ``{prefix}oauth_callback`` (sets the service cookie)."""

    def data_received(self, chunk: bytes) -> None:
        pass  # the callback is a GET: a body is thrown away as it arrives, never kept

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value):
        raise AttributeError("hub_auth comes from the application settings")

    async def prepare(self):
        # resolve any existing cookie asynchronously so the parent never blocks the loop
        self._hub_auth_user_cache = await self.hub_auth.get_user(self, sync=False)


class NotFoundHandler(ServiceHandler):
    public = True

    async def check_request(self):
        raise web.HTTPError(404, f"No such endpoint: {self.request.path}")
