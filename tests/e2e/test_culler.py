"""End-to-end: the idle culler as a managed service of a real JupyterHub with real servers.

Single-user servers are real ``jupyterhub-singleuser`` (JupyterLab) processes started by
JupyterHub's SimpleLocalProcessSpawner (as root, ``--allow-root``): real, but no system users
needed. Short timeouts; most tests trigger passes over REST (``cull_every`` is long) so nothing
races the background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fakehub import FakeHub
from harness import VENV_BIN, child_env, free_port, run_in_kernel, wait_until

SERVICE = "idle-culler"
SUPPORT = Path(__file__).resolve().parents[1] / "support"

#: hub config: servers that run nothing and stop in 50 ms (tests/support/fakespawner.py)
FAKE_SPAWNER = f"""
import sys
sys.path.insert(0, {str(SUPPORT)!r})
from fakespawner import FakeSpawner
c.JupyterHub.spawner_class = FakeSpawner
c.FakeSpawner.stop_seconds = 0.05
c.JupyterHub.last_activity_interval = 3600
"""


def culler_config(
    workdir: Path,
    users: dict[str, list[str]],
    *args: str,
    public_port: int,
    extra: str = "",
    db_url: str = "",
    scheme: str = "http",
) -> str:
    """Hub config: dummy authenticator, simple spawner, the culler as a managed service."""
    port = free_port()
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "jupyterhub_lab_ext.services.culler",
        f"--db-url={db_url or f'sqlite:///{workdir}/culler.sqlite'}",
        f"--LabIdleCuller.server_base_url=http://127.0.0.1:{public_port}",
        *args,
    ]
    groups = {}
    for user, user_groups in users.items():
        for g in user_groups:
            groups.setdefault(g, {"users": []})["users"].append(user)
    return f"""
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.Spawner.args = ["--allow-root"]
c.JupyterHub.last_activity_interval = 2
c.JupyterHub.allow_named_servers = True
c.JupyterHub.load_groups = {groups!r}
c.JupyterHub.custom_scopes = {{
    "custom:idle-culler:admin": {{"description": "Trigger culler passes, change exemptions"}},
}}
c.JupyterHub.services.append({{
    "name": {SERVICE!r},
    "url": "{scheme}://127.0.0.1:{port}",
    "command": {command!r},
    "oauth_no_confirm": True,
}})
c.JupyterHub.load_roles.append({{
    "name": "idle-culler",
    "services": [{SERVICE!r}],
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers",
               "read:users:groups", "access:servers"],
}})
c.JupyterHub.load_roles.append({{
    "name": "culler-admins",
    "services": ["e2e-admin"],
    "scopes": ["custom:idle-culler:admin", "access:services!service={SERVICE}"],
}})
c.JupyterHub.load_roles.append({{
    "name": "culler-readers",
    "groups": ["culler-readers"],
    "scopes": ["access:services!service={SERVICE}"],
}})
{extra}
"""


class Culler:
    """REST access to the culler through the hub's proxy."""

    def __init__(self, hub):
        self.hub = hub
        self.base = f"{hub.url}/services/{SERVICE}/"

    def call(self, method, path, token=None, **kw):
        headers = kw.pop("headers", {})
        if token is not False:
            headers["Authorization"] = f"token {token or self.hub.admin_token}"
        return httpx.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def wait_up(self, timeout=60):
        wait_until(
            lambda: self.call("GET", "health", token=False).status_code == 200,
            timeout=timeout,
            what="culler health",
        )

    def run_pass(self, dry_run=False):
        resp = self.call("POST", "api/passes" + ("?dry_run=1" if dry_run else ""))
        assert resp.status_code == 200, resp.text
        return resp.json()


def make_culler_hub(make_hub, tmp_path, users, *args, extra="", db_url="", scheme="http"):
    workdir = tmp_path / "culler"
    workdir.mkdir(exist_ok=True)
    hub = make_hub(authenticator=None, start=False)
    extra = extra.replace("@PROXY_API_PORT@", str(hub.proxy_api_port))
    cfg = culler_config(
        workdir, users, *args, public_port=hub.port, extra=extra, db_url=db_url, scheme=scheme
    )
    hub.append_config(cfg)
    hub.start()
    for name in users:  # users in groups exist already (load_groups), others do not
        r = hub.api("POST", f"users/{name}")
        assert r.status_code in (201, 409), r.text
    culler = Culler(hub)
    culler.wait_up()
    return hub, culler, workdir


def servers(hub, name):
    return (hub.user_model(name) or {}).get("servers", {})


