"""conda-kernel spawner end to end: a real hub, real system users, real JupyterLab servers and real
ipykernel kernels inside conda-layout prefixes built by tests/e2e/envs.py.

One hub serves the whole module (spawns are what cost time, not the hub). Users:
- ``alice`` owns ``~/.conda/envs/ml`` and lists bob's env in her ``environments.txt`` (must be ignored);
- ``bob`` owns ``~/.conda/envs/secret``.
Shared: ``py`` (plain) and ``actv`` (with an ``etc/conda/activate.d`` script).
"""

from __future__ import annotations

import asyncio
import json
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from envs import base_env, make_conda_env, python_version, trusted_dir
from harness import ARTIFACTS, Hub, remove_test_users, run_coroutine, run_in_kernel, wait_until
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

PROBE = (
    "import json, os, sys; print(json.dumps({'prefix': sys.prefix, 'uid': os.getuid(),"
    " 'executable': sys.executable, 'conda_prefix': os.environ.get('CONDA_PREFIX'),"
    " 'conda_default_env': os.environ.get('CONDA_DEFAULT_ENV'),"
    " 'path0': os.environ.get('PATH', '').split(':')[0],"
    " 'activated': os.environ.get('JHLE_ACTIVATED'),"
    " 'envs_dirs': os.environ.get('CONDA_ENVS_DIRS'), 'pkgs_dirs': os.environ.get('CONDA_PKGS_DIRS')}))"
)
ACTIVATE_SH = 'export JHLE_ACTIVATED="yes:$CONDA_PREFIX"\n'


class Setup:
    def __init__(self, hub: Hub, users: dict[str, str], shared: Path, homes: dict[str, Path]):
        self.hub = hub
        self.users = users  # short -> system name
        self.shared = shared
        self.homes = homes

    def kernel_names(self, who: str) -> tuple[set[str], str]:
        resp = self.hub.server_api(self.users[who], "GET", "kernelspecs")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return set(body["kernelspecs"]), body["default"]

    def run(self, who: str, code: str, kernel: str | None = None) -> dict:
        name = self.users[who]
        body = {"name": kernel} if kernel else {}
        resp = self.hub.server_api(name, "POST", "kernels", json=body)
        assert resp.status_code == 201, resp.text
        kid = resp.json()["id"]
        try:
            out = run_in_kernel(self.hub, name, kid, code, timeout=90)
            assert out["error"] is None, out
            return out
        finally:
            self.hub.server_api(name, "DELETE", f"kernels/{kid}")

    def probe(self, who: str, kernel: str | None = None) -> dict:
        return json.loads(self.run(who, PROBE, kernel)["stdout"].strip().splitlines()[-1])

    def start(self, who: str, profile: str) -> None:
        resp = self.hub.start_server(self.users[who], options={"profile": profile})
        assert resp.status_code in (201, 202), resp.text

    def stop(self, who: str) -> None:
        name = self.users[who]
        if (self.hub.user_model(name) or {}).get("servers"):
            self.hub.stop_server(name)

    def log_lines_after(self, start: int, last: str) -> list[str]:
        """Hub log lines written after character ``start``, once a line with ``last`` is there."""

        def written():
            text = self.hub.log_text()[start:]
            return text if last in text else None

        return wait_until(written, timeout=15, what=f"{last!r} in the hub log").splitlines()


def assert_one_refusal_warning(lines: list[str], name: str, access_line: str) -> None:
    """A refused spawn: one warning from the spawner, JupyterHub's access-log line, no error, no
    traceback (before: 2 to 4 error records, 1 or 2 of them with a traceback). The first discovery
    for a user may add its lines about skipped envs."""
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    assert not [line for line in lines if line.startswith(("[E", "[C"))], "\n".join(lines)
    warnings = [line for line in lines if line.startswith("[W") and " skipped " not in line]
    assert len(warnings) == 2, "\n".join(lines)
    assert f"user={name} refused a spawn: environment " in warnings[0]
    assert access_line in warnings[1]


