"""Real components for end-to-end tests: a JupyterHub + configurable-http-proxy, a local OpenID Connect
provider (npm oidc-provider), system users, and helpers to log in and talk to single-user servers.

Everything binds to 127.0.0.1 on free ports, runs in its own process group and is stopped by PID.
See ../shared/reference/e2e-recipes.md for the facts these helpers rely on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
from ports import free_port  # tests/support (on sys.path via tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
PREFIX = Path(os.environ.get("JHLE_PREFIX", "/opt/jupyterhub-lab-ext"))
VENV_BIN = PREFIX / "venv" / "bin"
NODE_DIR = PREFIX / "node"
NODE_BIN = NODE_DIR / "node_modules" / ".bin"
ARTIFACTS = REPO / "test-artifacts"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ----------------------------------------------------------------------------- small utilities


class Fatal(Exception):
    """Raised by a ``wait_until`` predicate to stop waiting at once (e.g. the process died)."""


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
):
    """Poll ``predicate`` until it returns a truthy value; return that value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Fatal:
            raise
        except Exception as exc:  # keep polling, report the last error
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def child_env(**extra: str) -> dict[str, str]:
    """Environment for processes we start: our venv and node tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "PYTEST_"))}
    env["PATH"] = f"{VENV_BIN}:{NODE_BIN}:{SYSTEM_PATH}"
    env.update(extra)
    return env


class Process:
    """A child process in its own process group with its output in a log file."""

    def __init__(
        self,
        argv: list[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group, then SIGKILL after ``timeout`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # the group may still hold children that outlived the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# ----------------------------------------------------------------------------- package install


def ensure_installed() -> None:
    """Install the working tree into the test venv when its sources changed (non-editable, so the
    spawned system users can import it). Serialised by a file lock: several runs may share a venv."""
    if os.environ.get("JHLE_NO_REINSTALL") == "1":
        return
    digest = hashlib.sha256()
    for base in ("jupyterhub_lab_ext", "share"):
        for path in sorted((REPO / base).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    digest.update((REPO / "setup.cfg").read_bytes())
    stamp = PREFIX / "venv" / ".jhle-source-hash"
    with open(PREFIX / "venv" / ".jhle-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        subprocess.run(
            [str(VENV_BIN / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
            check=True,
            env=child_env(),
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["chmod", "-R", "a+rX", str(PREFIX / "venv")], check=True)
        stamp.write_text(digest.hexdigest())


# ----------------------------------------------------------------------------- OIDC provider


class OIDCProvider:
    """npm ``oidc-provider`` on 127.0.0.1 with test identities from a JSON file (re-read per login)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.identities_path = workdir / "identities.json"
        self.identities_path.write_text("{}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            [
                "node",
                str(NODE_DIR / "provider.mjs"),
                "--port",
                str(self.port),
                "--identities",
                str(self.identities_path),
            ],
            log_path=workdir / "oidc.log",
            cwd=NODE_DIR,
            env=child_env(),
        )

    def start(self) -> OIDCProvider:
        shutil.copy(REPO / "devtools" / "oidc" / "provider.mjs", NODE_DIR / "provider.mjs")
        self.process.start()
        wait_until(
            lambda: (
                self.process.alive()
                and httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=2).status_code
                == 200
            ),
            timeout=30,
            what=f"OIDC provider on {self.url}; log:\n{self.process.log_text()}",
        )
        return self

    def stop(self) -> None:
        self.process.stop()

    def set_identity(self, login: str, **claims) -> None:
        """Add or replace a test identity (claims such as email, email_verified, groups)."""
        data = json.loads(self.identities_path.read_text())
        data[login] = claims
        tmp = self.identities_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.identities_path)

    def register_client(self, redirect_uri: str) -> tuple[str, str]:
        """Register an OAuth client (dynamic registration) and return (client_id, client_secret)."""
        resp = httpx.post(
            f"{self.url}/reg",
            json={
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
            timeout=10,
        )
        resp.raise_for_status()
        body = resp.json()
        return body["client_id"], body["client_secret"]


# ----------------------------------------------------------------------------- HTML forms


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(
                {
                    "action": attrs.get("action", ""),
                    "method": attrs.get("method", "get"),
                    "inputs": {},
                }
            )
        elif tag in ("input", "button") and self.forms:
            name = attrs.get("name")
            if (
                name
                and attrs.get("type") not in ("submit", "checkbox")
                or (name and attrs.get("type") == "checkbox" and "checked" in attrs)
            ):
                self.forms[-1]["inputs"][name] = attrs.get("value", "")


def parse_forms(html: str) -> list[dict]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


# ----------------------------------------------------------------------------- hub


def _py(value) -> str:
    return repr(str(value)) if isinstance(value, Path) else repr(value)


class Hub:
    """A real JupyterHub (with configurable-http-proxy) in ``workdir``.

    ``config`` is appended to a base config that binds everything to 127.0.0.1 on free ports, runs
    single-user servers from the test venv with JupyterLab, and defines an admin service token
    (``self.admin_token``) for REST calls. With ``provider`` given, the userlist authenticator is
    configured against it (``authenticator="userlist"``), or oauthenticator's
    LocalGenericOAuthenticator (``authenticator="generic-local"``, the anchor in benchmarks).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        config: str = "",
        provider: OIDCProvider | None = None,
        authenticator: str | None = "userlist",
        userlist: str | None = None,
        home_root: Path | None = None,
        username_prefix: str = "",
        env: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(24)
        self.provider = provider
        self.userlist_path = self.workdir / "userlist"
        if userlist is not None:
            self.userlist_path.write_text(userlist)
        self.home_root = home_root
        self.username_prefix = username_prefix
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "jupyterhub_config.py"
        self.config_path.write_text(
            self._base_config(authenticator) + "\n" + textwrap.dedent(config)
        )
        self.extra_env = env or {}
        self.process: Process | None = None

    # -- config
    def _base_config(self, authenticator: str | None) -> str:
        w = self.workdir
        lines = [
            "c = get_config()  # noqa",
            f"c.JupyterHub.ip = '127.0.0.1'; c.JupyterHub.port = {self.port}",
            f"c.JupyterHub.hub_ip = '127.0.0.1'; c.JupyterHub.hub_port = {self.hub_port}",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.proxy_api_port}'",
            f"c.ConfigurableHTTPProxy.pid_file = {_py(w / 'chp.pid')}",
            f"c.JupyterHub.db_url = 'sqlite:///{w / 'jupyterhub.sqlite'}'",
            f"c.JupyterHub.cookie_secret_file = {_py(w / 'cookie_secret')}",
            f"c.JupyterHub.pid_file = {_py(w / 'jupyterhub.pid')}",
            "c.JupyterHub.cleanup_servers = True",
            f"c.Spawner.cmd = [{_py(VENV_BIN / 'jupyterhub-singleuser')}]",
            "c.Spawner.default_url = '/lab'",
            "c.Spawner.start_timeout = 120",
            "c.Spawner.http_timeout = 90",
            f"c.JupyterHub.services = [{{'name': 'e2e-admin', 'api_token': {self.admin_token!r}}}]",
            "c.JupyterHub.load_roles = [{'name': 'e2e-admin-role', 'services': ['e2e-admin'],"
            " 'scopes': ['admin:users', 'admin:servers', 'admin:groups', 'access:servers',"
            " 'access:services', 'admin:auth_state', 'tokens', 'list:services', 'read:services',"
            " 'read:hub', 'read:metrics', 'proxy', 'admin-ui']}]",
        ]
        if self.provider and authenticator:
            cls, authenticator_class = {
                "userlist": ("UserlistOAuthenticator", "userlist"),
                "generic-local": (
                    "LocalGenericOAuthenticator",
                    "oauthenticator.generic.LocalGenericOAuthenticator",
                ),
            }[authenticator]
            callback = f"{self.url}/hub/oauth_callback"
            client_id, client_secret = self.provider.register_client(callback)
            p = self.provider.url
            lines += [
                f"c.JupyterHub.authenticator_class = {authenticator_class!r}",
                f"c.{cls}.client_id = {client_id!r}",
                f"c.{cls}.client_secret = {client_secret!r}",
                f"c.{cls}.oauth_callback_url = {callback!r}",
                f"c.{cls}.authorize_url = '{p}/auth'",
                f"c.{cls}.token_url = '{p}/token'",
                f"c.{cls}.userdata_url = '{p}/me'",
                f"c.{cls}.username_claim = 'preferred_username'",
                f"c.{cls}.scope = ['openid', 'profile', 'email', 'groups']",
                f"c.{cls}.login_service = 'Test OIDC'",
            ]
            if authenticator == "userlist":
                lines += [
                    f"c.{cls}.userlist_file = {_py(self.userlist_path)}",
                    f"c.{cls}.username_prefix = {self.username_prefix!r}",
                    f"c.{cls}.system_users_state_dir = {_py(self.state_dir)}",
                ]
                if self.home_root:
                    lines.append(f"c.{cls}.home_root = {_py(self.home_root)}")
            else:
                lines += [f"c.{cls}.create_system_users = True", f"c.{cls}.allow_all = True"]
                if self.home_root:
                    lines.append(
                        f"c.{cls}.add_user_cmd = ['useradd', '-m', '-b', {_py(self.home_root)}]"
                    )
        return "\n".join(lines) + "\n"

    def append_config(self, text: str) -> None:
        with open(self.config_path, "a") as f:
            f.write("\n" + textwrap.dedent(text) + "\n")

    # -- lifecycle
    def start(self, timeout: float = 90) -> Hub:
        env = child_env(**self.extra_env)
        self.process = Process(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.config_path)],
            log_path=self.workdir / "hub.log",
            cwd=self.workdir,
            env=env,
        )
        self.process.start()

        def ready():
            if not self.process.alive():
                raise Fatal("hub exited during start:\n" + self.log_tail())
            return httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200

        try:
            wait_until(ready, timeout=timeout, what="hub /hub/api/")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=45)
            self.process = None
        # a hub that died abnormally leaves its proxy (own session) running: stop it by its PID file
        pid_file = self.workdir / "chp.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pid_file.read_text().strip())
            if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)

    def restart(self) -> Hub:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return (self.workdir / "hub.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- REST
    def api(self, method: str, path: str, *, token: str | None = None, **kwargs) -> httpx.Response:
        """Call the hub REST API (``path`` relative to /hub/api/) with the admin service token."""
        headers = {"Authorization": f"token {token or self.admin_token}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.request(
            method,
            f"{self.url}/hub/api/{path.lstrip('/')}",
            headers=headers,
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    def user_model(self, name: str) -> dict | None:
        resp = self.api("GET", f"users/{name}")
        return resp.json() if resp.status_code == 200 else None

    def start_server(
        self, name: str, *, options: dict | None = None, wait: bool = True, timeout: float = 120
    ) -> httpx.Response:
        """Start ``name``'s default server through the REST API and (by default) wait until ready."""
        resp = self.api("POST", f"users/{name}/server", json=options or {})
        if wait and resp.status_code in (201, 202):
            self.wait_ready(name, timeout=timeout)
        return resp

    def wait_ready(self, name: str, server: str = "", timeout: float = 120) -> dict:
        def ready():
            model = self.user_model(name) or {}
            srv = model.get("servers", {}).get(server)
            return srv if srv and srv.get("ready") else None

        try:
            return wait_until(ready, timeout=timeout, what=f"server of {name} ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop_server(self, name: str, server: str = "", timeout: float = 60) -> None:
        path = f"users/{name}/server" + (f"s/{server}" if server else "")
        self.api("DELETE", path)
        wait_until(
            lambda: server not in (self.user_model(name) or {}).get("servers", {}),
            timeout=timeout,
            what=f"server of {name} stopped",
        )

    def server_api(self, name: str, method: str, path: str, **kwargs) -> httpx.Response:
        """Call ``name``'s single-user server REST API (``/user/NAME/api/...``) with the admin token
        (which has ``access:servers``)."""
        return httpx.request(
            method,
            f"{self.url}/user/{name}/api/{path.lstrip('/')}",
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    # -- browser-less login through the provider
    def login(
        self,
        login: str,
        *,
        password: str = "pw",
        next_url: str = "/hub/home",
        client: httpx.Client | None = None,
    ) -> tuple[httpx.Client, httpx.Response]:
        """Log in through the OIDC provider's login and consent forms; return the client (with the
        hub's cookies) and the final response (its status is 403 when the hub refused the user)."""
        return oidc_login(
            self.url,
            self.provider.url if self.provider else None,
            login,
            password=password,
            next_url=next_url,
            client=client,
        )


def oidc_login(
    hub_url: str,
    provider_url: str | None,
    login: str,
    *,
    password: str = "pw",
    next_url: str = "/hub/home",
    client: httpx.Client | None = None,
) -> tuple[httpx.Client, httpx.Response]:
    """Log in to the hub at ``hub_url`` through the provider's development login and consent forms."""
    client = client or httpx.Client(follow_redirects=True, timeout=60)
    resp = client.get(f"{hub_url}/hub/oauth_login", params={"next": next_url})
    for _ in range(5):  # login form, consent form
        if not provider_url or not str(resp.url).startswith(provider_url):
            break
        forms = parse_forms(resp.text)
        if not forms:
            break
        form = forms[0]
        data = dict(form["inputs"])
        if "login" in data or "password" in data:
            data.update(login=login, password=password)
        resp = client.post(urljoin(str(resp.url), form["action"]), data=data)
    return client, resp


async def _execute(url: str, token: str, code: str, timeout: float, **request_kwargs) -> dict:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    req = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        request_timeout=timeout,
        **request_kwargs,
    )
    conn = await asyncio.wait_for(websocket_connect(req), timeout)
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "e2e",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    out = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            if raw is None:
                raise ConnectionError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out[msg["content"]["name"]] += msg["content"]["text"]
            elif kind == "error":
                out["error"] = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return out
        raise TimeoutError("kernel did not go idle")
    finally:
        conn.close()


def run_in_kernel(hub: Hub, user: str, kernel_id: str, code: str, timeout: float = 60) -> dict:
    """Execute ``code`` in a running kernel of ``user``'s server; return stdout/stderr/error."""
    ws_url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel_id}/channels"
    return execute_code(ws_url, hub.admin_token, code, timeout)


def execute_code(ws_url: str, token: str, code: str, timeout: float = 60, **request_kwargs) -> dict:
    """Execute ``code`` through a kernel's ``.../channels`` websocket (``ws://`` or ``wss://``;
    ``request_kwargs`` for tornado's HTTPRequest, e.g. ``ca_certs``)."""
    return run_coroutine(lambda: _execute(ws_url, token, code, timeout, **request_kwargs))


def run_coroutine(make_coro: Callable[[], object]):
    """``asyncio.run(make_coro())``, in a worker thread when this thread already runs an event loop
    (Playwright's sync API keeps one running once a browser test has started)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


# ----------------------------------------------------------------------------- system users


def account_locked(name: str) -> bool:
    """Locked as system_users does it: password field starts with '!!' or the account expired."""
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                return fields[1].startswith("!!") or fields[7] not in ("", None)
    raise KeyError(name)


def processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


def remove_test_users(prefix: str, home_roots: list[Path]) -> list[str]:
    """Remove every system user (and group) whose name starts with ``prefix``, kill their
    processes, and delete their homes (only homes under ``home_roots`` or /home/NAME)."""
    assert len(prefix) >= 4, "refusing to clean up with a short prefix"
    removed = []
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(prefix) or entry.pw_uid < 1000:
            continue
        for pid in processes_of_uid(entry.pw_uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", "-f", entry.pw_name], capture_output=True)
        home = Path(entry.pw_dir)
        allowed = [Path("/home")] + [Path(r) for r in home_roots]
        if home.name == entry.pw_name and any(home.parent == r for r in allowed):
            shutil.rmtree(home, ignore_errors=True)
        removed.append(entry.pw_name)
    with open("/etc/group") as f:
        groups = [line.split(":", 1)[0] for line in f]
    for name in groups:
        if name.startswith(prefix):
            subprocess.run(["groupdel", name], capture_output=True)
    return removed
