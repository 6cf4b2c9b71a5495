"""The user-limit service end to end: a real hub + proxy, the managed service, real single-user
servers (``jupyterhub-singleuser`` processes), real logins through the OIDC provider and a real
browser for the queue page.

Most cases use JupyterHub's ``SimpleLocalProcessSpawner`` (real servers, no system users) so many
servers start quickly; the login cases use the userlist authenticator with real system users.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from harness import ARTIFACTS, free_port, wait_until

SERVICE = "user-limit"


def limit_config(
    tmp: Path,
    port: int,
    *,
    settings: dict | None = None,
    options: str = "",
    simple: bool = True,
    null_auth: bool = True,
    extra: str = "",
) -> str:
    """Hub config: the one-line ``enable_user_limit`` (service ``settings``, other keyword
    ``options`` as source) plus (optionally) a light spawner, then ``extra`` lines."""
    lines = [
        "from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions, enable_user_limit"
    ]
    if simple:
        homes = tmp / "homes"
        homes.mkdir(exist_ok=True)
        lines += [
            "c.JupyterHub.spawner_class = 'jupyterhub.spawner.SimpleLocalProcessSpawner'",
            f"c.SimpleLocalProcessSpawner.home_dir_template = '{homes}/{{username}}'",
            "c.Spawner.args = ['--allow-root']",
        ]
    if null_auth:
        # users made over REST only; no system accounts needed
        lines.append("c.JupyterHub.authenticator_class = 'null'")
    settings = dict(settings or {})
    if "managed=False" not in options:
        # quick passes for tests (options of the managed service only)
        settings = {"reconcile_interval": 3, "housekeeping_interval": 0.5, **settings}
    lines += [
        "c.JupyterHub.allow_named_servers = True",
        f"enable_user_limit(c, {settings!r}, url='http://127.0.0.1:{port}', {options})",
        # the harness's admin service may change limits (custom scope made by enable_user_limit)
        "c.JupyterHub.load_roles.append({'name': 'e2e-limit-admin', "
        "'scopes': ['custom:user-limit:admin'], 'services': ['e2e-admin']})",
        extra,
    ]
    return "\n".join(lines) + "\n"


class Limits:
    """Talks to one hub running the user-limit service."""

    def __init__(self, hub, prefix: str):
        self.hub = hub
        self.prefix = prefix

    def names(self, *short):
        return [f"{self.prefix}{s}" for s in short]

    def create_users(self, *short) -> list[str]:
        names = self.names(*short)
        resp = self.hub.api("POST", "users", json={"usernames": names})
        assert resp.status_code == 201, resp.text
        return names

    def svc(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        """The service's REST API through the proxy (``/services/user-limit/...``)."""
        return httpx.request(
            method,
            f"{self.hub.url}/services/{SERVICE}/{path}",
            headers={"Authorization": f"token {token or self.hub.admin_token}"},
            timeout=30,
            **kw,
        )

    def status(self) -> dict:
        resp = self.svc("GET", "api/status")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def queue(self) -> list[str]:
        return [e["user"] for e in self.svc("GET", "api/queue").json()["entries"]]

    def spawn(self, name: str, server: str = "") -> httpx.Response:
        path = f"users/{name}/server" + (f"s/{server}" if server else "")
        return self.hub.api("POST", path, json={}, timeout=120)

    def active(self) -> dict[str, list[str]]:
        """{user: [server names]} of every server the hub reports active (pending or ready)."""
        out = {}
        resp = self.hub.api("GET", "users", params={"state": "active", "limit": 200})
        assert resp.status_code == 200, resp.text
        for u in resp.json():
            if u["name"].startswith(self.prefix):
                out[u["name"]] = sorted(u["servers"])
        return out

    def ready(self) -> set[tuple[str, str]]:
        resp = self.hub.api("GET", "users", params={"state": "ready", "limit": 200})
        return {
            (u["name"], s)
            for u in resp.json()
            if u["name"].startswith(self.prefix)
            for s, m in u["servers"].items()
            if m.get("ready")
        }

    def wait_ready(self, name: str, server: str = "", timeout: float = 150):
        return wait_until(
            lambda: (name, server) in self.ready(), timeout=timeout, what=f"{name}:{server} ready"
        )

    def service_pid(self) -> int:
        """PID of the managed service process (a child of this hub's process)."""
        hub_pid = self.hub.process.pid
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == hub_pid and b"jupyterhub_lab_ext.services.user_limit" in cmd:
                return int(entry)
        raise LookupError("service process not found")