@pytest.fixture(scope="module")
def setup(oidc, tmp_path_factory):
    prefix = f"jt{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-conda-e2e-"))
    work.chmod(0o755)
    home_root = work / "homes"
    home_root.mkdir(mode=0o755)
    trusted = trusted_dir("conda-e2e-")  # shared envs must be safe from users up to /
    shared = trusted / "conda" / "envs"
    hub = None
    try:
        base_env()  # build (or reuse) the cached ipykernel venv before timing anything else
        users = {short: f"{prefix}{short}" for short in ("alice", "bob")}
        homes = {}
        for short, name in users.items():
            subprocess.run(["useradd", "-m", "-b", str(home_root), name], check=True)
            homes[short] = Path(pwd.getpwnam(name).pw_dir)
            oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
        make_conda_env(shared / "py")
        make_conda_env(shared / "actv", activate={"jhle.sh": ACTIVATE_SH})
        for p in (trusted / "conda", shared):
            p.chmod(0o755)
        make_conda_env(homes["alice"] / ".conda" / "envs" / "ml", owner=users["alice"])
        secret = make_conda_env(homes["bob"] / ".conda" / "envs" / "secret", owner=users["bob"])
        txt = homes["alice"] / ".conda" / "environments.txt"
        txt.write_text(f"{secret}\n{homes['alice'] / '.conda' / 'envs' / 'ml'}\n")
        shutil.chown(txt, users["alice"])
        shutil.chown(homes["alice"] / ".conda", users["alice"])
        shutil.chown(homes["alice"] / ".conda" / "envs", users["alice"])
        shutil.chown(homes["bob"] / ".conda", users["bob"])
        shutil.chown(homes["bob"] / ".conda" / "envs", users["bob"])

        hub = Hub(
            tmp_path_factory.mktemp("conda-hub"),
            provider=oidc,
            authenticator="generic-local",
            home_root=home_root,
            username_prefix=prefix,
            config=f"""
            c.JupyterHub.spawner_class = "conda-kernel"
            c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]
            c.CondaKernelSpawner.default_env = "shared/py"
            """,
        )
        hub.start()
        for name in users.values():
            resp = hub.api("POST", f"users/{name}")
            assert resp.status_code in (201, 409), resp.text
        yield Setup(hub, users, shared, homes)
    finally:
        if hub is not None:
            hub.stop()
        remove_test_users(prefix, [home_root])
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(trusted, ignore_errors=True)


EXPECTED_ALICE = {"shared-py", "shared-actv", "mine-ml"}


@pytest.mark.parametrize(
    "profile, kernel, where",
    [
        pytest.param("shared/py", "shared-py", "shared", id="shared"),
        pytest.param("shared/actv", "shared-actv", "shared", id="shared-with-activate-d"),
        pytest.param("mine/ml", "mine-ml", "alice", id="own"),
    ],
)
def test_each_env_runs_as_the_user_with_exact_kernels(setup, profile, kernel, where):
    alice = pwd.getpwnam(setup.users["alice"])
    prefix = {
        "shared": setup.shared / profile.split("/")[1],
        "alice": setup.homes["alice"] / ".conda" / "envs" / "ml",
    }[where]
    try:
        setup.start("alice", profile)
        server = setup.hub.user_model(setup.users["alice"])["servers"][""]
        assert server["user_options"] == {"profile": profile}

        names, default = setup.kernel_names("alice")
        assert names == EXPECTED_ALICE  # no python3 of the server, nothing of bob's
        assert default == kernel

        info = setup.probe("alice")  # no name: the default kernel
        assert info["prefix"] == str(prefix)
        assert info["executable"] == str(prefix / "bin" / "python")
        assert info["uid"] == alice.pw_uid
        assert info["conda_prefix"] == str(prefix)
        assert info["conda_default_env"] == prefix.name
        assert info["path0"] == str(prefix / "bin")
        expected_activation = f"yes:{prefix}" if profile == "shared/actv" else None
        assert info["activated"] == expected_activation
        # users can `conda create -n` into their home although the shared root is read-only
        assert info["envs_dirs"] == str(setup.homes["alice"] / ".conda" / "envs")
        assert info["pkgs_dirs"] == str(setup.homes["alice"] / ".conda" / "pkgs")
    finally:
        setup.stop("alice")


async def _interrupt_sleeping_kernel(ws_url: str, token: str, interrupt) -> dict:
    """Run a long sleep; once the kernel reports it is sleeping, call ``interrupt()``; return the
    reply's error content (None if the cell finished without one)."""
    req = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}, request_timeout=60)
    conn = await asyncio.wait_for(websocket_connect(req), 60)
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": "e2e",
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": "",
    }
    code = "import time; print('sleeping', flush=True); time.sleep(300)"
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    message = {"header": header, "parent_header": {}, "metadata": {}, "channel": "shell"}
    conn.write_message(json.dumps({**message, "buffers": [], "content": content}))
    deadline = time.monotonic() + 120
    interrupted = False
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            assert raw is not None, "kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and "sleeping" in msg["content"]["text"] and not interrupted:
                await asyncio.to_thread(interrupt)
                interrupted = True
            elif kind == "execute_reply":
                return msg["content"]
        raise TimeoutError("no execute_reply")
    finally:
        conn.close()


