"""``enable_user_limit(c, ...)``: the user-limit service in a hub config, in one call.

In ``jupyterhub_config.py``::

    from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit

    enable_user_limit(c, {"max_active_servers": 40, "max_users": 200, "group_quotas": {"students": 30}})

adds the managed service ``user-limit`` (the hub starts it, restarts it and gives it a token; the
mapping holds its ``c.UserLimitApp`` options), a role with the hub scopes it needs, the admin
scope ``custom:user-limit:admin`` (hub admins hold it through ``admin:servers``), read access to
the service for every user (the queue page), browser logins without a consent page, and the hub
side (``hook.py``): the admission of every spawn, the release of its place when the server stops,
and the seat check at login. It works with any spawner; hooks set before the call are kept.

It also makes the hub's REST answer to a spawn wait for the spawn's outcome
(``c.JupyterHub.tornado_settings["slow_spawn_timeout"] = None``): JupyterHub otherwise answers
``202`` after 10 s whatever is still undecided, and on a loaded hub the admission may be decided
later, so a spawn answered ``202`` would then be queued or refused.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from jupyterhub.utils import maybe_future

from jupyterhub_lab_ext.services.common import hubconfig
from jupyterhub_lab_ext.services.common.scopes import admin_scope as default_admin_scope
from jupyterhub_lab_ext.services.user_limit.hook import (
    SLOW_SPAWN_TIMEOUT,
    AdmissionPoint,
    UserLimitHook,
)
from jupyterhub_lab_ext.util.secretfile import read_or_create_secret

DEFAULT_URL = "http://127.0.0.1:10102"
DEFAULT_TOKEN_FILE = "jupyterhub-user-limit-hook-token"


@dataclass(frozen=True)
class HookOptions:
    """How the hub side talks to the service.

    :param fail_open: what to do when the service cannot be reached: False (default) refuses
        spawns and logins with a clear message, True lets them through; both log an error.
    :param check_seats: install the login hook for ``max_users``.
    :param timeout: seconds per request (2 retries on connection errors and 5xx).
    :param token: the secret shared by hook and service; default (managed service): read from
        (or created 0600 in) ``token_file`` in the hub when it first needs it. With
        ``managed=False``: the service's ``$JUPYTERHUB_USER_LIMIT_HOOK_TOKEN``.
    """

    fail_open: bool = False
    check_seats: bool = True
    timeout: float = 5.0
    token: str | None = None
    token_file: str = DEFAULT_TOKEN_FILE


def _then(first, second):
    """One hook that runs ``first`` then ``second`` (both may be async; either may be None)."""
    if first is None or second is None:
        return first or second

    async def both(*args):
        result = await maybe_future(first(*args))
        other = await maybe_future(second(*args))
        return other if other is not None else result

    return both


def _chain_auth(ours, theirs):
    if theirs is None:
        return ours

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


def install_hooks(c, hook: UserLimitHook) -> None:
    """Put the hub side into ``c``, keeping what the admin configured."""
    scopes = hubconfig.existing(c.Spawner, "oauth_client_allowed_scopes", [])
    if isinstance(scopes, AdmissionPoint):  # a second call replaces the first one's
        scopes, theirs = list(scopes), scopes.theirs
    else:
        scopes, theirs = ([], scopes) if callable(scopes) else (list(scopes), None)
    c.Spawner.oauth_client_allowed_scopes = AdmissionPoint(hook, scopes, theirs)
    c.Spawner.pre_spawn_hook = _then(
        hook.pre_spawn_hook, hubconfig.existing(c.Spawner, "pre_spawn_hook")
    )
    c.Spawner.post_stop_hook = _then(
        hubconfig.existing(c.Spawner, "post_stop_hook"), hook.post_stop_hook
    )
    if hook.check_seats:
        c.Authenticator.post_auth_hook = _chain_auth(
            hook.post_auth_hook, hubconfig.existing(c.Authenticator, "post_auth_hook")
        )
    _answer_after_admission(c)


def service_role(name: str) -> dict:
    """The least-privilege role of the service: read users, groups and servers; start servers."""
    start_scope = "start:servers" if hubconfig.jupyterhub_major() >= 6 else "servers"
    return {
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


def make_hook(c, options: HookOptions, *, name: str, url: str, managed: bool) -> UserLimitHook:
    """The hub side for the service ``name`` at ``url`` (prefix after ``c.JupyterHub.base_url``)."""
    token = options.token
    if managed and token is None:
        # read (or created) in the hub when the service starts or the hook first runs, never
        # while the config loads: admin commands load it too (services/common/hubconfig.py)
        token = functools.partial(read_or_create_secret, options.token_file)
    base = str(hubconfig.existing(c.JupyterHub, "base_url", "/")).strip("/")
    prefix = f"/{base}/services/{name}/" if base else f"/services/{name}/"
    return UserLimitHook(
        url.rstrip("/") + prefix,
        token or "",
        public_prefix=prefix,
        fail_open=options.fail_open,
        timeout=options.timeout,
        check_seats=options.check_seats,
    )


def _managed_entry(entry: dict, hook: UserLimitHook, settings: dict, environment, options) -> dict:
    env = {"JUPYTERHUB_USER_LIMIT_HOOK_TOKEN": hubconfig.ResolvedAtStart(lambda: hook.token)}
    env["JUPYTERHUB_USER_LIMIT_SETTINGS"] = json.dumps(settings)
    env.update(environment or {})
    entry["command"] = [sys.executable, "-m", "jupyterhub_lab_ext.services.user_limit"]
    entry["environment"] = env
    entry.update(options or {})
    return entry


def enable_user_limit(
    c,
    settings: Mapping[str, object] | None = None,
    *,
    name: str = "user-limit",
    url: str = DEFAULT_URL,
    managed: bool = True,
    api_token: str | None = None,
    hook: HookOptions | None = None,
    admin_scope: str | None = None,
    environment: dict | None = None,
    service_options: dict | None = None,
) -> UserLimitHook:
    """Enable the user-limit service and its hub side in a hub config ``c``.

    Loading the config reads and writes nothing: the hook secret file is read (or created) in
    the hub, when the service starts or the hook first runs.

    :param settings: ``c.UserLimitApp`` options of the managed service, e.g.
        ``{"max_active_servers": 40, "max_users": 200, "group_quotas": {"students": 30},
        "db_url": "postgresql://..."}``.
    :param name: service name (URL prefix ``/services/<name>/``).
    :param url: where the service listens (127.0.0.1 and a free port).
    :param managed: let the hub start and restart the service. False: you run it (e.g. as its
        own systemd unit) with its options on its own command line, and pass ``api_token`` (the
        service's ``JUPYTERHUB_API_TOKEN``) and ``hook.token``; ``settings``, ``environment``
        and the ``service_options`` ``command``/``environment``/``user``/``cwd`` are then a
        ``ValueError``. Empty secrets only warn (admin commands load the config without them).
    :param hook: :class:`HookOptions` (failure mode, seat check, timeout, shared secret).
    :param admin_scope: the scope that may change limits (default ``custom:user-limit:admin``).
    :param service_options: extra keys for the hub's service entry, e.g. ``{"timeout": 60}``.
    :returns: the :class:`~.hook.UserLimitHook` (already wired into ``c``).
    """
    hook = hook or HookOptions()
    admin_scope = admin_scope or default_admin_scope("user-limit")
    limit_hook = make_hook(c, hook, name=name, url=url, managed=managed)
    install_hooks(c, limit_hook)
    entry = {"name": name, "url": url, **hubconfig.browser_oauth(name, admin_scope)}
    if managed:
        app_settings = dict(settings or {}, admin_scope=admin_scope)
        _managed_entry(entry, limit_hook, app_settings, environment, service_options)
    else:
        hubconfig.external_service(
            "enable_user_limit",
            entry,
            api_token=api_token,
            managed_only=dict(settings or {}, environment=environment),
            service_options=service_options,
            other_secrets={"hook_token": hook.token},
        )
    hubconfig.add_service(c, entry)
    hubconfig.add_role(c, service_role(name))
    hubconfig.declare_scope(c, admin_scope, "Change the limits of the user-limit service.")
    if hubconfig.jupyterhub_major() >= 6:
        extra = set(hubconfig.existing(c.JupyterHub, "extra_user_scopes", set()))
        extra.add(f"access:services!service={name}")
        c.JupyterHub.extra_user_scopes = extra
    return limit_hook