@pytest.fixture
def limits_hub(make_hub, tmp_path, user_prefix):
    """``factory(settings, options="", simple=True, **hub_kwargs)`` -> Limits on a started hub."""

    def factory(
        settings: dict | None = None,
        options: str = "",
        *,
        simple: bool = True,
        extra: str = "",
        **kw,
    ) -> Limits:
        port = free_port()
        kw.setdefault("authenticator", None)
        config = limit_config(
            tmp_path,
            port,
            settings=settings,
            options=options,
            simple=simple,
            null_auth=kw["authenticator"] is None,
            extra=extra,
        )
        hub = make_hub(config, **kw)
        return Limits(hub, user_prefix)

    yield factory
    shutil.rmtree(tmp_path / "homes", ignore_errors=True)


def test_third_user_queues_and_starts_by_itself(limits_hub):
    lim = limits_hub({"max_active_servers": 2})
    a, b, c = lim.create_users("a", "b", "c")
    for name in (a, b):
        assert lim.spawn(name).status_code in (201, 202)
    resp = lim.spawn(c)
    assert resp.status_code == 429, resp.text
    assert int(resp.headers["Retry-After"]) >= 5
    assert resp.headers["X-JupyterHub-Queue-Position"] == "1"
    assert "number 1 in line" in resp.json()["message"]
    # asking again (another tab, a script) keeps the same single place
    assert lim.spawn(c).headers["X-JupyterHub-Queue-Position"] == "1"
    assert lim.queue() == [c]
    lim.wait_ready(a)
    lim.wait_ready(b)
    assert set(lim.active()) == {a, b}

    lim.hub.stop_server(a)
    lim.wait_ready(c)  # started by the service, nobody asked again
    assert set(lim.active()) == {b, c}
    status = lim.status()
    assert status["usage"]["active_servers"] == 2 and status["queue_length"] == 0
    me = lim.svc("GET", f"api/users/{c}").json()
    assert me["state"] == "active" and me["position"] is None


@contextlib.contextmanager
def cpu_load(seconds: float = 300):
    """One CPU-burning process per core (at least 2, at most 8) beside the hub: the load under which
    the hub once answered spawns before their admission was decided. Each burner ends by itself
    after ``seconds``; leaving the block stops them by PID."""
    burn = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    count = max(2, min(os.cpu_count() or 2, 8))
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def test_fifty_concurrent_spawns_against_cap_ten_under_cpu_load(limits_hub):
    # 50 REST spawns at once while every core is busy with something else: the hub then reaches
    # the admission hook of many spawns only after JupyterHub's slow_spawn_timeout (10 s), and
    # used to answer them 202 before they were decided (14, 15, 11 and 45 answers of 201/202 seen)
    lim = limits_hub({"max_active_servers": 10, "start_queued_servers": False})
    names = lim.create_users(*[f"p{i:02d}" for i in range(50)])

    def decided():
        status = lim.status()
        return status["usage"]["active_servers"] + status["queue_length"] == 50

    pool = concurrent.futures.ThreadPoolExecutor(50)
    try:
        with cpu_load():
            futures = {name: pool.submit(lim.spawn, name) for name in names}
            # the load lasts until the service has decided every spawn (10 places + 40 in line)
            wait_until(decided, timeout=240, interval=1, what="all 50 spawns decided")
        results = {name: f.result().status_code for name, f in futures.items()}
    finally:
        pool.shutdown(wait=True)
    started = sorted(n for n, s in results.items() if s in (201, 202))
    refused = [n for n, s in results.items() if s == 429]
    assert len(started) == 10, results
    assert len(refused) == 40, results
    for name in started:
        lim.wait_ready(name, timeout=240)
    assert sorted(lim.active()) == started
    assert len(lim.ready()) == 10
    queue = lim.svc("GET", "api/queue").json()
    assert [e["position"] for e in queue["entries"]] == list(range(1, 41))
    assert sorted(e["user"] for e in queue["entries"]) == sorted(refused)
    assert lim.status()["usage"]["active_servers"] == 10


# runs in user.spawn() before the admission point: the hub reaches the admission only after 12 s
SLOW_HUB = """
import asyncio

async def _slow_server_token_scopes(spawner):
    await asyncio.sleep(12)
    return []

c.Spawner.server_token_scopes = _slow_server_token_scopes
"""


