"""The hub side of the user-limit service: what the hub runs for each spawn, stop and login.

:func:`~jupyterhub_lab_ext.services.user_limit.hubconfig.enable_user_limit` installs it. The
admission of a spawn is asked at the earliest point of JupyterHub's ``User.spawn()`` that knows
the spawn's options: the hub calls ``Spawner.oauth_client_allowed_scopes`` after it has created
the server's API token and before it creates the server's OAuth client and enters the part of the
spawn that a failure must undo with ``User.stop()`` (authenticator ``pre_spawn_start``,
``auth_state_hook``, ``pre_spawn_hook``, ``Spawner.start``). A refused or queued spawn is undone
right there (its API token and server row deleted, one commit) and costs the hub little more than
JupyterHub's own ``active_server_limit`` refusal; see ``docs/user-limit.md`` for what this relies
on in JupyterHub.

- queued (the hub is full): JupyterHub's ``SpawnException`` with status 429, ``Retry-After`` and
  the place in line; the page sends the person to the live queue page, and the service starts
  the server when a place frees up;
- refused (``max_servers_per_user``): 403;
- ``post_stop_hook`` frees the place when the server stops or its spawn fails;
- ``post_auth_hook`` refuses a new user at login when all seats are taken.

When the service cannot be reached, ``fail_open=False`` refuses spawns with a clear message and
logs an error; True lets them through (and logs an error too).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from urllib.parse import quote

from jupyterhub import orm
from jupyterhub.utils import maybe_future
from tornado import web

from jupyterhub_lab_ext.services.user_limit.client import ServiceClient, ServiceUnavailable

log = logging.getLogger("jupyterhub_lab_ext.user_limit.hook")

#: the spawner attribute holding the spawn's admission id (None: refused, queued or let through
#: unchecked; missing: the admission point was not reached)
ATTR = "_jhle_user_limit_admission"
_MISSING = object()

#: JupyterHub's setting (in ``c.JupyterHub.tornado_settings``, default 10 s) after which its REST
#: API answers a spawn that has not finished ``202``; None: the answer waits for the outcome
SLOW_SPAWN_TIMEOUT = "slow_spawn_timeout"

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException
except ImportError:  # pragma: no cover - JupyterHub 5
    SpawnException = None


def _refusal(message: str, *, reason: str, status: int, message_html: str = "", headers=None):
    """A ``SpawnException`` (JupyterHub 6) or an ``HTTPError`` carrying the hub's message attributes."""
    if SpawnException is not None:
        exc = SpawnException(message, reason=reason, status_code=status, message_html=message_html)
    else:  # pragma: no cover - JupyterHub 5
        exc = web.HTTPError(status, message)
        exc.reason = reason
    exc.jupyterhub_message = message
    if message_html:
        exc.jupyterhub_html_message = message_html
    if headers:
        exc.headers = dict(headers)
    return exc


def _log_of(obj) -> logging.Logger:
    """The hub's logger (spawners and authenticators carry it), else this module's."""
    lg = getattr(obj, "log", None)
    return lg if isinstance(lg, logging.Logger | logging.LoggerAdapter) else log


def _json_safe(value) -> dict:
    if not isinstance(value, dict):
        return {}
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return {}


def undo_spawn(spawner) -> None:
    """Undo what ``User.spawn()`` made before the admission point, as ``User.stop()`` would: the
    server's API token and its server row (no OAuth client exists yet, nothing was started)."""
    db = spawner.db
    token = orm.APIToken.find(db, spawner.api_token) if spawner.api_token else None
    if token is not None:
        db.delete(token)
    spawner.server = None  # deletes the server row
    spawner.handler = None  # User.spawn() clears it only on its own error path
    db.commit()


