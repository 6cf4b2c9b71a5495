"""Hub-side admission for the user-limit service: one line in ``jupyterhub_config.py``.

::

    from jupyterhub_lab_ext.services.user_limit.hook import enable_user_limit
    enable_user_limit(c, max_active_servers=40, group_quotas={"students": 30}, max_users=200)

This adds the managed service ``user-limit`` (with its role, a custom admin scope and read access
for every user) and three hooks that work with any spawner:

- ``Spawner.pre_spawn_hook`` asks the service before every spawn (default or named server, from
  the UI, the REST API or the service itself). When the hub is full it raises JupyterHub's
  ``SpawnException`` with status 429, ``Retry-After`` and the place in line; the page sends the
  person to the live queue page, and the service starts the server when a place frees up;
- ``Spawner.post_stop_hook`` frees the place when the server stops or its spawn fails;
- ``Authenticator.post_auth_hook`` refuses a new user at login when all seats are taken.

Existing hooks in ``c`` are kept and run after ours. When the service cannot be reached,
``fail_open=False`` (default) refuses spawns with a clear message and logs an error; True lets
them through (and logs an error too).

It also makes the hub's REST answer to a spawn wait for the spawn's outcome
(``c.JupyterHub.tornado_settings["slow_spawn_timeout"] = None``): JupyterHub otherwise answers
``202`` after 10 s whatever is still undecided, and on a loaded hub the admission may be decided
later, so a spawn answered ``202`` would then be queued or refused.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import sys
import warnings
from urllib.parse import quote

from tornado import web

from jupyterhub_lab_ext.services.common import hubconfig
from jupyterhub_lab_ext.services.user_limit.client import ServiceClient, ServiceUnavailable
from jupyterhub_lab_ext.util.secretfile import read_or_create_secret

log = logging.getLogger("jupyterhub_lab_ext.user_limit.hook")

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


class UserLimitHook:
    """The hook callables plus their client; :func:`enable_user_limit` wires them into ``c``.

    :param service_url: where the hub reaches the service directly, including its prefix,
        e.g. ``http://127.0.0.1:10102/services/user-limit/``.
    :param token: the shared hook secret the service expects, or a callable returning it.
    :param public_prefix: the service's prefix as browsers see it (for the queue page link).
    :param fail_open: let spawns and logins through when the service cannot be reached.
    :param timeout: seconds per request; ``retries``: extra attempts on connection errors and 5xx.
    """

    def __init__(
        self,
        service_url: str,
        token: str,
        *,
        public_prefix: str = "/services/user-limit/",
        fail_open: bool = False,
        timeout: float = 5.0,
        retries: int = 2,
        check_seats: bool = True,
    ):
        self.service_url = service_url.rstrip("/") + "/"
        self._token = token
        self.public_prefix = "/" + public_prefix.strip("/") + "/"
        self.fail_open = fail_open
        self.timeout = timeout
        self.retries = retries
        self.check_seats = check_seats
        self._client: ServiceClient | None = None
        self._answer_checked = False

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
    async def pre_spawn_hook(self, spawner) -> None:
        """Ask the service whether this spawn may go ahead; raise to refuse or queue it."""
        setattr(spawner, ATTR, None)
        self._check_answer_waits(spawner)
        user = spawner.user
        body = {
            "user": user.name,
            "server_name": spawner.name or "",
            "groups": sorted(g.name for g in (user.groups or [])),
            "admin": bool(user.admin),
            "user_options": _json_safe(spawner.user_options),
        }
        try:
            _, doc = await self._call("POST", "admissions", json=body)
        except ServiceUnavailable as e:
            self._unreachable("spawn", user.name, e, _log_of(spawner))
            return
        if not isinstance(doc, dict):
            error = ServiceUnavailable("POST admissions: no JSON body")
            self._unreachable("spawn", user.name, error, _log_of(spawner))
            return
        outcome = doc.get("outcome")
        message = doc.get("message") or "The hub cannot start your server right now."
        if outcome == "admitted":
            setattr(spawner, ATTR, doc.get("id"))
            return
        if outcome == "queued":
            position = doc.get("position") or 0
            retry = int(doc.get("retry_after") or 30)
            url = self.queue_url(spawner.name or "")
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
            raise _refusal(
                message, reason="capacity", status=429, message_html=message_html, headers=headers
            )
        raise _refusal(message, reason=str(doc.get("reason") or "limit"), status=403)

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

    def _unreachable(self, what: str, user: str, error: Exception, lg=log) -> None:
        if self.fail_open:
            lg.error(
                "USER-LIMIT SERVICE UNREACHABLE (%s): letting the %s of user=%s through "
                "(fail_open=True); limits are NOT enforced",
                error,
                what,
                user,
            )
            return
        lg.error(
            "USER-LIMIT SERVICE UNREACHABLE (%s): refusing the %s of user=%s (fail_open=False)",
            error,
            what,
            user,
        )
        raise _refusal(
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
        existing = False
        find_user = getattr(handler, "find_user", None)
        if find_user is not None:
            existing = find_user(name) is not None
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


def _chain(ours, theirs, *, first_ours: bool = True):
    """One hook that runs ``ours`` and an existing hook (both may be async)."""
    if theirs is None:
        return ours
    from jupyterhub.utils import maybe_future

    async def both(*args):
        if first_ours:
            result = await maybe_future(ours(*args))
            other = await maybe_future(theirs(*args))
        else:
            other = await maybe_future(theirs(*args))
            result = await maybe_future(ours(*args))
        return other if other is not None else result

    return both


def _chain_auth(ours, theirs):
    if theirs is None:
        return ours
    from jupyterhub.utils import maybe_future

    async def both(authenticator, handler, auth_model):
        auth_model = await maybe_future(ours(authenticator, handler, auth_model))
        return await maybe_future(theirs(authenticator, handler, auth_model))

    return both


def _answer_after_admission(c) -> None:
    """Let the hub's REST answer to a spawn wait for its outcome, so that it is never ``202``
    for a spawn the service then queues or refuses (kept, with a warning, if you set it)."""
    settings = dict(hubconfig.existing(c.JupyterHub, "tornado_settings", {}))
    if settings.get(SLOW_SPAWN_TIMEOUT, None) is not None:
        warnings.warn(
            f"enable_user_limit: keeping your tornado_settings[{SLOW_SPAWN_TIMEOUT!r}] = "
            f"{settings[SLOW_SPAWN_TIMEOUT]!r}: a REST spawn still undecided after that long is "
            "answered 202 and may then be queued or refused (None makes the answer exact)",
            stacklevel=3,
        )
        return
    settings[SLOW_SPAWN_TIMEOUT] = None
    c.JupyterHub.tornado_settings = settings


def enable_user_limit(
    c,
    *,
    name: str = "user-limit",
    url: str = "http://127.0.0.1:10102",
    managed: bool = True,
    api_token: str | None = None,
    hook_token: str | None = None,
    hook_token_file: str = "jupyterhub-user-limit-hook-token",
    fail_open: bool = False,
    check_seats: bool = True,
    timeout: float = 5.0,
    db_url: str | None = None,
    environment: dict | None = None,
    admin_scope: str = "custom:user-limit:admin",
    service_options: dict | None = None,
    **settings,
) -> UserLimitHook:
    """Enable the user-limit service and its hub-side hooks in a hub config ``c``.

    ``settings`` are ``UserLimitApp`` options for the managed service, e.g.
    ``max_active_servers=40, max_users=200, group_quotas={"students": 30},
    max_servers_per_user=2, exempt_admins=False, reconcile_interval=60``.

    Loading the config reads and writes nothing: the hook secret file is read (or created) in
    the hub, when the service starts or the hook first runs.

    :param name: service name (URL prefix ``/services/<name>/``).
    :param url: where the service listens (127.0.0.1 and a free port).
    :param managed: let the hub start and restart the service. False: you run it (e.g. as its
        own systemd unit) and pass ``api_token`` (the hub token of the service) and
        ``hook_token``, the same values as the service's ``JUPYTERHUB_API_TOKEN`` and
        ``JUPYTERHUB_USER_LIMIT_HOOK_TOKEN``. The service then takes its limits and database
        from its own command line: ``settings``, ``db_url``, ``environment`` and the
        ``service_options`` ``command``/``environment``/``user``/``cwd`` are a ``ValueError``.
        Empty secrets only warn (admin commands load the config without them). The hub waits
        at most 2 s for the external service at start (JupyterHub >= 6).
    :param hook_token: shared secret between hook and service; default (managed): read from
        (or created 0600 in) ``hook_token_file``.
    :param fail_open: what to do when the service cannot be reached (see the module docs).
    :param db_url: the service's database (default: ``sqlite:///user-limit.sqlite`` in the hub's
        working directory; ``postgresql://...`` works too).
    :param service_options: extra keys for the hub's service entry, e.g. ``{"timeout": 60}``.
    :returns: the :class:`UserLimitHook` (its ``pre_spawn_hook`` etc. are already set in ``c``).
    """
    if managed and hook_token is None:
        # read (or created) in the hub when the service starts or the hook first runs, never
        # while the config loads: admin commands load it too (services/common/hubconfig.py)
        hook_token = functools.partial(read_or_create_secret, hook_token_file)
    base_url = hubconfig.existing(c.JupyterHub, "base_url", "/")
    base_url = "/" + str(base_url).strip("/") + "/" if str(base_url).strip("/") else "/"
    prefix = f"{base_url}services/{name}/"
    hook = UserLimitHook(
        url.rstrip("/") + prefix,
        hook_token or "",
        public_prefix=prefix,
        fail_open=fail_open,
        timeout=timeout,
        check_seats=check_seats,
    )
    _answer_after_admission(c)
    c.Spawner.pre_spawn_hook = _chain(
        hook.pre_spawn_hook, hubconfig.existing(c.Spawner, "pre_spawn_hook")
    )
    c.Spawner.post_stop_hook = _chain(
        hook.post_stop_hook, hubconfig.existing(c.Spawner, "post_stop_hook"), first_ours=False
    )
    if check_seats:
        c.Authenticator.post_auth_hook = _chain_auth(
            hook.post_auth_hook, hubconfig.existing(c.Authenticator, "post_auth_hook")
        )

    service = {"name": name, "url": url, **hubconfig.browser_oauth(name, admin_scope)}
    if managed:
        env = {"JUPYTERHUB_USER_LIMIT_HOOK_TOKEN": hubconfig.ResolvedAtStart(lambda: hook.token)}
        app_settings = dict(settings, admin_scope=admin_scope)
        if db_url:
            app_settings["db_url"] = db_url
        env["JUPYTERHUB_USER_LIMIT_SETTINGS"] = json.dumps(app_settings)
        env.update(environment or {})
        service["command"] = [sys.executable, "-m", "jupyterhub_lab_ext.services.user_limit"]
        service["environment"] = env
        service.update(service_options or {})
    else:
        managed_only = dict(settings, db_url=db_url, environment=environment)
        hubconfig.external_service(
            "enable_user_limit",
            service,
            api_token=api_token,
            managed_only=managed_only,
            service_options=service_options,
            other_secrets={"hook_token": hook_token},
        )
    hubconfig.add_service(c, service)

    major = hubconfig.jupyterhub_major()
    start_scope = "start:servers" if major >= 6 else "servers"
    role = {
        "name": f"{name}-service",
        "description": "The user-limit service: reads users, groups and servers; starts queued servers.",
        "scopes": [
            "list:users",
            "read:users:name",
            "read:users:groups",
            "read:servers",
            start_scope,
        ],
        "services": [name],
    }
    hubconfig.add_role(c, role)
    hubconfig.declare_scope(c, admin_scope, "Change the limits of the user-limit service.")
    if major >= 6:
        extra = set(hubconfig.existing(c.JupyterHub, "extra_user_scopes", set()))
        extra.add(f"access:services!service={name}")
        c.JupyterHub.extra_user_scopes = extra
    return hook