def test_admission_decided_after_ten_seconds_is_still_the_answer(limits_hub):
    # later than JupyterHub's default slow_spawn_timeout (10 s): the hub used to answer all
    # three 202 and fail two of them afterwards
    lim = limits_hub({"max_active_servers": 1, "start_queued_servers": False}, extra=SLOW_HUB)
    names = lim.create_users("a", "b", "c")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = dict(zip(names, pool.map(lim.spawn, names), strict=True))
    codes = {n: r.status_code for n, r in answers.items()}
    assert sorted(codes.values()) == [201, 429, 429], codes
    (admitted,) = [n for n, code in codes.items() if code == 201]
    assert set(lim.ready()) == {(admitted, "")}
    for name, resp in answers.items():
        if name != admitted:
            assert "in line" in resp.json()["message"]
            assert resp.headers["X-JupyterHub-Queue-Position"] in ("1", "2")
    assert sorted(lim.queue()) == sorted(set(names) - {admitted})
    assert lim.status()["usage"]["active_servers"] == 1


# records every spawn that got past the admission point into the part of User.spawn() that the
# hub undoes with User.stop() on failure (auth_state_hook runs right after pre_spawn_start)
PAST_ADMISSION = """
def _past_admission(spawner, auth_state):
    with open({path!r}, "a") as f:
        f.write(spawner.user.name + "\\n")

c.Spawner.auth_state_hook = _past_admission
"""


def hub_rows(db: Path) -> dict[str, object]:
    """What a spawn makes in the hub's database: API tokens, OAuth clients, server rows."""
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return {
                "api_tokens": conn.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar(),
                "servers": conn.execute(sa.text("SELECT count(*) FROM servers")).scalar(),
                "oauth_clients": sorted(
                    conn.execute(sa.text("SELECT identifier FROM oauth_clients")).scalars()
                ),
            }
    finally:
        engine.dispose()


def test_refusal_at_the_admission_point_costs_no_oauth_client(limits_hub, tmp_path):
    """What docs/user-limit.md says the admission relies on in JupyterHub: the hub asks
    ``Spawner.oauth_client_allowed_scopes`` before it creates the server's OAuth client and before
    the part of the spawn it undoes with ``User.stop()``. A queued or refused spawn leaves no API
    token, server row or OAuth client, and never reaches ``auth_state_hook``. Fails when a
    JupyterHub calls the trait later (the safety net in ``pre_spawn_hook`` then decides)."""
    past = tmp_path / "past-admission"
    lim = limits_hub(
        {"max_active_servers": 1, "max_servers_per_user": 1},
        extra=PAST_ADMISSION.format(path=str(past)),
    )
    a, b, c = lim.create_users("a", "b", "c")
    assert lim.spawn(a).status_code in (201, 202)
    lim.wait_ready(a)
    db = lim.hub.workdir / "jupyterhub.sqlite"
    before = hub_rows(db)
    assert lim.spawn(b).status_code == 429
    resp = lim.hub.api("POST", f"users/{c}/server", json={"profile": "x"}, timeout=120)
    assert resp.status_code == 429
    assert lim.spawn(a, "two").status_code == 403  # max_servers_per_user
    assert hub_rows(db) == before
    assert past.read_text().split() == [a]
    log = lim.hub.log_text()
    for name in (b, c):
        assert f"Creating oauth client jupyterhub-user-{name}" not in log
    assert "did not run before pre_spawn_hook" not in log
    # nothing half-made is left: the hub sees no server of theirs, and b, first in line, is
    # started by the service when a stops
    assert set(lim.active()) == {a}
    lim.hub.stop_server(a)
    lim.wait_ready(b)
    assert lim.hub.user_model(c)["servers"] == {}
    assert lim.queue() == [c]


def test_group_quota_named_servers_and_per_user_cap(limits_hub):
    lim = limits_hub(
        {"max_active_servers": 10, "group_quotas": {"students": 1}, "max_servers_per_user": 2}
    )
    s1, s2, staff = lim.create_users("s1", "s2", "staff")
    resp = lim.hub.api("POST", "groups/students", json={"users": [s1, s2]})
    assert resp.status_code == 201, resp.text
    assert lim.spawn(s1).status_code in (201, 202)
    resp = lim.spawn(s2)
    assert resp.status_code == 429 and "group students" in resp.json()["message"]
    # named servers count too: s2 cannot get past the quota with a named server
    resp = lim.spawn(s2, "other")
    assert resp.status_code == 429
    assert lim.spawn(staff).status_code in (201, 202)
    assert lim.spawn(staff, "second").status_code in (201, 202)
    resp = lim.spawn(staff, "third")
    assert resp.status_code == 403 and "maximum of 2 server" in resp.json()["message"]
    lim.wait_ready(staff, "second")
    status = lim.status()
    assert status["usage"]["groups"] == {"students": 1} and status["queue_length"] == 1
    lim.hub.stop_server(s1)
    lim.wait_ready(s2, "other")  # the queued request was for the named server
    assert set(lim.active()[s2]) == {"other"}


