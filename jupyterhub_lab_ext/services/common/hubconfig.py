"""What the services' one-line ``enable_*`` functions share when they write the hub's config.

Loaded by ``jupyterhub_config.py``: no I/O here. Loading the hub config must work for admin
commands (``jupyterhub upgrade-db``, ``jupyterhub-lab-ext userlist check --config``) in a shell
that has none of the hub's secrets, and must not write anything.
"""

from __future__ import annotations

import warnings

import jupyterhub

#: seconds the hub waits for an external service when it starts (JupyterHub >= 6 waits 30 by
#: default and routes nothing meanwhile, so every restart would wait for services not up yet)
EXTERNAL_SERVICE_TIMEOUT = 2
#: service entry keys that only mean something for a service the hub starts itself
MANAGED_ONLY_KEYS = frozenset({"command", "environment", "user", "cwd"})


def jupyterhub_major() -> int:
    return int(jupyterhub.__version__.split(".")[0])


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
