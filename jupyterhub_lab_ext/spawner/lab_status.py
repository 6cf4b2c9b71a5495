"""What a spawner gives the user's server for the JupyterLab status extension (pure).

The conda-kernel spawners call :func:`server_env` and :func:`server_args` from ``get_env`` and
``get_args`` when ``lab_status`` is on: the server loads the extension
(:mod:`jupyterhub_lab_ext.labserver`) and learns its env's name and where the two services
answer. A service's address comes from the hub's own ``c.JupyterHub.services`` entry of that
name (its ``url``), so the server asks the service directly, not through the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jupyterhub_lab_ext.util import lab_status as names

#: the keys of ``lab_status_services`` and the variable each one's URL goes to
SERVICE_VARS = {"culler": names.ENV_CULLER_URL, "user-limit": names.ENV_USER_LIMIT_URL}


def configured_services(config) -> list:
    """The hub's ``c.JupyterHub.services`` as a list (a lazy ``.append`` value resolved)."""
    value = config.JupyterHub.get("services", []) if "JupyterHub" in config else []
    get_value = getattr(value, "get_value", None)
    if get_value is not None:
        value = get_value([])
    return list(value) if isinstance(value, (list, tuple)) else []


def service_url(services: Iterable[Mapping], name: str, base_url: str) -> str:
    """``<url><base_url>services/<name>/`` for the hub service ``name``; "" if it has no URL."""
    for entry in services or ():
        if isinstance(entry, Mapping) and entry.get("name") == name and entry.get("url"):
            base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
            return str(entry["url"]).rstrip("/") + base + f"services/{name}/"
    return ""


def server_env(
    env_name: str | None,
    services: Iterable[Mapping],
    service_names: Mapping[str, str],
    base_url: str,
    refresh: float,
) -> dict[str, str]:
    """The status extension's variables for the server's environment."""
    out = {names.ENV_REFRESH: f"{refresh:g}"}
    if env_name:
        out[names.ENV_NAME] = env_name
    for key, var in SERVICE_VARS.items():
        url = service_url(list(services or ()), service_names.get(key, ""), base_url)
        if url:
            out[var] = url
    return out


def server_args() -> list[str]:
    """The server's command-line arguments that load the extension."""
    return [f"--ServerApp.jpserver_extensions={names.SERVER_EXTENSION}=True"]