def test_interrupt_works_through_the_activation_wrapper(setup):
    name = setup.users["alice"]
    try:
        setup.start("alice", "shared/actv")
        resp = setup.hub.server_api(name, "POST", "kernels", json={"name": "shared-actv"})
        assert resp.status_code == 201, resp.text
        kid = resp.json()["id"]
        ws = f"ws://127.0.0.1:{setup.hub.port}/user/{name}/api/kernels/{kid}/channels"

        def interrupt():
            r = setup.hub.server_api(name, "POST", f"kernels/{kid}/interrupt")
            assert r.status_code == 204, r.text

        reply = run_coroutine(
            lambda: _interrupt_sleeping_kernel(ws, setup.hub.admin_token, interrupt)
        )
        # the 300 s sleep ended early, by the interrupt reaching the kernel through the sh wrapper
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        after = run_in_kernel(setup.hub, name, kid, "print(6 * 7)", timeout=60)
        assert after["error"] is None and after["stdout"].strip() == "42"  # same kernel lives on
    finally:
        setup.stop("alice")


@pytest.mark.parametrize(
    "options",
    [
        {"profile": "mine/secret"},
        {"profile": "shared/../mine/secret"},
        {"profile": "BOB_ENV"},
        {"env": "mine/nope"},
    ],
    ids=["other-users-env", "traversal", "path", "alias"],
)
def test_forged_env_is_refused_over_rest(setup, options):
    if options.get("profile") == "BOB_ENV":
        options = {"profile": str(setup.homes["bob"] / ".conda" / "envs" / "secret")}
    name = setup.users["alice"]
    start = len(setup.hub.log_text())
    resp = setup.hub.api("POST", f"users/{name}/server", json=options)
    assert resp.status_code == 400, resp.text
    assert "Unknown environment" in resp.json()["message"]
    assert setup.hub.user_model(name)["servers"] == {}
    access = f"400 POST /hub/api/users/{name}/server"
    assert_one_refusal_warning(setup.log_lines_after(start, access), name, access)


def test_forged_env_is_refused_through_the_form(setup):
    name = setup.users["alice"]
    client, resp = setup.hub.login(name, next_url="/hub/spawn")
    try:
        assert resp.status_code == 200, resp.text[:300]
        assert 'value="mine/ml"' in resp.text and 'value="shared/actv"' in resp.text
        assert "secret" not in resp.text  # bob's env, listed in alice's environments.txt
        xsrf = client.cookies.get("_xsrf", path="/hub/")
        start = len(setup.hub.log_text())
        forged = client.post(
            f"{setup.hub.url}/hub/spawn/{name}",
            data={"profile": "mine/secret", "_xsrf": xsrf},
        )
        assert forged.status_code == 400, forged.text[:500]
        assert "Unknown environment" in forged.text
        assert 'value="mine/ml"' in forged.text  # the form again, to pick a real env
    finally:
        client.close()
    assert setup.hub.user_model(name)["servers"] == {}
    access = f"400 POST /hub/spawn/{name}"
    assert_one_refusal_warning(setup.log_lines_after(start, access), name, access)


def test_kernel_outside_the_offered_set_is_a_clear_404(setup):
    """As the user, in their browser session: python3 of the server's env, bob's env, a made-up
    name. (Before: 500 with "Unhandled error".)"""
    name = setup.users["alice"]
    try:
        setup.start("alice", "shared/py")
        client, resp = setup.hub.login(name, next_url=f"/user/{name}/lab")
        try:
            assert resp.status_code == 200 and f"/user/{name}/lab" in str(resp.url), resp.url
            api = f"{setup.hub.url}/user/{name}/api/kernels"
            headers = {"X-XSRFToken": client.cookies.get("_xsrf", path=f"/user/{name}/")}
            start = len(setup.hub.log_text())
            for kernel in ("python3", "mine-secret", "shared-nope"):
                refused = client.post(api, json={"name": kernel}, headers=headers)
                assert refused.status_code == 404, (kernel, refused.status_code, refused.text)
                assert refused.json()["message"] == (
                    f"No kernel {kernel!r}: only the kernels of the shared environments and of "
                    "your own environments can be started here (shared-actv, shared-py, mine-ml)."
                )
            # the server's log (the hub's here): a warning per refusal, no traceback
            access = f"404 POST /user/{name}/api/kernels ({name}@"
            wait_until(lambda: setup.hub.log_text()[start:].count(access) == 3, timeout=15)
            assert "Traceback" not in setup.hub.log_text()[start:]
            started = client.post(api, json={"name": "shared-py"}, headers=headers)
            assert started.status_code == 201, started.text
            kid = started.json()["id"]
            assert run_in_kernel(setup.hub, name, kid, "print(6 * 7)")["stdout"].strip() == "42"
            assert client.delete(f"{api}/{kid}", headers=headers).status_code == 204
        finally:
            client.close()
        assert setup.hub.server_api(name, "GET", "kernels").json() == []
    finally:
        setup.stop("alice")


