"""The userlist authenticator with a real hub, the real OIDC provider and real system users.

Identities are unique per test (the provider is shared by the session); system usernames carry
the test's ``user_prefix`` (the hub's ``username_prefix``), so cleanup removes them with homes.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import ARTIFACTS, account_locked, run_in_kernel, wait_until

EMAIL_CONFIG = """
c.UserlistOAuthenticator.username_claim = 'email'
c.UserlistOAuthenticator.domain_rules = {'example.org': ''}
"""


@pytest.fixture
def template():
    path = Path(tempfile.mkdtemp(prefix="jhle-template-"))
    path.chmod(0o755)
    (path / "welcome.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
    (path / "data").mkdir()
    (path / "data" / "table.csv").write_text("a,b\n1,2\n")
    (path / "escape").symlink_to("/etc")  # leaves the template: must not be copied
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tag() -> str:
    return secrets.token_hex(3)


def refused_text(resp) -> str:
    assert resp.status_code == 403, (resp.status_code, str(resp.url), resp.text[:300])
    return resp.text


def test_listed_identity_gets_account_home_and_server(
    make_hub, oidc, user_prefix, home_root, template
):
    ident = f"ann{tag()}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(
        f"c.UserlistOAuthenticator.home_template = {str(template)!r}\n"
        "c.UserlistOAuthenticator.template_readonly = True\n",
        userlist=f"# e2e\n{ident} admin group:e2e-{ident}\n",
    )
    name = f"{user_prefix}{ident}"
    _, resp = hub.login(ident)
    assert resp.status_code == 200, resp.text[:500]
    model = hub.user_model(name)
    assert model["admin"] is True and model["groups"] == [f"e2e-{ident}"]

    account = pwd.getpwnam(name)
    home = Path(account.pw_dir)
    assert home == home_root / name
    st = os.stat(home)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.pw_uid, 0o700)
    nb = home / "welcome.ipynb"
    assert nb.is_file() and os.stat(nb).st_uid == account.pw_uid
    assert stat.S_IMODE(os.stat(nb).st_mode) & 0o222 == 0  # read-only template copy
    assert (home / "data" / "table.csv").read_text() == "a,b\n1,2\n"
    assert not os.path.lexists(home / "escape")

    hub.start_server(name)
    kernel = hub.server_api(name, "POST", "kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    out = run_in_kernel(hub, name, kernel.json()["id"], "import os; print(os.getuid())")
    assert out["stdout"].strip() == str(account.pw_uid)
    hub.stop_server(name)


def test_unlisted_and_unverified_are_refused_with_a_clear_page(make_hub, oidc, user_prefix):
    t = tag()
    listed, unverified, stranger = f"lis{t}", f"unv{t}", f"str{t}"
    oidc.set_identity(listed, email=f"{listed}@example.org", email_verified=True)
    oidc.set_identity(unverified, email=f"{unverified}@example.org", email_verified=False)
    oidc.set_identity(stranger, email=f"{stranger}@example.org", email_verified=True)
    hub = make_hub(EMAIL_CONFIG, userlist=f"{listed}@example.org\n{unverified}@example.org\n")
    assert hub.login(listed)[1].status_code == 200
    page = refused_text(hub.login(stranger)[1])
    assert f"{stranger}@example.org is not on this hub" in page
    page = refused_text(hub.login(unverified)[1])
    assert "is not verified by the identity provider" in page
    for who in (stranger, unverified):
        assert hub.user_model(f"{user_prefix}{who}") is None
        with pytest.raises(KeyError):
            pwd.getpwnam(f"{user_prefix}{who}")


def test_userlist_edits_apply_while_the_hub_runs(make_hub, oidc, user_prefix):
    t = tag()
    boss, late = f"boss{t}", f"late{t}"
    for ident in (boss, late):
        oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub("c.Authenticator.auth_refresh_age = 1\n", userlist=f"{boss} admin\n")
    ul = hub.userlist_path
    refused_text(hub.login(late)[1])

    # add a user: can log in at once
    ul.write_text(f"{boss} admin\n{late}\n")
    late_client, resp = hub.login(late)
    assert resp.status_code == 200

    # remove admin: revoked at the next request (auth refresh), without a new login
    client, resp = hub.login(boss)
    assert resp.status_code == 200 and hub.user_model(f"{user_prefix}{boss}")["admin"] is True
    ul.write_text(f"{boss}\n{late}\n")
    time.sleep(1.5)
    assert client.get(f"{hub.url}/hub/home").status_code == 200
    assert hub.user_model(f"{user_prefix}{boss}")["admin"] is False

    # remove a user: the next request needs a login, and that login is refused
    ul.write_text(f"{boss}\n")
    time.sleep(1.5)
    resp = late_client.get(f"{hub.url}/hub/home")
    assert "/hub/login" in str(resp.url), str(resp.url)
    assert client.get(f"{hub.url}/hub/home").url.path == "/hub/home"  # boss: still listed
    refused_text(hub.login(late)[1])

    # break a line: error logged with file:line, last good list still in force
    ul.write_text(f"{boss}\n{late} admn\n")
    assert hub.login(boss)[1].status_code == 200
    refused_text(hub.login(late)[1])
    wait_until(
        lambda: f"{ul}:2: unknown token 'admn'" in hub.log_text(), timeout=20, what="error logged"
    )


def test_admin_page_add_and_delete_write_the_file(make_hub, oidc, user_prefix):
    t = tag()
    newbie = f"new{t}"
    oidc.set_identity(newbie, email=f"{newbie}@example.org", email_verified=True)
    hub = make_hub(userlist="# managed by the admin page too\nsomeone-else\n")
    resp = hub.api("POST", "users", json={"usernames": [newbie]})
    assert resp.status_code == 201, resp.text
    name = f"{user_prefix}{newbie}"
    assert [u["name"] for u in resp.json()] == [name]
    assert (
        hub.userlist_path.read_text()
        == f"# managed by the admin page too\nsomeone-else\n{newbie}\n"
    )
    pwd.getpwnam(name)  # account created on add
    assert hub.login(newbie)[1].status_code == 200

    assert hub.api("DELETE", f"users/{name}").status_code == 204
    assert hub.userlist_path.read_text() == "# managed by the admin page too\nsomeone-else\n"
    refused_text(hub.login(newbie)[1])


def test_twenty_concurrent_first_logins(make_hub, oidc, user_prefix):
    t = tag()
    idents = [f"c{i:02d}{t}" for i in range(20)]
    for ident in idents:
        oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(userlist="".join(f"{i}\n" for i in idents))
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda i: hub.login(i)[1].status_code, idents))
    assert statuses == [200] * 20
    accounts = [pwd.getpwnam(f"{user_prefix}{i}") for i in idents]
    assert len({a.pw_uid for a in accounts}) == 20
    assert all(Path(a.pw_dir).is_dir() for a in accounts)
    assert "Traceback" not in hub.log_text()


def test_browser_login_to_jupyterlab(make_hub, oidc, user_prefix, page, template):
    ident = f"web{tag()}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(
        f"c.UserlistOAuthenticator.home_template = {str(template)!r}\n", userlist=f"{ident}\n"
    )
    page.goto(f"{hub.url}/hub/login")
    page.screenshot(path=str(ARTIFACTS / "authenticator-login-page.png"))
    page.locator("a", has_text="Test OIDC").first.click()
    for _ in range(4):  # provider login form, then consent form
        page.wait_for_load_state()
        if page.url.startswith(hub.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", ident)
            page.fill("input[name=password]", "pw")
        page.locator("button[type=submit]").first.click()
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    assert f"/user/{user_prefix}{ident}/lab" in page.url
    # the home's template notebook is listed in the file browser
    page.locator(".jp-DirListing-item", has_text="welcome.ipynb").wait_for(timeout=60_000)
    page.locator(".jp-Launcher").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "authenticator-jupyterlab.png"), full_page=True)
    hub.stop_server(f"{user_prefix}{ident}")


def test_removal_stops_servers_and_locks_the_account(make_hub, oidc, user_prefix, home_root):
    ident = f"gone{tag()}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    archive = home_root / "archive"
    hub = make_hub(
        "c.UserlistOAuthenticator.on_removal = 'lock'\n"
        f"c.UserlistOAuthenticator.removed_homes_archive_dir = {str(archive)!r}\n"
        "c.UserlistOAuthenticator.userlist_poll_interval = 0.5\n",
        userlist=f"{ident}\nsomeone-else\n",
    )
    name = f"{user_prefix}{ident}"
    assert hub.login(ident)[1].status_code == 200
    hub.start_server(name)
    assert not account_locked(name)

    hub.userlist_path.write_text("someone-else\n")  # no request from the user: the poll acts
    wait_until(
        lambda: (hub.user_model(name) or {}).get("servers") == {}, timeout=60, what="server stopped"
    )
    wait_until(lambda: account_locked(name), timeout=30, what="account locked")
    wait_until(lambda: list(archive.glob(f"{name}-*.tar.gz")), timeout=30, what="home archived")
    assert Path(pwd.getpwnam(name).pw_dir).is_dir()  # the home itself stays
    refused_text(hub.login(ident)[1])

    hub.userlist_path.write_text(f"someone-else\n{ident}\n")  # back: unlocked at login
    assert hub.login(ident)[1].status_code == 200
    assert not account_locked(name)


def test_browser_refusal_page_says_why(make_hub, oidc, browser):
    ident = f"nope{tag()}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(userlist="someone-else\n")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{hub.url}/hub/oauth_login?next=/hub/home")
        for _ in range(4):
            page.wait_for_load_state()
            if page.url.startswith(hub.url):
                break
            if page.locator("input[name=login]").count():
                page.fill("input[name=login]", ident)
                page.fill("input[name=password]", "pw")
            page.locator("button[type=submit]").first.click()
        message = page.locator("p", has_text=f"{ident} is not on this hub's user list")
        message.wait_for()
        assert message.is_visible()
        assert "403" in page.inner_text("h1")
        page.screenshot(path=str(ARTIFACTS / "authenticator-refused.png"), full_page=True)
    finally:
        context.close()