def test_limit_change_over_rest_starts_waiters_and_persists(limits_hub):
    lim = limits_hub({"max_active_servers": 1})
    a, b = lim.create_users("a", "b")
    assert lim.spawn(a).status_code in (201, 202)
    assert lim.spawn(b).status_code == 429
    # a plain user may read the service but not change limits
    token = lim.hub.api(
        "POST", f"users/{a}/tokens", json={"scopes": [f"access:services!service={SERVICE}"]}
    )
    assert token.status_code == 201, token.text
    resp = lim.svc("PUT", "api/limits", token=token.json()["token"], json={"max_active_servers": 5})
    assert resp.status_code == 403
    resp = lim.svc("PUT", "api/limits", json={"max_active_servers": "five"})
    assert resp.status_code == 400
    resp = lim.svc("PUT", "api/limits", json={"max_active_servers": 2})
    assert resp.status_code == 200, resp.text
    lim.wait_ready(b)  # the freed capacity went to the waiter by itself
    # persisted: survives a hub (and service) restart
    lim.hub.restart()
    assert lim.status()["limits"]["max_active_servers"] == 2
    # the hub stopped every server on shutdown after the service was gone, so the hook could
    # not free the places; the reconciliation at start must (no phantom places)
    assert lim.active() == {}
    wait_until(
        lambda: lim.status()["usage"]["active_servers"] == 0, timeout=30, what="places freed"
    )
    assert lim.spawn(a).status_code in (201, 202)


def test_service_killed_and_restarted_keeps_order_and_caps(limits_hub):
    lim = limits_hub({"max_active_servers": 1})
    a, b, c = lim.create_users("a", "b", "c")
    assert lim.spawn(a).status_code in (201, 202)
    assert lim.spawn(b).status_code == 429
    assert lim.spawn(c).status_code == 429
    lim.wait_ready(a)
    old = lim.service_pid()
    os.kill(old, signal.SIGKILL)
    # while the service is down spawns are refused (fail closed), never let through
    wait_until(lambda: lim.svc("GET", "health").status_code != 200, timeout=10, what="service down")
    # the hub notices and restarts it; the queue comes back from the store
    wait_until(
        lambda: lim.svc("GET", "health").status_code == 200, timeout=120, what="service back"
    )
    assert lim.service_pid() != old
    assert lim.queue() == [b, c]
    assert lim.status()["usage"]["active_servers"] == 1
    d = lim.create_users("d")[0]
    assert lim.spawn(d).headers.get("X-JupyterHub-Queue-Position") == "3"
    lim.hub.stop_server(a)
    lim.wait_ready(b)
    assert set(lim.active()) == {b}
    assert lim.queue() == [c, d]


def test_fail_closed_when_service_unreachable(limits_hub):
    dead = free_port()
    lim = limits_hub(
        options="managed=False, api_token='x' * 32, "
        f"service_options={{'timeout': 1, 'url': 'http://127.0.0.1:{dead}'}}"
    )
    (a,) = lim.create_users("a")
    resp = lim.spawn(a)
    assert resp.status_code == 503, resp.text
    assert "cannot be reached" in resp.json()["message"]
    assert lim.active() == {}
    assert "USER-LIMIT SERVICE UNREACHABLE" in lim.hub.log_text()


def test_fail_open_lets_spawns_through_and_logs(limits_hub):
    dead = free_port()
    lim = limits_hub(
        options="managed=False, api_token='x' * 32, hook=HookOptions(fail_open=True), "
        f"service_options={{'timeout': 1, 'url': 'http://127.0.0.1:{dead}'}}"
    )
    (a,) = lim.create_users("a")
    assert lim.spawn(a).status_code in (201, 202)
    lim.wait_ready(a)
    assert f"letting the spawn of user={a} through" in lim.hub.log_text()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_store_backends(limits_hub, request, store, tmp_path):
    if store == "postgresql":
        db_url = request.getfixturevalue("postgres").url()
    else:
        db_url = f"sqlite:///{tmp_path}/limits.sqlite"
    lim = limits_hub({"max_active_servers": 1, "db_url": db_url})
    a, b = lim.create_users("a", "b")
    assert lim.spawn(a).status_code in (201, 202)
    assert lim.spawn(b).status_code == 429
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            queued = conn.execute(sa.text('SELECT "user" FROM user_limit_queue')).scalars().all()
            held = conn.execute(sa.text("SELECT count(*) FROM user_limit_admissions")).scalar()
    finally:
        engine.dispose()
    assert queued == [b] and held == 1
    # the hub stops a's server on shutdown; after the restart the line comes back from the
    # store and b, first in line, gets the freed place and is started by the service
    lim.hub.restart()
    lim.wait_ready(b)
    assert set(lim.active()) == {b} and lim.queue() == []


