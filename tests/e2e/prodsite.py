"""A machine set up as docs/deployment.md says, under a temp root instead of ``/``.

For the production-path test: the shipped files (systemd units, nginx site) rewritten by explicit
substitution tables where this machine differs from the docs' (paths, free ports on 127.0.0.1, a
prefixed services account, the test venv), each of which must match; units run as systemd would
(Environment=, EnvironmentFile= winning over it, User= via setpriv, KillMode=process stops).
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx
from envs import make_conda_env
from harness import PREFIX, REPO, SYSTEM_PATH, Process, free_port

EXAMPLES = REPO / "example_config"
BASE = "/jupyter/"
UNITS = ["jupyterhub.service", "jupyterhub-idle-culler.service", "jupyterhub-user-limit.service"]


def substitute(text: str, table: list[tuple[str, str]], what: str) -> str:
    for old, new in table:
        assert old in text, f"{what}: {old!r} not found (the shipped file changed?)"
        text = text.replace(old, new)
    return text


# ----------------------------------------------------------------------------- systemd, offline


def read_unit(path: Path) -> dict[str, list[str]]:
    """``Key`` -> values of a unit file (continuation lines joined, comments dropped)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value.strip())
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """An ``EnvironmentFile=``: KEY=VALUE lines, ``#`` comments, optional quotes."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("\"'")
    return env


def unit_process(unit: Path, log: Path) -> Process:
    """The unit's service as systemd would start it (environment files override Environment=)."""
    u = read_unit(unit)
    env = dict(v.split("=", 1) for v in u.get("Environment", []))
    for name in u.get("EnvironmentFile", []):
        env.update(read_env_file(Path(name.lstrip("-"))))
    argv = shlex.split(u["ExecStart"][0])
    account = pwd.getpwnam(u.get("User", ["root"])[0])
    # what systemd sets for User=; setpriv execs the service itself, so SIGTERM reaches it
    env.update(USER=account.pw_name, LOGNAME=account.pw_name, HOME=account.pw_dir)
    env["SHELL"] = account.pw_shell
    if account.pw_uid != 0:
        ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
        argv = [shutil.which("setpriv", path=SYSTEM_PATH), *ids, *argv]
    return Process(argv, log_path=log, cwd=Path(u["WorkingDirectory"][0]), env=env)


def stop_main_process(process: Process, timeout: float = 60) -> None:
    """``KillMode=process``: SIGTERM to the main process only, then wait (TimeoutStopSec)."""
    os.kill(process.pid, signal.SIGTERM)
    process.proc.wait(timeout)
    process.stop()


# ----------------------------------------------------------------------------- the site


