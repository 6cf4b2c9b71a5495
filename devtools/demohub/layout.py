"""Where everything of the demo is: ports, URLs and paths, in one frozen record.

Everything listens on 127.0.0.1. The public port (default 8765) and the provider's (9765) are
fixed so that the URLs in the docs work; the hub's internal ports follow the public one
(8766-8769) when free, else any free port (they appear in no URL a person types).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

CULLER = "idle-culler"
USER_LIMIT = "user-limit"
#: the demo's cap on running servers (the third user waits in line)
MAX_ACTIVE_SERVERS = 2
#: the culler's demo-sized settings (seconds)
CULL_TIMEOUT = 600
CULL_EVERY = 60


@dataclass(frozen=True)
class Layout:
    prefix: Path  # JHLE_PREFIX: venv/, node/ and the shared demo envs
    workdir: Path  # the demo's state (0700): config, userlist, databases, logs
    envs_dir: Path  # the shared conda-layout environments (world-readable)
    home_root: Path
    username_prefix: str
    port: int
    provider_port: int
    hub_port: int
    proxy_api_port: int
    culler_port: int
    limit_port: int

    # -- URLs ------------------------------------------------------------------------------
    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    @property
    def callback_url(self) -> str:
        return f"{self.hub_url}/hub/oauth_callback"

    def service_url(self, name: str) -> str:
        """A service's public URL (through the hub's proxy), with a trailing slash."""
        return f"{self.hub_url}/services/{name}/"

    # -- paths -----------------------------------------------------------------------------
    @property
    def venv_bin(self) -> Path:
        return self.prefix / "venv" / "bin"

    @property
    def node_dir(self) -> Path:
        return self.prefix / "node"

    @property
    def config_file(self) -> Path:
        return self.workdir / "jupyterhub_config.py"

    @property
    def userlist(self) -> Path:
        return self.workdir / "userlist"

    @property
    def identities(self) -> Path:
        return self.workdir / "identities.json"

    @property
    def client_secret_file(self) -> Path:
        return self.workdir / "client_secret"

    @property
    def hub_log(self) -> Path:
        return self.workdir / "hub.log"

    @property
    def provider_log(self) -> Path:
        return self.workdir / "provider.log"

    def username(self, login: str) -> str:
        """The hub (and system) username of a demo login: the prefix, then the login."""
        return f"{self.username_prefix}{login}"


class PortBusy(RuntimeError):
    pass


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port``. With SO_REUSEADDR, as the hub and the proxy bind:
    connections of a demo that just stopped (TIME_WAIT) do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def choose_ports(port: int, provider_port: int) -> dict[str, int]:
    """The six ports: the two public ones must be free; internal ones follow ``port``."""
    for what, p in (("hub", port), ("provider", provider_port)):
        if not port_is_free(p):
            raise PortBusy(
                f"port {p} for the {what} is in use on 127.0.0.1: is a demo already running? "
                f"Stop it, or pick another with --{'port' if what == 'hub' else 'provider-port'}."
            )
    taken = {port, provider_port}
    internal = {}
    for offset, name in enumerate(("hub_port", "proxy_api_port", "culler_port", "limit_port"), 1):
        candidate = port + offset
        for _ in range(20):  # a random port is almost never one of ours: bounded anyway
            if candidate not in taken and candidate <= 65535 and port_is_free(candidate):
                break
            candidate = free_port()
        taken.add(candidate)
        internal[name] = candidate
    return {"port": port, "provider_port": provider_port, **internal}