def test_seat_cap_at_login(limits_hub, oidc, user_prefix):
    first, second = f"{user_prefix}first", f"{user_prefix}second"
    for name in (first, second):
        oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
    lim = limits_hub({"max_users": 1}, simple=False, authenticator="generic-local")
    _, resp = lim.hub.login(first)
    assert resp.status_code == 200, resp.text[:500]
    _, resp = lim.hub.login(second)
    assert resp.status_code == 403
    assert "all 1 user seats are taken" in resp.text
    assert lim.hub.user_model(second) is None
    # a user who already has an account keeps logging in
    _, resp = lim.hub.login(first)
    assert resp.status_code == 200


@pytest.mark.parametrize("slow", [False, True], ids=["refusal-page", "refusal-on-progress-page"])
def test_browser_queue_page_turns_into_jupyterlab(limits_hub, oidc, user_prefix, page, slow):
    """The person clicks "start", lands on the live queue page, and ends in JupyterLab when a
    place frees up. ``slow``: the admission answer comes after the hub already showed its
    spawn-pending page (the service is paused for 3 s); the progress page then sends them on."""
    ARTIFACTS.mkdir(exist_ok=True)
    first, second = f"{user_prefix}first", f"{user_prefix}second"
    for name in (first, second):
        oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
    lim = limits_hub({"max_active_servers": 1}, simple=False, authenticator="generic-local")
    _, resp = lim.hub.login(first)  # creates the system user
    assert resp.status_code == 200
    assert lim.hub.start_server(first).status_code in (201, 202)

    page.goto(f"{lim.hub.url}/hub/oauth_login?next=/hub/home")
    for _ in range(4):  # provider login form, then consent form
        if page.url.startswith(lim.hub.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", second)
            page.fill("input[name=password]", "pw")
        page.locator("button[type=submit]").first.click()
        page.wait_for_load_state()
    assert page.url.startswith(lim.hub.url), page.url
    resume = None
    if slow:
        pid = lim.service_pid()
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))
        resume.start()
    try:
        page.goto(f"{lim.hub.url}/hub/spawn")
        if slow:
            page.wait_for_url("**/hub/spawn-pending/**", timeout=30_000)
        # the refusal (page or progress event) sends the person on to the live queue page
        page.wait_for_url(f"**/services/{SERVICE}/queue*", timeout=60_000)
    finally:
        if resume is not None:
            resume.join()
            os.kill(pid, signal.SIGCONT)
    page.wait_for_selector("[data-testid=queue-position]:visible", timeout=30_000)
    assert page.inner_text("[data-testid=queue-position]") == "1"
    assert "number 1 in line" in page.inner_text("#message")
    if not slow:
        page.screenshot(path=str(ARTIFACTS / "user-limit-queue-page.png"), full_page=True)

    lim.hub.stop_server(first)
    page.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
    assert f"/user/{second}/" in page.url
    if not slow:
        page.screenshot(path=str(ARTIFACTS / "user-limit-queue-admitted.png"), full_page=True)


def test_conda_kernel_spawner_queued_options_survive_the_auto_start(limits_hub):
    from envs import make_conda_env, trusted_dir

    work = trusted_dir("ul-conda-")  # shared envs must be safe from users up to /
    try:
        shared = work / "envs"
        make_conda_env(shared / "py")
        make_conda_env(shared / "geo")
        shared.chmod(0o755)
        lim = limits_hub(
            {"max_active_servers": 1},
            simple=False,
            authenticator="generic-local",
            extra=(
                "c.JupyterHub.spawner_class = 'conda-kernel'\n"
                f"c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]\n"
                "c.CondaKernelSpawner.default_env = 'shared/py'\n"
            ),
        )
        a, b = lim.create_users("a", "b")  # system users made by the authenticator
        resp = lim.hub.api("POST", f"users/{a}/server", json={"profile": "shared/py"}, timeout=120)
        assert resp.status_code in (201, 202), resp.text
        resp = lim.hub.api("POST", f"users/{b}/server", json={"profile": "shared/geo"}, timeout=120)
        assert resp.status_code == 429, resp.text
        lim.wait_ready(a)
        lim.hub.stop_server(a)
        # the service started b's server with the options of b's queued request
        lim.wait_ready(b)
        assert lim.hub.user_model(b)["servers"][""]["user_options"] == {"profile": "shared/geo"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