def idle_seconds(hub, name):
    srv = servers(hub, name).get("")
    if not srv or not srv.get("last_activity"):
        return None
    last = datetime.fromisoformat(srv["last_activity"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - last).total_seconds()


def wait_idle(hub, names, seconds, keep_active=(), timeout=90):
    """Wait until every server in ``names`` has been idle ``seconds`` (per the hub), while
    sending real traffic through the proxy to the servers in ``keep_active``."""

    def check():
        for name in keep_active:
            r = hub.server_api(name, "GET", "contents")
            assert r.status_code == 200, r.text
        return all((idle_seconds(hub, n) or 0) >= seconds for n in names)

    wait_until(check, timeout=timeout, interval=1, what=f"{names} idle for {seconds}s")


def user_token(hub, name, scopes):
    resp = hub.api("POST", f"users/{name}/tokens", json={"scopes": scopes, "note": "e2e"})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def culler_pids(hub) -> list[int]:
    """PIDs of this hub's culler (its command line names the hub's public port)."""
    marker = f"--LabIdleCuller.server_base_url=http://127.0.0.1:{hub.port}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"jupyterhub_lab_ext.services.culler" in cmdline and marker in cmdline:
                pids.append(int(entry))
    return pids


# ---------------------------------------------------------------------------------------------


def test_rest_auth_and_bad_input(make_hub, tmp_path, user_prefix):
    reader, nobody = f"{user_prefix}reader", f"{user_prefix}nobody"
    hub, culler, _ = make_culler_hub(
        make_hub, tmp_path, {reader: ["culler-readers"], nobody: ["others"]}, "--timeout=600"
    )
    read_token = user_token(hub, reader, [f"access:services!service={SERVICE}"])
    nobody_token = user_token(hub, nobody, [f"read:users:name!user={nobody}"])

    assert culler.call("GET", "health", token=False).status_code == 200
    for path in ("api/status", f"api/users/{reader}", "metrics"):
        r = culler.call("GET", path, token=False)
        assert r.status_code == 401 and r.json()["status"] == 401
        r = culler.call("GET", path, token="not-a-real-token")
        assert r.status_code == 401
        r = culler.call("GET", path, token=nobody_token)
        assert r.status_code == 403 and r.json()["status"] == 403
        r = culler.call("GET", path, token=read_token)
        assert r.status_code == 200, r.text
    # reads are not writes
    assert culler.call("POST", "api/passes", token=read_token).status_code == 403
    r = culler.call("PUT", f"api/exemptions/{reader}", token=read_token, json={})
    assert r.status_code == 403
    # the admin-scoped service may, and bad bodies are 400s with a message
    r = culler.call("PUT", f"api/exemptions/{reader}", content=b"{nope")
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = culler.call("PUT", f"api/exemptions/{reader}", json={"until": "2001-01-01T00:00:00Z"})
    assert r.status_code == 400 and "past" in r.json()["message"]
    r = culler.call("GET", "api/users/no-such-user", token=read_token)
    assert r.status_code == 404


def test_idle_culled_active_kept_group_override_and_dry_run(make_hub, tmp_path, user_prefix):
    idle, active, teacher = (f"{user_prefix}{n}" for n in ("idle", "active", "teacher"))
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {idle: [], active: [], teacher: ["teachers"]},
        "--timeout=10",
        "--cull-every=3600",
        "--LabIdleCuller.group_timeouts={'teachers': 3600}",
    )
    for name in (idle, active, teacher):
        hub.start_server(name)
    wait_idle(hub, [idle, teacher], 14, keep_active=[active])

    report = culler.run_pass(dry_run=True)
    assert report["dry_run"] is True
    assert [e["user"] for e in report["culled"]] == [idle]
    assert all(servers(hub, n).get("", {}).get("ready") for n in (idle, active, teacher))

    report = culler.run_pass()
    assert [(e["user"], e["reason"]) for e in report["culled"] + report["stopping"]] == [
        (idle, "idle")
    ]
    wait_until(lambda: "" not in servers(hub, idle), timeout=60, what="idle server gone")
    assert servers(hub, active)[""]["ready"] and servers(hub, teacher)[""]["ready"]

    view = culler.call("GET", f"api/users/{teacher}").json()
    assert (view["timeout_seconds"], view["timeout_source"]) == (3600, "group:teachers")
    status = culler.call("GET", "api/status").json()
    assert status["last_pass"]["counts"]["culled"] + status["last_pass"]["counts"]["stopping"] == 1
    metrics = culler.call("GET", "metrics").text
    assert 'jhle_culler_culls_total{kind="server",reason="idle"} 1.0' in metrics


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_exemption_survives_service_restart(make_hub, tmp_path, user_prefix, request, store):
    alice, bob = f"{user_prefix}alice", f"{user_prefix}bob"
    db_url = ""
    if store == "postgresql":
        # a plain postgresql:// URL, as an admin would write it (the store picks psycopg 3)
        db_url = request.getfixturevalue("postgres").url().replace("+psycopg", "")
    hub, culler, _ = make_culler_hub(
        make_hub, tmp_path, {alice: [], bob: []}, "--timeout=8", "--cull-every=3600", db_url=db_url
    )
    r = culler.call("PUT", f"api/exemptions/{alice}", json={"reason": "long job"})
    assert r.status_code == 201, r.text
    hub.start_server(alice)
    hub.start_server(bob)
    wait_idle(hub, [alice, bob], 10)

    # the hub restarts its managed service when it exits; the new process's first pass
    # (at start) must honour the exemption it finds in its database
    old = culler_pids(hub)
    assert len(old) == 1
    os.kill(old[0], signal.SIGTERM)
    wait_until(
        lambda: (p := culler_pids(hub)) and p != old,
        timeout=90,
        interval=1,
        what="hub restarted the culler",
    )
    culler.wait_up(timeout=60)
    wait_until(lambda: "" not in servers(hub, bob), timeout=60, what="bob's server culled")
    assert servers(hub, alice)[""]["ready"]
    status = culler.call("GET", "api/status").json()
    assert status["last_pass"]["trigger"] == "timer"

    view = culler.call("GET", f"api/users/{alice}").json()
    assert view["exemption"]["reason"] == "long job" and view["timeout_source"] == "exemption"
    report = culler.run_pass()
    assert report["culled"] == [] and report["stopping"] == []
    assert servers(hub, alice)[""]["ready"]

    assert culler.call("DELETE", f"api/exemptions/{alice}").status_code == 204
    report = culler.run_pass()
    assert [e["user"] for e in report["culled"] + report["stopping"]] == [alice]