def test_env_created_while_running_appears_and_deleted_disappears(setup):
    name = setup.users["alice"]
    late = setup.homes["alice"] / ".conda" / "envs" / "late"
    try:
        setup.start("alice", "shared/py")
        assert setup.kernel_names("alice")[0] == EXPECTED_ALICE
        make_conda_env(late, owner=name)
        names, _ = setup.kernel_names("alice")
        assert names == EXPECTED_ALICE | {"mine-late"}
        assert setup.probe("alice", "mine-late")["prefix"] == str(late)

        shutil.rmtree(late)
        assert setup.kernel_names("alice")[0] == EXPECTED_ALICE
        refused = setup.hub.server_api(name, "POST", "kernels", json={"name": "mine-late"})
        assert refused.status_code != 201
        for outside in ("python3", "mine-secret"):  # not listed, so not startable by name
            resp = setup.hub.server_api(name, "POST", "kernels", json={"name": outside})
            assert resp.status_code != 201, (outside, resp.text)
        assert setup.hub.server_api(name, "GET", "kernels").json() == []
    finally:
        shutil.rmtree(late, ignore_errors=True)
        setup.stop("alice")


def test_rest_spawn_without_options_gets_the_default_env(setup):
    name = setup.users["bob"]
    try:
        resp = setup.hub.start_server(name, options={})
        assert resp.status_code in (201, 202), resp.text
        assert setup.hub.user_model(name)["servers"][""]["user_options"] == {"profile": "shared/py"}
        names, default = setup.kernel_names("bob")
        assert names == {"shared-py", "shared-actv", "mine-secret"}  # nothing of alice's
        assert default == "shared-py"
        assert setup.probe("bob")["prefix"] == str(setup.shared / "py")
    finally:
        setup.stop("bob")


def _browser_login(page, hub: Hub, name: str, next_url: str) -> None:
    page.goto(f"{hub.url}/hub/oauth_login?next={next_url}")
    for _ in range(4):  # provider login form, then consent form
        if page.url.startswith(hub.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", name)
            page.fill("input[name=password]", "pw")
        page.locator("button[type=submit]").first.click()
        page.wait_for_load_state()
    assert page.url.startswith(hub.url), page.url


def test_browser_spawn_form_and_launcher(setup, page):
    ARTIFACTS.mkdir(exist_ok=True)
    name = setup.users["bob"]
    try:
        _browser_login(page, setup.hub, name, "/hub/spawn")
        page.wait_for_selector("#jhle-shared-envs")
        shared = page.locator("#jhle-shared-envs input[type=radio]")
        mine = page.locator("#jhle-user-envs input[type=radio]")
        assert sorted(shared.evaluate_all("els => els.map(e => e.value)")) == [
            "shared/actv",
            "shared/py",
        ]
        assert mine.evaluate_all("els => els.map(e => e.value)") == ["mine/secret"]
        assert "Python 3." in page.inner_text("#jhle-user-envs")
        page.screenshot(path=str(ARTIFACTS / "conda-kernel-spawn-form.png"), full_page=True)

        page.check("input[value='mine/secret']")
        page.locator("form input[type=submit], form button[type=submit]").last.click()
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        section = page.locator(".jp-Launcher-section", has_text="Notebook").first
        section.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
        labels = section.locator(".jp-LauncherCard-label").all_inner_texts()
        ver = python_version()
        assert sorted(label.strip() for label in labels) == [
            f"Python {ver} (mine/secret)",
            f"Python {ver} (shared/actv)",
            f"Python {ver} (shared/py)",
        ]
        page.screenshot(path=str(ARTIFACTS / "conda-kernel-launcher.png"), full_page=True)
        model = setup.hub.user_model(name)
        assert model["servers"][""]["user_options"] == {"profile": "mine/secret"}
        names = set(
            httpx.get(
                f"{setup.hub.url}/user/{name}/api/kernelspecs",
                headers={"Authorization": f"token {setup.hub.admin_token}"},
                timeout=30,
            ).json()["kernelspecs"]
        )
        assert names == {"shared-py", "shared-actv", "mine-secret"}
    finally:
        setup.stop("bob")
