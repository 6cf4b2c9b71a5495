"""Request authentication and scope checks for the services' tornado handlers.

Subclass :class:`ServiceHandler`. Its ``async prepare()`` identifies the caller with a hub token
(``Authorization: token|bearer ...``, resolved by ``HubAPI.token_owner`` with a cache) or, for
browsers, with the hub OAuth cookie (``jupyterhub.services.auth.HubOAuth``, async paths only).
Then, in a handler method::

    class StatusHandler(ServiceHandler):
        async def get(self):
            self.require_read()                       # access:services!service=<name>
            self.write_json({...})

        async def put(self, name):
            self.require_admin("custom:culler:admin")  # the custom scope or hub admin
            body = self.get_json_body()                # 400 on malformed JSON

Every error is JSON ``{"status": code, "message": ...}``: 401 unauthenticated, 403 under-scoped,
400 bad input, 502 when the hub cannot be asked.
"""

from __future__ import annotations

import json
import re
from http.client import responses

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, check_scopes
from tornado import web
from tornado.log import app_log

from ...hubapi import HubAPIError

AUTH_HEADER = re.compile(r"\s*(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)


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
            if exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
        elif isinstance(exc, HubAPIError):
            # the hub failed us: a gateway problem, not a bug here
            status_code = 404 if exc.status == 404 else 502
            message = f"Hub API error: {exc}"
            self.set_status(status_code)
        elif status_code >= 500:
            message = "Internal error; see the service log"
        self.clear_header("Location")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'token realm="jupyterhub"')
        self.finish(json.dumps({"status": status_code, "message": message}))


class ServiceHandler(JSONErrorMixin, HubOAuthenticated, web.RequestHandler):
    """Base handler: authenticates in ``prepare`` unless ``public`` is True."""

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
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def get_current_user(self):
        # identification happens in prepare(); never fall back to HubAuth's blocking sync path
        return None

    def check_xsrf_cookie(self):
        # cookie-authenticated writes are xsrf-checked by HubOAuth during prepare()
        if self.hub_auth is not None:
            return super().check_xsrf_cookie()

    async def prepare(self):
        if self.public:
            return
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

    async def authenticate(self) -> dict | None:
        header = self.request.headers.get("Authorization", "")
        try:
            if header:
                m = AUTH_HEADER.match(header)
                if not m:
                    return None
                model = await self.hub.token_owner(m.group(1))
                if model:
                    self._token_authenticated = True
                return model
            if self.hub_auth is not None:
                return await self.hub_auth.get_user(self, sync=False)
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
        return set((self.current_user or {}).get("scopes") or ())

    @property
    def read_scope(self) -> str:
        return f"access:services!service={self.service_name}"

    def has_read(self) -> bool:
        return bool(check_scopes({self.read_scope}, self.scopes))

    def is_admin(self, custom_scope: str | None = None) -> bool:
        user = self.current_user or {}
        if user.get("kind", "user") == "user" and user.get("admin"):
            return True
        return bool(custom_scope and custom_scope in self.scopes)

    def require_read(self) -> None:
        """403 unless the caller has ``access:services!service=<name>`` (or broader)."""
        if not (self.has_read() or self.is_admin()):
            raise web.HTTPError(403, f"Requires scope {self.read_scope}")

    def require_admin(self, custom_scope: str | None = None) -> None:
        """403 unless the caller is a hub admin or has ``custom_scope``."""
        if not self.is_admin(custom_scope):
            need = f"scope {custom_scope} or hub admin" if custom_scope else "hub admin"
            raise web.HTTPError(403, f"Requires {need}")

    # -- JSON helpers ----------------------------------------------------------------------
    def get_json_body(self, required: bool = True):
        """The parsed JSON body; 400 if malformed (or missing and ``required``)."""
        raw = self.request.body
        if not raw or not raw.strip():
            if required:
                raise web.HTTPError(400, "Request body must be a JSON object")
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise web.HTTPError(400, f"Malformed JSON body: {e}") from None

    def write_json(self, obj, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, default=str))


class OAuthCallbackHandler(JSONErrorMixin, HubOAuthCallbackHandler):
    """Completes the hub OAuth flow at ``{prefix}oauth_callback`` (sets the service cookie)."""

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

    def prepare(self):
        raise web.HTTPError(404, f"No such endpoint: {self.request.path}")
