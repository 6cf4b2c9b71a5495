"""Edits of a hub config ``c`` shared by the services' one-line setups.

``enable_idle_culler`` and ``enable_user_limit`` add a service, its least-privilege role and its
admin scope to ``c.JupyterHub`` without dropping what the admin configured before the call
(lazy ``.append``/``.add`` values included), and replace their own earlier entries by name, so a
second call updates rather than duplicates.

Loaded by ``jupyterhub_config.py``, so no I/O here: admin commands (``jupyterhub upgrade-db``,
``jupyterhub-lab-ext userlist check --config``) load the hub config too, in a shell that has
none of the hub's secrets, and must not write anything.
"""

from __future__ import annotations

import warnings

import jupyterhub

from jupyterhub_lab_ext.services.common import scopes

#: seconds the hub waits for an external service when it starts (JupyterHub >= 6 waits 30 by
#: default and routes nothing meanwhile, so every restart would wait for services not up yet)
EXTERNAL_SERVICE_TIMEOUT = 2
#: service entry keys that only mean something for a service the hub starts itself
MANAGED_ONLY_KEYS = frozenset({"command", "environment", "user", "cwd"})


def jupyterhub_major() -> int:
    return int(jupyterhub.__version__.split(".")[0])


class ResolvedAtStart(str):
    """A value of a managed service's ``environment`` that the hub computes when it starts the
    service: JupyterHub calls callable environment values then (``Spawner.get_env``).

    JupyterHub also stores a config service's ``environment`` in its database. As a ``str``
    (an empty one) this is stored as ``""``: a secret never lands in ``jupyterhub.sqlite``, and
    JupyterHub logs no "Non-jsonable data" warning at every start, as it would for a function.
    """

    def __new__(cls, compute):
        value = super().__new__(cls, "")
        value.compute = compute
        return value

    def __call__(self, spawner=None) -> str:
        return self.compute()


def existing(section, key, default=None):
    """A config value already set in ``section`` (lazy ``.append``/``.add`` values resolved)."""
    if key not in section:
        return default
    value = section[key]
    get_value = getattr(value, "get_value", None)
    if get_value is not None and default is not None:
        return get_value(default)
    return value


def browser_oauth(name: str, admin_scope: str) -> dict:
    """Service-entry keys for browser logins: no consent page; admins' logins carry admin power.

    The service's OAuth client may ask for its read scope, its admin scope and ``admin:servers``
    (which implies the admin scope). The hub grants each login only those its person holds: a
    plain user's login can read, a hub admin's (``admin:servers``) or a holder's of
    ``admin_scope`` can change things from the service's pages.
    """
    return {
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [
            scopes.read_scope(name),
            admin_scope,
            scopes.IMPLYING_SCOPE,
        ],
    }


def add_service(c, service: dict) -> None:
    services = list(existing(c.JupyterHub, "services", []))
    c.JupyterHub.services = [s for s in services if s.get("name") != service["name"]] + [service]


def add_role(c, role: dict) -> None:
    roles = list(existing(c.JupyterHub, "load_roles", []))
    c.JupyterHub.load_roles = [r for r in roles if r.get("name") != role["name"]] + [role]


def declare_scope(c, scope: str, description: str) -> None:
    custom = dict(existing(c.JupyterHub, "custom_scopes", {}))
    custom.setdefault(scope, {"description": description})
    c.JupyterHub.custom_scopes = custom


def external_service(
    caller: str,
    entry: dict,
    *,
    api_token: str | None,
    managed_only: dict[str, object],
    service_options: dict | None,
    other_secrets: dict[str, str | None] | None = None,
) -> dict:
    """``entry`` completed for a service that runs outside the hub (e.g. as its own unit).

    ``managed_only`` are the caller's settings that configure a service the hub starts (its
    options, database, environment): given here they would do nothing, so they are an error.
    An empty ``api_token`` (or one of ``other_secrets``, secrets the hub shares with the
    service) only warns: the config then still loads for admin commands run without the hub's
    environment; the hub registers no token for the service.
    """
    given = sorted(k for k, v in managed_only.items() if v not in (None, {}, [], ()))
    given += sorted(MANAGED_ONLY_KEYS & set(service_options or {}))
    if given:
        raise ValueError(
            f"{caller}(managed=False) got {', '.join(given)}, which configure a service the hub "
            "starts itself; an external service takes them from its own command line or config "
            "file (see example_config/systemd/)"
        )
    empty = [k for k, v in {"api_token": api_token, **(other_secrets or {})}.items() if not v]
    if empty:
        warnings.warn(
            f"{caller}(managed=False): {' and '.join(empty)} empty, so service "
            f"{entry['name']!r} and the hub cannot authenticate each other (are the variables "
            "holding them set in the hub's environment file?)",
            stacklevel=3,
        )
    if api_token:
        entry["api_token"] = api_token
    if jupyterhub_major() >= 6:
        entry["timeout"] = EXTERNAL_SERVICE_TIMEOUT
    entry.update(service_options or {})
    return entry