class UserLimitHook:
    """The hub's calls to the service plus their client; ``enable_user_limit`` wires them in.

    :param service_url: where the hub reaches the service directly, including its prefix,
        e.g. ``http://127.0.0.1:10102/services/user-limit/``.
    :param token: the shared hook secret the service expects, or a callable returning it.
    :param public_prefix: the service's prefix as browsers see it (for the queue page link).
    :param fail_open: let spawns and logins through when the service cannot be reached.
    :param timeout: seconds per request; ``retries``: extra attempts on connection errors and 5xx.
    :param undo: undoes a spawn refused at the admission point (:func:`undo_spawn`).
    """

    def __init__(
        self,
        service_url: str,
        token: str | Callable[[], str],
        *,
        public_prefix: str = "/services/user-limit/",
        fail_open: bool = False,
        timeout: float = 5.0,
        retries: int = 2,
        check_seats: bool = True,
        undo: Callable[[object], None] = undo_spawn,
    ):
        self.service_url = service_url.rstrip("/") + "/"
        self._token = token
        self.public_prefix = "/" + public_prefix.strip("/") + "/"
        self.fail_open = fail_open
        self.timeout = timeout
        self.retries = retries
        self.check_seats = check_seats
        self.undo = undo
        self._client: ServiceClient | None = None
        self._answer_checked = False
        self._fallback_warned = False

    # traitlets deep-copies config values for every new Spawner; the hooks are bound methods of
    # this object, so without these each spawner would get its own copy (and HTTP client)
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @property
    def token(self) -> str:
        """The shared hook secret; a callable given as ``token`` is called once, at first use
        (in the hub process, so that loading the config reads and writes nothing)."""
        if callable(self._token):
            self._token = self._token()
        return self._token

    @property
    def client(self) -> ServiceClient:
        if self._client is None:
            self._client = ServiceClient(
                self.service_url + "api/", self.token, timeout=self.timeout, retries=self.retries
            )
        return self._client

    async def _call(self, method: str, path: str, *, json=None, ok=(200,)):
        status, doc = await self.client.request(method, path, json)
        if status not in ok:
            message = doc.get("message", "") if isinstance(doc, dict) else ""
            raise ServiceUnavailable(f"{method} {path} -> {status} {message}".strip(), status)
        return status, doc

    def queue_url(self, server_name: str) -> str:
        url = self.public_prefix + "queue"
        if server_name:
            url += "?server=" + quote(server_name, safe="")
        return url

    # -- spawns ----------------------------------------------------------------------------
    async def admit(self, spawner, *, undo: bool = True) -> None:
        """Ask the service whether this spawn may go ahead; raise to refuse or queue it.

        ``undo``: undo the spawn before raising (at the admission point; the hub itself undoes
        a spawn that fails later, in ``pre_spawn_hook``).
        """
        setattr(spawner, ATTR, None)
        self._check_answer_waits(spawner)
        try:
            doc = await self._ask(spawner)
        except ServiceUnavailable as e:
            refusal = self._unreachable("spawn", spawner.user.name, e, _log_of(spawner))
            if refusal is None:
                return  # fail open
        else:
            if doc.get("outcome") == "admitted":
                setattr(spawner, ATTR, doc.get("id"))
                return
            refusal = self._refusal_of(doc, spawner.name or "")
        if undo:
            self.undo(spawner)
        raise refusal

    async def _ask(self, spawner) -> dict:
        user = spawner.user
        body = {
            "user": user.name,
            "server_name": spawner.name or "",
            "groups": sorted(g.name for g in (user.groups or [])),
            "admin": bool(user.admin),
            "user_options": _json_safe(spawner.user_options),
        }
        _, doc = await self._call("POST", "admissions", json=body)
        if not isinstance(doc, dict):
            raise ServiceUnavailable("POST admissions: no JSON body")
        return doc

    def _refusal_of(self, doc: dict, server_name: str) -> Exception:
        message = doc.get("message") or "The hub cannot start your server right now."
        if doc.get("outcome") != "queued":
            return _refusal(message, reason=str(doc.get("reason") or "limit"), status=403)
        position = doc.get("position") or 0
        retry = int(doc.get("retry_after") or 30)
        url = self.queue_url(server_name)
        page = html.escape(url, quote=True)
        message_html = (
            f"{html.escape(message)} "
            f'<a href="{page}">Follow your place in line</a>; this page takes you there.'
            f'<meta http-equiv="refresh" content="1;url={page}">'
        )
        headers = {
            "Retry-After": str(retry),
            "X-JupyterHub-Queue-Position": str(position),
            # browsers go on to the queue page from whichever hub page shows the refusal:
            # the spawn form shows only the plain message (JupyterHub 6.1 drops the HTML
            # one there), the error page both; API clients ignore it
            "Refresh": f"1; url={url}",
        }
        return _refusal(
            message, reason="capacity", status=429, message_html=message_html, headers=headers
        )

    async def pre_spawn_hook(self, spawner) -> None:
        """A safety net: decide here (after the OAuth client, like any ``pre_spawn_hook``) when
        the admission point did not run, so that limits hold on a JupyterHub that no longer
        calls ``oauth_client_allowed_scopes`` where this package expects it."""
        if hasattr(spawner, ATTR):
            return
        if not self._fallback_warned:
            self._fallback_warned = True
            _log_of(spawner).warning(
                "user-limit: the admission point (Spawner.oauth_client_allowed_scopes) did not "
                "run before pre_spawn_hook; deciding in pre_spawn_hook instead, which costs the "
                "hub an OAuth client per refused spawn (see docs/user-limit.md)"
            )
        await self.admit(spawner, undo=False)

    def _check_answer_waits(self, spawner) -> None:
        """Warn once if the hub may answer REST spawns before their admission is decided."""
        if self._answer_checked:
            return
        handler = getattr(spawner, "handler", None)
        settings = getattr(handler, "settings", None)
        if not isinstance(settings, dict):
            return  # not spawned through a hub request handler
        self._answer_checked = True
        limit = settings.get(SLOW_SPAWN_TIMEOUT, 10)
        if limit is not None:
            _log_of(spawner).warning(
                "c.JupyterHub.tornado_settings[%r] is %s: on a busy hub a REST spawn can be "
                "answered 202 before the user-limit service has decided it, and then be queued "
                "or refused; set it to None (enable_user_limit does, unless you set it)",
                SLOW_SPAWN_TIMEOUT,
                limit,
            )

    def _unreachable(self, what: str, user: str, error: Exception, lg=log) -> Exception | None:
        """Log that the service cannot be reached; the refusal to raise (None: fail open)."""
        if self.fail_open:
            lg.error(
                "USER-LIMIT SERVICE UNREACHABLE (%s): letting the %s of user=%s through "
                "(fail_open=True); limits are NOT enforced",
                error,
                what,
                user,
            )
            return None
        lg.error(
            "USER-LIMIT SERVICE UNREACHABLE (%s): refusing the %s of user=%s (fail_open=False)",
            error,
            what,
            user,
        )
        return _refusal(
            "The service that shares this hub's capacity cannot be reached, so new servers "
            "cannot be started right now. Please try again in a minute; the hub's administrators "
            "have been notified in the hub log.",
            reason="user-limit-unavailable",
            status=503,
            headers={"Retry-After": "30"},
        )

    async def post_stop_hook(self, spawner) -> None:
        """Free the place of a stopped server (or of a spawn that failed)."""
        aid = getattr(spawner, ATTR, _MISSING)
        if aid is None:
            return  # refused or queued: it never held a place
        ids = [aid] if aid is not _MISSING else None
        try:
            if ids is None:
                # the hub restarted since the spawn: find the place by user and server
                _, doc = await self._call("GET", f"users/{quote(spawner.user.name, safe='')}")
                ids = [
                    a["id"]
                    for a in (doc or {}).get("admissions", [])
                    if a.get("server_name") == (spawner.name or "") and a.get("state") != "reserved"
                ]
            for i in ids:
                await self._call("DELETE", f"admissions/{quote(str(i), safe='')}", ok=(204, 404))
        except ServiceUnavailable as e:
            _log_of(spawner).error(
                "Could not free the place of user=%s server=%r (%s); the service frees it at its "
                "next reconciliation",
                spawner.user.name,
                spawner.name,
                e,
            )
        finally:
            if hasattr(spawner, ATTR):
                delattr(spawner, ATTR)

    # -- logins ----------------------------------------------------------------------------
    async def post_auth_hook(self, authenticator, handler, auth_model):
        """Refuse a login when all seats are taken (``max_users``); users the hub knows pass."""
        if not auth_model or not self.check_seats:
            return auth_model
        name = auth_model["name"]
        find_user = getattr(handler, "find_user", None)
        existing = find_user is not None and find_user(name) is not None
        lg = _log_of(authenticator)
        body = {
            "kind": "seat",
            "user": name,
            "admin": bool(auth_model.get("admin")),
            "existing": existing,
        }
        try:
            _, doc = await self._call("POST", "admissions", json=body)
        except ServiceUnavailable as e:
            if self.fail_open:
                lg.error(
                    "USER-LIMIT SERVICE UNREACHABLE (%s): login of user=%s let through", e, name
                )
                return auth_model
            lg.error("USER-LIMIT SERVICE UNREACHABLE (%s): login of user=%s refused", e, name)
            exc = web.HTTPError(503, "user-limit service unreachable")
            exc.jupyterhub_message = (
                "Logins are paused because the service that manages this hub's seats cannot be "
                "reached. Please try again in a minute."
            )
            raise exc from None
        if isinstance(doc, dict) and doc.get("outcome") == "refused":
            lg.warning("Login of user=%s refused: %s", name, doc.get("limit"))
            exc = web.HTTPError(403, "no free seat")
            exc.jupyterhub_message = doc.get("message") or "This hub is full."
            raise exc
        return auth_model


class AdmissionPoint(list):
    """The value of ``c.Spawner.oauth_client_allowed_scopes`` that decides each spawn.

    JupyterHub calls the trait's value (when callable) with the spawner just before it creates the
    server's OAuth client; this one first asks the service (:meth:`UserLimitHook.admit`), then
    returns the scopes the admin configured (``scopes``, or the result of their own callable
    ``theirs``). It is a list of those scopes too, because JupyterHub also writes the trait's
    value into the server's environment as JSON (``$JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES``),
    and it is always true, because JupyterHub calls it only when it is.
    """

    def __init__(self, hook: UserLimitHook, scopes=(), theirs: Callable | None = None):
        super().__init__(scopes)
        self.hook = hook
        self.theirs = theirs

    def __bool__(self) -> bool:
        return True

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    async def __call__(self, spawner) -> list:
        await self.hook.admit(spawner)
        if self.theirs is not None:
            return list(await maybe_future(self.theirs(spawner)))
        return list(self)
