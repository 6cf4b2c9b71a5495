"""``enable_idle_culler(c, ...)``: the idle culler in a hub config, in one call.

In ``jupyterhub_config.py``::

    from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler

    enable_idle_culler(c, args=["--timeout=3600", "--cull-every=300"])

adds the managed service ``idle-culler`` (the hub starts it, restarts it and gives it a token), a
role with exactly the hub scopes its flags need, the admin scope ``custom:idle-culler:admin``
(hub admins hold it through ``admin:servers``) and browser logins without a consent page.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jupyterhub_lab_ext.services.common import hubconfig
from jupyterhub_lab_ext.services.common.scopes import admin_scope as default_admin_scope
from jupyterhub_lab_ext.services.culler.app import LabIdleCuller


def culler_scopes(args: Sequence[str]) -> list[str]:
    """The hub scopes the culler needs with these command-line ``args``, and no more."""
    app = LabIdleCuller()
    app.parse_command_line(list(args))
    needed = [
        "list:users",
        "read:users:activity",
        "read:users:groups",  # per-group timeouts and exemptions
        "read:servers",
        "delete:servers",
    ]
    if app.cull_users:
        needed += ["read:users", "delete:users"]
    if app.kernel_aware:
        needed.append("access:servers")
    return needed


def enable_idle_culler(
    c,
    *,
    name: str = "idle-culler",
    url: str = "http://127.0.0.1:10101",
    args: Sequence[str] = (),
    db_url: str | None = None,
    managed: bool = True,
    api_token: str | None = None,
    admin_scope: str | None = None,
    environment: dict | None = None,
    service_options: dict | None = None,
) -> dict:
    """Add the idle culler to a hub config ``c``; returns its service entry.

    :param name: service name (URL prefix ``/services/<name>/``).
    :param url: where the service listens (127.0.0.1 and a free port).
    :param args: the culler's command-line flags, jupyterhub-idle-culler's names included
        (``--timeout=3600``, ``--cull-every=300``, ``--cull-users``, ``--kernel-aware``, ...).
        They also decide the scopes of the culler's role.
    :param db_url: where exemptions are kept (default: SQLite in the service's directory).
    :param managed: let the hub start the service. False: you run it yourself (e.g. as its own
        systemd unit) with the same flags (``args`` still decide the role's scopes) and pass
        ``api_token``, the token you gave it. ``db_url``, ``environment`` and the
        ``service_options`` ``command``/``environment``/``user``/``cwd`` then configure nothing
        and are a ``ValueError``; an empty ``api_token`` only warns (admin commands load the
        config without the hub's secrets). The hub waits at most 2 s for the service at start
        (JupyterHub >= 6).
    :param admin_scope: the scope for passes and exemptions (default ``custom:<name>:admin``).
    :param service_options: extra keys for the hub's service entry, e.g. ``{"user": ...}``.
    """
    admin_scope = admin_scope or default_admin_scope(name)
    flags = list(args)
    if db_url:
        flags.append(f"--db-url={db_url}")
    if admin_scope != default_admin_scope("idle-culler"):
        flags.append(f"--LabIdleCuller.admin_scope={admin_scope}")
    service = {"name": name, "url": url, **hubconfig.browser_oauth(name, admin_scope)}
    if managed:
        service["command"] = [sys.executable, "-m", "jupyterhub_lab_ext.services.culler", *flags]
        if environment:
            service["environment"] = dict(environment)
        service.update(service_options or {})
    else:
        hubconfig.external_service(
            "enable_idle_culler",
            service,
            api_token=api_token,
            managed_only={"db_url": db_url, "environment": environment},
            service_options=service_options,
        )
    hubconfig.add_service(c, service)
    hubconfig.add_role(
        c,
        {
            "name": f"{name}-service",
            "description": "The idle culler: finds idle servers and stops them.",
            "scopes": culler_scopes(flags),
            "services": [name],
        },
    )
    hubconfig.declare_scope(
        c, admin_scope, "Run idle-culler passes now and set or remove culling exemptions."
    )
    return service