def test_stuck_pending_spawn_stopped(make_hub, tmp_path, user_prefix):
    stuck = f"{user_prefix}stuck"
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {stuck: []},
        "--timeout=600",
        "--cull-every=2",
        "--pending-timeout=5",
        # a "server" that never answers: the spawn stays pending until start_timeout
        extra='c.Spawner.cmd = ["/bin/sh", "-c", "exec sleep 600", "stuck"]\n'
        "c.Spawner.start_timeout = 600\nc.Spawner.http_timeout = 600\n"
        # the spawn request returns 202 at once instead of waiting for the server
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n",
    )
    r = hub.api("POST", f"users/{stuck}/server", json={})
    assert r.status_code == 202, r.text
    assert servers(hub, stuck)[""]["pending"] == "spawn"
    wait_until(lambda: "" not in servers(hub, stuck), timeout=90, interval=1, what="spawn stopped")
    metrics = culler.call("GET", "metrics").text
    assert 'jhle_culler_culls_total{kind="server",reason="stuck-spawn"} 1.0' in metrics


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((time.monotonic(), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_warning_before_cull(make_hub, tmp_path, user_prefix):
    carol = f"{user_prefix}carol"
    port = free_port()
    _Receiver.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        hub, culler, _ = make_culler_hub(
            make_hub,
            tmp_path,
            {carol: []},
            "--timeout=14",
            "--cull-every=2",
            "--warning-period=8",
            f"--webhook-url=http://127.0.0.1:{port}/hook",
        )
        hub.start_server(carol)
        wait_until(lambda: _Receiver.received, timeout=90, interval=0.5, what="webhook POST")
        warned_at, payload = _Receiver.received[0]
        assert payload["event"] == "cull-warning" and payload["user"] == carol
        assert payload["seconds_left"] > 0
        assert servers(hub, carol)[""]["ready"]  # warned, not culled yet
        view = culler.call("GET", f"api/users/{carol}").json()
        assert view["servers"][""]["warned_at"] is not None
        wait_until(lambda: "" not in servers(hub, carol), timeout=90, interval=1, what="cull")
        assert [p["user"] for _, p in _Receiver.received] == [carol]  # warned once
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(10)


def test_busy_kernel_keeps_server(make_hub, tmp_path, user_prefix):
    busy, quiet = f"{user_prefix}busy", f"{user_prefix}quiet"
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {busy: [], quiet: []},
        "--timeout=10",
        "--cull-every=3600",
        "--kernel-aware=True",
    )

    kernels = {}
    for name in (busy, quiet):
        hub.start_server(name)
        r = hub.server_api(name, "POST", "kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernels[name] = r.json()["id"]
    assert (
        run_in_kernel(hub, quiet, kernels[quiet], "print(6 * 7)", timeout=120)["stdout"] == "42\n"
    )
    with pytest.raises(TimeoutError):
        run_in_kernel(hub, busy, kernels[busy], "import time; time.sleep(900)", timeout=5)
    state = {k["id"]: k["execution_state"] for k in hub.server_api(busy, "GET", "kernels").json()}
    assert state[kernels[busy]] == "busy"

    wait_idle(hub, [busy, quiet], 12)
    report = culler.run_pass()
    assert [e["user"] for e in report["culled"] + report["stopping"]] == [quiet]
    wait_until(lambda: "" not in servers(hub, quiet), timeout=60, what="quiet server gone")
    assert servers(hub, busy)[""]["ready"]


def test_browser_oauth_cookie(make_hub, tmp_path, user_prefix):
    """A logged-in browser reaches the REST API through the hub's OAuth, and writes need xsrf."""
    reader, other = f"{user_prefix}reader", f"{user_prefix}other"
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {reader: ["culler-readers"], other: []},
        "--timeout=600",
        extra="c.DummyAuthenticator.allow_all = True\n",
    )
    with httpx.Client(follow_redirects=True, timeout=60) as browser:
        page = browser.get(f"{hub.url}/hub/login")
        xsrf = browser.cookies.get("_xsrf", path="/hub/")
        assert page.status_code == 200 and xsrf
        r = browser.post(
            f"{hub.url}/hub/login",
            data={"username": reader, "password": "pw", "_xsrf": xsrf},
        )
        assert r.status_code == 200, r.text[:500]
        # first visit: redirected through the hub's OAuth authorize step, back with a cookie
        r = browser.get(culler.base + "api/status", headers={"Accept": "text/html"})
        if r.status_code == 200 and "oauth2/authorize" in str(r.url):  # confirmation page
            pytest.fail("unexpected OAuth confirmation page: " + str(r.url))
        assert r.status_code == 200, (r.status_code, str(r.url), r.text[:300])
        assert r.json()["service"] == SERVICE
        assert any(c.name == "service-idle-culler" for c in browser.cookies.jar)
        # the cookie alone authenticates API calls now
        r = browser.get(culler.base + f"api/users/{reader}")
        assert r.status_code == 200 and r.json()["name"] == reader
        # a cross-site style POST with the cookie but without the xsrf token is refused
        r = browser.post(culler.base + "api/passes?dry_run=1", headers={"Sec-Fetch-Mode": "cors"})
        assert r.status_code in (401, 403)
    with httpx.Client(follow_redirects=True, timeout=60) as browser:
        page = browser.get(f"{hub.url}/hub/login")
        xsrf = browser.cookies.get("_xsrf", path="/hub/")
        browser.post(
            f"{hub.url}/hub/login", data={"username": other, "password": "pw", "_xsrf": xsrf}
        )
        r = browser.get(culler.base + "api/status", headers={"Accept": "text/html"})
        # a user without access:services!service=idle-culler is refused by the hub or by us
        assert r.status_code == 403, (r.status_code, str(r.url))


def test_cull_inactive_users(make_hub, tmp_path, user_prefix):
    gone, stopped, boss, fresh = (f"{user_prefix}{n}" for n in ("gone", "stopped", "boss", "fresh"))
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {gone: [], stopped: [], boss: []},
        "--timeout=8",
        "--cull-every=3600",
        "--cull-users=True",
        "--cull-admin-users=False",
        extra=f"""
c.Authenticator.admin_users = {{{boss!r}}}
c.JupyterHub.load_roles.append(
    {{"name": "culler-users", "services": [{SERVICE!r}], "scopes": ["delete:users", "read:users"]}}
)
""",
    )
    hub.start_server(stopped)
    wait_until(
        lambda: all((hub.user_model(n) or {}).get("admin") is not None for n in (gone, boss)),
        timeout=30,
        what="users exist",
    )
    time.sleep(10)  # everyone (and the server) idle past the timeout
    r = hub.api("POST", f"users/{fresh}")
    assert r.status_code == 201, r.text
    report = culler.run_pass()
    deleted = sorted(e["user"] for e in report["users_deleted"])
    stopped_now = [e["user"] for e in report["culled"]]
    # the idle server is stopped and its user deleted in the same pass (unless the stop is slow)
    assert stopped_now == [stopped]
    assert gone in deleted and boss not in deleted and fresh not in deleted
    assert hub.user_model(gone) is None
    assert hub.user_model(boss) is not None and hub.user_model(fresh) is not None
    if stopped not in deleted:  # its stop was still pending: deleted by the next pass
        wait_until(lambda: "" not in servers(hub, stopped), timeout=60, what="server stopped")
        report = culler.run_pass()
        assert [e["user"] for e in report["users_deleted"]] == [stopped]
    assert hub.user_model(stopped) is None


