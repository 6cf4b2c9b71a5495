"""The two admin dashboards end to end: a real hub + proxy with the culler and the user-limit
service set up by their one-line helpers, real single-user servers (SimpleLocalProcessSpawner),
and headless Chromium logged in to the hub (dummy authenticator) like a person.

Checked: the hub's Services menu lists both pages; the hub's OAuth gets a browser in; the pages
follow the hub live (a server started over REST shows up without a reload); their change controls
work for an admin (exemptions, a pass, a cap) and are refused for a plain user; a hostile user
name and exemption reason are shown as text. Screenshots go to test-artifacts/; the key ones are
copied into docs/_static/dashboards/ for docs/culler.md and docs/user-limit.md.
"""

from __future__ import annotations

import re
import shutil
from urllib.parse import quote

import httpx
import pytest
from harness import ARTIFACTS, REPO, free_port, wait_until

DOCS_IMAGES = REPO / "docs" / "_static" / "dashboards"
ADMIN, PLAIN = "dash-admin", "dash-plain"
#: a user name and an exemption reason that run script if a page ever treats them as HTML
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_REASON = '<script>alert("reason")</script><b>exam</b> week'


def dashboards_config(tmp_path) -> str:
    homes = tmp_path / "homes"
    homes.mkdir(exist_ok=True)
    return f"""
from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{{ADMIN!r}}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
c.Spawner.args = ["--allow-root"]
enable_idle_culler(c, url="http://127.0.0.1:{free_port()}",
                   args=["--timeout=3600", "--cull-every=3600", "--LabIdleCuller.user_timeouts=bob=5"])
enable_user_limit(c, {{"max_active_servers": 2, "start_queued_servers": False,
                       "history_interval": 5}}, url="http://127.0.0.1:{free_port()}")
# a plain user who may read the culler's page (the user-limit service is readable by everyone)
c.JupyterHub.load_roles.append({{"name": "culler-readers", "users": [{PLAIN!r}],
                                 "scopes": ["access:services!service=idle-culler"]}})
"""


@pytest.fixture
def dash_hub(make_hub, tmp_path):
    hub = make_hub(authenticator=None, start=False)
    hub.append_config(dashboards_config(tmp_path))
    hub.start()
    for name in (ADMIN, PLAIN, "alice", "bob", HOSTILE_NAME):
        resp = hub.api("POST", f"users/{quote(name, safe='')}")
        assert resp.status_code in (201, 409), resp.text
    for service in ("idle-culler", "user-limit"):
        wait_until(
            # our service, not whatever holds its port (a busy machine: free_port() can race)
            lambda s=service: httpx.get(f"{hub.url}/services/{s}/health").json()["service"] == s,
            timeout=120,
            what=f"{service} up",
        )
    yield hub
    shutil.rmtree(tmp_path / "homes", ignore_errors=True)


def login(page, hub, name):
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")  # home: no server started
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "pw")
    page.click("#login_submit")
    page.wait_for_url("**/hub/home")


def open_dashboard(page, hub, service):
    """Through the hub's Services menu link (the service's index) and its OAuth."""
    page.goto(f"{hub.url}/services/{service}/")
    page.wait_for_url(f"**/services/{service}/dashboard")
    page.wait_for_selector("#live:not(.stale)")


def no_dialogs(page) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    return seen


def rows(page, table) -> list[str]:
    return [
        r.get_attribute("data-user") for r in page.query_selector_all(f"#{table} tr[data-user]")
    ]


def wait_text(page, selector, pattern, timeout=30):
    """Wait until the element's text matches ``pattern`` (polled from Python: the pages' CSP
    forbids the string evaluation Playwright's wait_for_function polls with)."""
    return wait_until(
        lambda: re.search(pattern, page.inner_text(selector, timeout=1000)),
        timeout=timeout,
        what=f"{selector} =~ {pattern}",
    )


def shot(page, name, docs=False):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if docs:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / name)


def test_services_menu_lists_both_dashboards(dash_hub, page):
    login(page, dash_hub, ADMIN)
    page.goto(f"{dash_hub.url}/hub/home")
    links = {
        a.inner_text(): a.get_attribute("href")
        for a in page.query_selector_all(".dropdown-menu a.dropdown-item")
    }
    assert links.get("idle-culler") == "/services/idle-culler/"
    assert links.get("user-limit") == "/services/user-limit/"


