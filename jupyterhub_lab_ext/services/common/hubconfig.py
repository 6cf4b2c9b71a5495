"""Edits of a hub config ``c`` shared by the services' one-line setups.

``enable_idle_culler`` and ``enable_user_limit`` add a service, its least-privilege role and its
admin scope to ``c.JupyterHub`` without dropping what the admin configured before the call
(lazy ``.append``/``.add`` values included), and replace their own earlier entries by name, so a
second call updates rather than duplicates.
"""

from __future__ import annotations

from . import scopes


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