def test_internal_ssl(make_hub, tmp_path, user_prefix):
    """With c.JupyterHub.internal_ssl the hub gives the service certificates; it serves TLS and
    calls the Hub API with its client certificate."""
    dave = f"{user_prefix}dave"
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        {dave: []},
        "--timeout=6",
        "--cull-every=3600",
        extra=f"c.JupyterHub.internal_ssl = True\n"
        f"c.JupyterHub.internal_certs_location = {str(tmp_path / 'internal-ssl')!r}\n"
        # the proxy's API speaks TLS too
        "c.ConfigurableHTTPProxy.api_url = 'https://127.0.0.1:@PROXY_API_PORT@'\n",
        # an https service url would make JupyterHub 6.1.1's own health check of the service
        # fail ("Cannot create a client socket with a PROTOCOL_TLS_SERVER context")
        scheme="http",
    )
    log = hub.log_text()
    assert "Hub API listening on https://127.0.0.1" in log  # the culler must use TLS for it
    hub.start_server(dave)
    wait_idle(hub, [dave], 8)
    report = culler.run_pass()
    assert [e["user"] for e in report["culled"] + report["stopping"]] == [dave]
    assert report["counts"]["errors"] == 0


def test_latency_budget_still_culls_what_it_should(make_hub, tmp_path, user_prefix):
    """With a hub latency budget the culler times the real hub and adapts its stops in flight;
    it still stops exactly the idle servers."""
    names = [f"{user_prefix}b{i:02d}" for i in range(40)]
    idle, active = names[:30], names[30:]
    hub, culler, _ = make_culler_hub(
        make_hub,
        tmp_path,
        dict.fromkeys(names, []),
        "--timeout=5",
        "--cull-every=3600",
        "--concurrency=10",
        "--hub-latency-budget=25",
        extra=FAKE_SPAWNER,
    )
    for name in names:
        r = hub.api("POST", f"users/{name}/server", json={})
        assert r.status_code in (201, 202), r.text
    wait_until(
        lambda: all(servers(hub, n).get("", {}).get("ready") for n in names),
        timeout=60,
        what="fake servers ready",
    )
    time.sleep(6)  # every server idle past the timeout
    soon = (datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()
    for name in active:  # activity reported by the server (in the future: stays fresh)
        r = hub.api(
            "POST", f"users/{name}/activity", json={"servers": {"": {"last_activity": soon}}}
        )
        assert r.status_code == 200, r.text

    report = culler.run_pass()
    stopped = sorted(e["user"] for e in report["culled"] + report["stopping"])
    assert stopped == idle and report["counts"]["errors"] == 0
    seen = report["hub_latency"]
    assert seen["budget_ms"] == 25 and seen["idle_ms"] is not None and seen["samples"] > 0
    assert 1 <= seen["concurrency_min"] <= seen["concurrency_max"] <= 10
    wait_until(lambda: not any(servers(hub, n).get("") for n in idle), timeout=60, what="idle gone")
    assert all(servers(hub, n)[""]["ready"] for n in active)
    metrics = culler.call("GET", "metrics").text
    assert "jhle_culler_concurrency " in metrics and "jhle_culler_hub_latency_seconds " in metrics
    status = culler.call("GET", "api/status").json()
    assert status["config"]["hub_latency_budget"] == 25
    assert status["last_pass"]["hub_latency"]["samples"] == seen["samples"]


async def test_runs_a_pass_and_stops_cleanly_on_sigterm(tmp_path):
    """The installed entry point against a fake hub: culls at start, exits 0 on SIGTERM."""
    hub = FakeHub("tok")
    now = datetime.now(timezone.utc)
    hub.add_user("idle")
    hub.add_server("idle", started=now, last_activity=now - timedelta(hours=3))
    await hub.start()
    port = free_port()
    env = {
        **child_env(),
        "JUPYTERHUB_API_TOKEN": "tok",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
    }
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "python"),
        "-m",
        "jupyterhub_lab_ext.services.culler",
        f"--url={hub.api_url}",
        "--timeout=600",
        f"--db-url=sqlite:///{tmp_path}/c.sqlite",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(300):
            if not hub.users["idle"].servers:
                break
            await asyncio.sleep(0.05)
        assert not hub.users["idle"].servers
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
        out = (await proc.stdout.read()).decode()
        assert rc == 0, out
        assert "Shutting down" in out
        assert "tok" not in out.replace("token", "")
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await hub.stop()