class Site:
    """A machine set up as docs/deployment.md says, under ``root`` instead of ``/``."""

    def __init__(self, root: Path, prefix: str, home_root: Path, provider):
        self.root = root
        self.prefix = prefix
        self.user = f"{prefix}alice"
        self.services_user = f"{prefix}svc"
        self.ports = {
            k: free_port()
            for k in ("https", "http", "proxy", "hub", "proxy_api", "culler", "limit")
        }
        self.public = f"https://127.0.0.1:{self.ports['https']}{BASE}"
        self.etc = root / "etc" / "jupyterhub"
        self.state = root / "var" / "lib" / "jupyterhub"
        self.services_state = root / "var" / "lib" / "jupyterhub-services"
        self.envs = root / "opt" / "conda" / "envs"
        self.nginx = root / "etc" / "nginx"
        self.cert = root / "letsencrypt" / "fullchain.pem"
        self.logs = root / "logs"
        self.units = root / "etc" / "systemd" / "system"
        self.home_root = home_root
        self.provider = provider
        self.client_id, self.client_secret = provider.register_client(
            f"{self.public}hub/oauth_callback"
        )
        self.processes: list[Process] = []
        self.timings: dict[str, float] = {}
        self._lap = time.monotonic()

    def lap(self, what: str) -> None:
        """Record the seconds since the previous lap (evidence, never asserted)."""
        now = time.monotonic()
        self.timings[what] = now - self._lap
        self._lap = now

    # the places where this machine differs from the docs'
    def path_table(self) -> list[tuple[str, str]]:
        return [
            ("/opt/jupyterhub-lab-ext", str(PREFIX)),
            ("/etc/jupyterhub", str(self.etc)),
            ("/var/lib/jupyterhub", str(self.state)),
        ]

    def unit_table(self, name: str) -> list[tuple[str, str]]:
        table = self.path_table()
        if name != "jupyterhub.service":
            table += [("User=jupyterhub-services", f"User={self.services_user}")]
            table += [("Group=jupyterhub-services", f"Group={self.services_user}")]
        return table

    def nginx_table(self) -> list[tuple[str, str]]:
        p = self.ports
        return [
            ("listen 80;", f"listen 127.0.0.1:{p['http']};"),
            ("listen [::]:80;", ""),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{p['https']} ssl http2;"),
            ("listen [::]:443 ssl http2;", ""),
            ("proxy_pass http://127.0.0.1:8000;", f"proxy_pass http://127.0.0.1:{p['proxy']};"),
            ("/etc/nginx/tls/", f"{self.nginx}/tls/"),
        ]

    # -- docs: "Accounts and directories"
    def install(self) -> None:
        for d in (self.etc, self.envs, self.nginx / "tls", self.logs, self.units):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.root / "opt", self.root / "opt" / "conda", self.envs):
            d.chmod(0o755)
        shutil.copy(EXAMPLES / "jupyterhub_config.py", self.etc / "jupyterhub_config.py")
        (self.etc / "userlist").write_text(
            f"{self.user}@example.org admin group:teachers\n{self.prefix}bob@example.org\n"
        )
        self.state.mkdir(mode=0o700, parents=True)
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(self.services_state)]
            + ["--shell", "/usr/sbin/nologin", self.services_user],
            check=True,
        )
        self.services_state.mkdir(mode=0o700)
        shutil.chown(self.services_state, self.services_user, self.services_user)
        make_conda_env(self.envs / "python3")
        for name in UNITS:
            text = (EXAMPLES / "systemd" / name).read_text()
            (self.units / name).write_text(substitute(text, self.unit_table(name), name))

    def write_env_file(self, **extra: str) -> None:
        """/etc/jupyterhub/jupyterhub.env: the docs' four values, then where this machine differs."""
        p = self.ports
        values = {
            "OAUTH_CLIENT_ID": self.client_id,
            "OAUTH_CLIENT_SECRET": self.client_secret,
            "OIDC_ISSUER": self.provider.url,
            "JUPYTERHUB_PUBLIC_URL": self.public,
            "JUPYTERHUB_STATE_DIR": str(self.state),
            "JUPYTERHUB_PORT": str(p["proxy"]),
            "JUPYTERHUB_HUB_PORT": str(p["hub"]),
            "JUPYTERHUB_PROXY_API_PORT": str(p["proxy_api"]),
            "IDLE_CULLER_PORT": str(p["culler"]),
            "USER_LIMIT_PORT": str(p["limit"]),
            "JUPYTERHUB_SHARED_ENVS": str(self.envs),
            "JUPYTERHUB_HOME_ROOT": str(self.home_root),
            "JUPYTERHUB_HOME_TEMPLATE": str(EXAMPLES / "home-template"),
            "JUPYTERHUB_SERVICES_USER": self.services_user,
            "JUPYTERHUB_USERS_GROUP": f"{self.prefix}users",
            **extra,
        }
        path = self.etc / "jupyterhub.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)

    # -- docs: "nginx in front", in its order
    @staticmethod
    def self_signed(cert: Path, key: Path, subject="/CN=hub.example.org", *extensions: str):
        """The docs' first certificate (``openssl req -x509 ...``); extensions for the test's."""
        argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"]
        argv += ["-subj", subject, "-keyout", str(key), "-out", str(cert)]
        for ext in extensions:
            argv += ["-addext", ext]
        subprocess.run(argv, check=True, capture_output=True)

    def nginx_conf(self) -> Path:
        site = (EXAMPLES / "nginx" / "jupyterhub.conf").read_text()
        enabled = self.nginx / "sites-enabled"
        enabled.mkdir(exist_ok=True)
        (enabled / "jupyterhub.conf").write_text(substitute(site, self.nginx_table(), "site"))
        n = self.nginx
        (n / "tmp").mkdir(exist_ok=True)
        main = n / "nginx.conf"
        main.write_text(
            f"pid {n}/nginx.pid;\nerror_log {n}/error.log;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log {n}/access.log;\n"
            + "".join(f"  {k}_temp_path {n}/tmp/{k};\n" for k in ("client_body", "proxy"))
            + "".join(f"  {k}_temp_path {n}/tmp/{k};\n" for k in ("fastcgi", "uwsgi", "scgi"))
            + f"  include {enabled}/*.conf;\n}}\n"
        )
        return main

    def nginx_test(self, conf: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "nginx",
                "-t",
                "-p",
                str(self.nginx),
                "-e",
                str(self.nginx / "error.log"),
                "-c",
                str(conf),
            ],
            capture_output=True,
            text=True,
        )

    # -- requests through nginx
    def client(self) -> httpx.Client:
        tls = ssl.create_default_context(cafile=str(self.cert))
        return httpx.Client(follow_redirects=True, timeout=60, verify=tls)

    def url(self, path: str) -> str:
        return urljoin(self.public, path.lstrip("/"))
