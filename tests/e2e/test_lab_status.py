"""The JupyterLab status item end to end: a real hub, the conda-kernel spawner with real system
users, real JupyterLab in headless Chromium, the idle culler and the user-limit service.

One hub for the module. The culler runs with a short timeout (``TIMEOUT`` s, warning
``WARNING`` s before, a pass every 3 s). So that only what the test does counts as activity,
the hub never takes activity from the proxy or from the servers' own reports in the test's time
(``last_activity_interval`` and ``JUPYTERHUB_ACTIVITY_INTERVAL`` are an hour): an open JupyterLab
tab alone does not keep a server; the "Keep my server" action does.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from envs import make_conda_env, trusted_dir
from harness import ARTIFACTS, Hub, free_port, remove_test_users, wait_until

TIMEOUT = 60
WARNING = 40
CULL_EVERY = 3
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "_static" / "lab-status"


class Setup:
    def __init__(self, hub: Hub, users: dict[str, str]):
        self.hub = hub
        self.users = users

    def service(self, name: str, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.hub.url}/services/{name}/{path}",
            headers={"Authorization": f"token {self.hub.admin_token}"},
            timeout=30,
            **kw,
        )

    def running(self, name: str) -> bool:
        return "" in (self.hub.user_model(name) or {}).get("servers", {})

    def stop(self, name: str) -> None:
        if self.running(name):
            self.hub.stop_server(name)


@pytest.fixture(scope="module")
def setup(oidc, tmp_path_factory):
    prefix = f"jt{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-lab-e2e-"))
    work.chmod(0o755)
    home_root = work / "homes"
    home_root.mkdir(mode=0o755)
    trusted = trusted_dir("lab-e2e-")
    shared = trusted / "envs"
    hub = None
    try:
        users = {short: f"{prefix}{short}" for short in ("kim", "lou", "ned", "oli")}
        for name in users.values():
            subprocess.run(["useradd", "-m", "-b", str(home_root), name], check=True)
            oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
        make_conda_env(shared / "data")
        shared.chmod(0o755)
        hub = Hub(
            tmp_path_factory.mktemp("lab-hub"),
            provider=oidc,
            authenticator="generic-local",
            home_root=home_root,
            username_prefix=prefix,
            config=f"""
            from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
            from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit
            c.JupyterHub.spawner_class = "conda-kernel"
            c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]
            c.CondaKernelSpawner.default_env = "shared/data"
            c.CondaKernelSpawner.lab_status_refresh = 5
            c.JupyterHub.last_activity_interval = 3600
            c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "3600"}}
            enable_idle_culler(c, url="http://127.0.0.1:{free_port()}", args=[
                "--timeout={TIMEOUT}", "--cull-every={CULL_EVERY}", "--warning-period={WARNING}"])
            enable_user_limit(c, {{"reconcile_interval": 3, "housekeeping_interval": 0.5}},
                              url="http://127.0.0.1:{free_port()}")
            """,
        )
        hub.start()
        for name in users.values():
            resp = hub.api("POST", f"users/{name}")
            assert resp.status_code in (201, 409), resp.text
        s = Setup(hub, users)
        for svc in ("idle-culler", "user-limit"):
            wait_until(
                lambda svc=svc: s.service(svc, "GET", "health").status_code == 200,
                timeout=60,
                what=f"{svc} health",
            )
        yield s
    finally:
        if hub is not None:
            hub.stop()
        remove_test_users(prefix, [home_root])
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(trusted, ignore_errors=True)


def _login(page, hub: Hub, name: str, next_url: str) -> None:
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


def _open_lab(page, setup: Setup, name: str, env: str = "shared/data") -> None:
    """Log in and open JupyterLab; when the server is not running, pick ``env`` in the form."""
    _login(page, setup.hub, name, f"/hub/spawn/{name}")
    page.wait_for_selector("#jp-main-dock-panel, #jhle-shared-envs", timeout=120_000)
    if page.locator("#jhle-shared-envs").count():
        page.check(f"input[value='{env}']")
        page.locator("form input[type=submit], form button[type=submit]").last.click()
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)


def _item(page):
    return page.locator(".jp-jhle-status")


def _popup_text(page) -> str:
    _item(page).click()
    details = page.locator(".jp-jhle-details")
    details.wait_for()
    return details.inner_text()


def _shot(page, name: str, docs: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"lab-status-{name}.png"))
    if docs:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"))


def _last_activity(setup: Setup, name: str) -> datetime:
    model = setup.hub.user_model(name)
    stamp = model["servers"][""]["last_activity"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_keep_my_server_postpones_the_cull_and_without_it_the_server_is_culled(setup, page):
    kim, lou = setup.users["kim"], setup.users["lou"]
    try:
        # lou: started and left alone (no JupyterLab open): culled after the timeout
        assert setup.hub.start_server(lou).status_code in (201, 202)
        _open_lab(page, setup, kim)  # spawns kim with the default env
        _item(page).wait_for(timeout=30_000)
        wait_until(lambda: "shared/data" in _item(page).inner_text(), timeout=30, what="env")
        _shot(page, "item", docs=True)
        kim_due = _last_activity(setup, kim) + timedelta(seconds=TIMEOUT)
        lou_due = _last_activity(setup, lou) + timedelta(seconds=TIMEOUT)

        toast = page.locator(".Toastify__toast", has_text="Your server is idle and stops in")
        toast.wait_for(timeout=(TIMEOUT + 20) * 1000)
        assert "idle - stops in" in _item(page).inner_text()
        _shot(page, "warning", docs=True)
        toast.get_by_role("button", name="Keep my server").click()
        wait_until(lambda: _last_activity(setup, kim) > kim_due - timedelta(seconds=TIMEOUT),
                   timeout=15, what="kim's activity at the hub")  # fmt: skip

        # lou is culled at its cull time; kim, past its original cull time, still runs
        wait_until(lambda: not setup.running(lou), timeout=TIMEOUT + 30, what="lou culled")
        assert datetime.now(timezone.utc) >= lou_due
        past = (kim_due - datetime.now(timezone.utc)).total_seconds() + 2 * CULL_EVERY + 3
        time.sleep(max(0.0, past))
        assert setup.running(kim), setup.hub.log_tail()
        view = setup.service("idle-culler", "GET", f"api/users/{kim}").json()
        new_due = datetime.fromisoformat(view["servers"][""]["cull_at"].replace("Z", "+00:00"))
        assert new_due > kim_due + timedelta(seconds=10), view
        text = _popup_text(page)
        assert "Environment: shared/data" in text
        _shot(page, "popup", docs=True)
    finally:
        setup.stop(lou)


def test_admin_exemption_shows_its_message(setup, page):
    kim = setup.users["kim"]
    until = (datetime.now() + timedelta(days=3)).replace(hour=18, minute=0, second=0)
    resp = setup.service(
        "idle-culler",
        "PUT",
        f"api/exemptions/{kim}",
        json={"until": until.astimezone(timezone.utc).isoformat(), "reason": "exam week"},
    )
    assert resp.status_code in (200, 201), resp.text
    try:
        _open_lab(page, setup, kim)
        expected = f"kept running until {until.strftime('%a %H:%M')}: exam week"
        toast = page.locator(".Toastify__toast", has_text=expected)
        toast.wait_for(timeout=60_000)
        _shot(page, "exemption", docs=True)
        assert expected in _popup_text(page)
        # exempt: past the culler's timeout the server still runs
        assert setup.running(kim)
    finally:
        setup.service("idle-culler", "DELETE", f"api/exemptions/{kim}")
        setup.stop(kim)


def test_user_started_from_the_queue_sees_it(setup, page):
    ned, oli = setup.users["ned"], setup.users["oli"]
    resp = setup.service("user-limit", "PUT", "api/limits", json={"max_active_servers": 1})
    assert resp.status_code == 200, resp.text
    try:
        assert setup.hub.start_server(ned).status_code in (201, 202)
        resp = setup.hub.start_server(oli, wait=False)
        wait_until(
            lambda: setup.service("user-limit", "GET", "api/queue").json()["length"] == 1,
            timeout=30,
            what="oli queued",
        )
        time.sleep(2)  # a measurable wait in the queue
        setup.stop(ned)
        setup.hub.wait_ready(oli, timeout=120)
        _open_lab(page, setup, oli)
        _item(page).wait_for(timeout=30_000)
        _shot(page, "queue-item")
        text = _popup_text(page)
        assert "you started from the queue after" in text.lower(), text
        assert "hub full: 1/1 servers" in text.lower(), text
        _shot(page, "queue", docs=True)
    finally:
        setup.service("user-limit", "PUT", "api/limits", json={"max_active_servers": None})
        setup.stop(oli)
        setup.stop(ned)