def test_culler_dashboard_live_with_admin_controls(dash_hub, page):
    dialogs = no_dialogs(page)
    login(page, dash_hub, ADMIN)
    open_dashboard(page, dash_hub, "idle-culler")
    assert page.inner_text("[data-testid=role]") == "admin"
    assert rows(page, "servers") == []

    # live: servers started elsewhere appear without a reload
    dash_hub.start_server("alice")
    dash_hub.start_server("bob")  # idle timeout 5 s: due for culling
    page.wait_for_selector("#servers tr[data-user=alice]", timeout=30_000)
    # once ready: culled an hour after its last activity (--timeout=3600)
    wait_text(page, "#servers tr[data-user=alice]", r"in (59 min|1 h)")

    # add an exemption with a hostile reason for a hostile user name, from the page
    page.fill("#exempt-form input[name=user]", HOSTILE_NAME)
    page.select_option("#exempt-form select[name=for]", "")  # until removed
    page.fill("#exempt-form input[name=reason]", HOSTILE_REASON)
    page.click("#exempt-form button[type=submit]")
    page.wait_for_selector("[data-testid=notice-ok]")
    wait_until(lambda: len(rows(page, "exemptions")) == 1, timeout=30, what="exemption row")
    row = page.query_selector("#exemptions tr[data-user]")
    assert row.get_attribute("data-user") == HOSTILE_NAME
    assert row.query_selector(".name").inner_text() == HOSTILE_NAME
    assert row.query_selector(".reason").inner_text() == HOSTILE_REASON
    assert row.query_selector("img, script, b") is None
    # what the service stored, over its REST API
    culler = f"{dash_hub.url}/services/idle-culler/"
    auth = {"Authorization": f"token {dash_hub.admin_token}"}
    stored = httpx.get(culler + "api/exemptions", headers=auth).json()["exemptions"]
    assert [(e["name"], e["reason"], e["created_by"]) for e in stored] == [
        (HOSTILE_NAME, HOSTILE_REASON, ADMIN)
    ]

    # exempt alice from her row's button, then remove that exemption again
    page.click("#servers tr[data-user=alice] button")
    assert page.input_value("#exempt-form input[name=user]") == "alice"
    page.fill("#exempt-form input[name=reason]", "demo")
    page.click("#exempt-form button[type=submit]")
    page.wait_for_selector("#exemptions tr[data-user=alice]")
    page.wait_for_selector("#servers tr[data-user=alice] .tag.exempt", timeout=30_000)
    page.click("#exemptions tr[data-user=alice] [data-testid=remove-exemption]")
    page.wait_for_selector("#exemptions tr[data-user=alice]", state="detached")
    page.wait_for_selector("#servers tr[data-user=alice] .tag.keep", timeout=30_000)
    names = [
        e["name"] for e in httpx.get(culler + "api/exemptions", headers=auth).json()["exemptions"]
    ]
    assert names == [HOSTILE_NAME]

    # bob is due; a pass from the page culls him and lands in the pass table and the chart
    page.wait_for_selector("#servers tr[data-user=bob] .tag.cull", timeout=30_000)
    page.click("#run-pass")
    page.wait_for_selector("#passes tr td:has-text('api:dash-admin')", timeout=60_000)
    wait_text(page, "#passes tr:first-child", r"api:dash-admin.*\bbob\b")
    wait_text(page, "#chart-hint", r"^1 culled in 24 h")
    page.wait_for_selector("#servers tr[data-user=bob]", state="detached", timeout=30_000)
    bars = page.query_selector_all("#culls-chart svg rect.bar")
    assert [float(b.get_attribute("height")) > 0 for b in bars].count(True) == 1
    assert dialogs == []
    shot(page, "culler-dashboard.png", docs=True)


def test_user_limit_dashboard_live_queue_and_caps(dash_hub, page):
    dialogs = no_dialogs(page)
    login(page, dash_hub, ADMIN)
    open_dashboard(page, dash_hub, "user-limit")
    gauge = "[data-testid=gauge-servers]"
    assert page.get_attribute(gauge, "data-cap") == "2"
    assert page.get_attribute(gauge, "data-used") == "0"

    dash_hub.start_server("alice")
    dash_hub.start_server("bob")
    page.wait_for_selector(f"{gauge}[data-used='2']", timeout=30_000)
    resp = dash_hub.api(
        "POST", f"users/{quote(HOSTILE_NAME, safe='')}/server", json={}, timeout=120
    )
    assert resp.status_code == 429, resp.text
    page.wait_for_selector("#queue tr[data-user]", timeout=30_000)
    assert rows(page, "queue") == [HOSTILE_NAME]
    assert page.inner_text("#queue tr[data-user] .name") == HOSTILE_NAME
    assert page.query_selector("#queue img") is None
    # the chart has samples (one every 5 s here)
    page.wait_for_selector("#usage-chart .line-active", state="attached", timeout=60_000)

    shot(page, "user-limit-dashboard.png", docs=True)

    # change a cap from the page
    page.fill("#caps-form input[name=max_active_servers]", "3")
    page.click("#caps-form button[type=submit]")
    page.wait_for_selector("[data-testid=notice-ok]")
    page.wait_for_selector(f"{gauge}[data-cap='3']", timeout=30_000)
    status = httpx.get(
        f"{dash_hub.url}/services/user-limit/api/status",
        headers={"Authorization": f"token {dash_hub.admin_token}"},
    ).json()
    assert status["limits"]["max_active_servers"] == 3
    assert status["overrides"] == {"max_active_servers": 3}
    assert dialogs == []
    shot(page, "user-limit-dashboard-cap-changed.png")


@pytest.mark.parametrize("service", ["idle-culler", "user-limit"])
def test_plain_user_sees_read_only_and_changes_are_refused(dash_hub, page, service):
    login(page, dash_hub, PLAIN)
    open_dashboard(page, dash_hub, service)
    assert page.inner_text("[data-testid=role]") == "read-only"
    if service == "idle-culler":
        assert (
            page.query_selector("#exempt-form") is None and page.query_selector("#run-pass") is None
        )
        change = "JHLEDash.api('PUT', 'api/exemptions/alice', {reason: 'me'})"
    else:
        assert page.is_disabled("#caps-form input[name=max_active_servers]")
        change = "JHLEDash.api('PUT', 'api/limits', {max_active_servers: 50})"
    # the same call the admin's page makes, with this person's cookie and XSRF token
    answer = page.evaluate(f"{change}.then(r => [r.status, r.data && r.data.message])")
    assert answer[0] == 403, answer
    assert "Requires scope" in answer[1]
    shot(page, f"{service}-dashboard-read-only.png")
