"""Users removed from (or demoted in) the userlist lose their access everywhere, within the bound
the docs state: ``auth_refresh_age`` seconds.

A real hub with the userlist authenticator, the real OIDC provider, real system users and their
real single-user servers, and the user-limit service. Each credential a user holds is tried where
it works: an API token at the hub, the hub login cookie, the server's cookie and the token at the
single-user server, the token at the service. The userlist file is edited and no request is made
by the user in between: the hub has to act by itself.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import time

import httpx
import pytest
from harness import account_locked, free_port, wait_until

REFRESH_AGE = 10  # c.Authenticator.auth_refresh_age in these tests: the documented bound
# a loaded test machine may add a few seconds to any bound; never wait for the old 300 s caches
DEADLINE = REFRESH_AGE + 10
SERVICE = "user-limit"


def config(on_removal: str = "revoke") -> str:
    return (
        f"c.Authenticator.auth_refresh_age = {REFRESH_AGE}\n"
        f"c.UserlistOAuthenticator.on_removal = {on_removal!r}\n"
        "from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit\n"
        f"enable_user_limit(c, url='http://127.0.0.1:{free_port()}')\n"
    )


def tag() -> str:
    return secrets.token_hex(3)


class Person:
    """One logged-in user of ``hub`` and every credential they hold."""

    def __init__(self, hub, oidc, login: str, name: str):
        oidc.set_identity(login, email=f"{login}@example.org", email_verified=True)
        self.hub, self.name = hub, name
        self.browser, resp = hub.login(login)
        assert resp.status_code == 200, resp.text[:300]
        made = hub.api("POST", f"users/{name}/tokens", json={"note": "e2e: the user's own"})
        assert made.status_code == 201, made.text
        self.token = made.json()["token"]

    def _get(self, url: str, *, token: str | None = None, cookies: bool = False):
        headers = {"Authorization": f"token {token}"} if token else {}
        client = self.browser if cookies else httpx
        return client.get(url, headers=headers, follow_redirects=False, timeout=30)

    def open_server_session(self, owner: str) -> None:
        """The browser's OAuth step at ``owner``'s server (sets the server's cookie)."""
        resp = self.browser.get(f"{self.hub.url}/user/{owner}/lab", follow_redirects=True)
        if "Authorize access" in resp.text:  # someone else's server: the hub asks first
            form: dict[str, list[str]] = {}
            for key, value in re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', resp.text):
                form.setdefault(key, []).append(html.unescape(value))
            resp = self.browser.post(str(resp.url), data=form, follow_redirects=True)
        assert resp.status_code == 200, (resp.status_code, str(resp.url))
        assert self.server_cookie(owner) == 200

    def open_service_session(self) -> None:
        """The browser's OAuth step at the user-limit service (sets the service's cookie)."""
        resp = self.browser.get(
            f"{self.hub.url}/services/{SERVICE}/api/users/{self.name}",
            headers={"Accept": "text/html"},
            follow_redirects=True,
        )
        assert resp.status_code == 200, (resp.status_code, str(resp.url))
        assert self.service_cookie() == 200

    # each returns the HTTP status a request with one credential gets
    def hub_token(self, path: str = "user") -> int:
        return self._get(f"{self.hub.url}/hub/api/{path}", token=self.token).status_code

    def hub_cookie(self) -> int:
        return self._get(f"{self.hub.url}/hub/home", cookies=True).status_code

    def server_cookie(self, owner: str) -> int:
        return self._get(f"{self.hub.url}/user/{owner}/api/status", cookies=True).status_code

    def server_token(self, owner: str) -> int:
        url = f"{self.hub.url}/user/{owner}/api/status"
        return self._get(url, token=self.token).status_code

    def service_token(self) -> int:
        url = f"{self.hub.url}/services/{SERVICE}/api/users/{self.name}"
        return self._get(url, token=self.token).status_code

    def service_cookie(self) -> int:
        url = f"{self.hub.url}/services/{SERVICE}/api/users/{self.name}"
        return self._get(url, cookies=True).status_code

    def service_admin(self) -> int:
        resp = httpx.put(
            f"{self.hub.url}/services/{SERVICE}/api/limits",
            headers={"Authorization": f"token {self.token}"},
            json={"max_active_servers": 50},
            timeout=30,
        )
        return resp.status_code


def within_bound(checks: dict, expected: dict, what: str) -> float:
    """Wait until every check answers its expected status; return the seconds it took."""
    start = time.monotonic()
    seen: dict = {}

    def done():
        seen.update({k: f() for k, f in checks.items()})
        return all(seen[k] in expected[k] for k in checks)

    try:
        wait_until(done, timeout=DEADLINE, interval=0.5, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}: last answers {seen}, expected {expected}") from None
    return time.monotonic() - start


@pytest.mark.parametrize("on_removal", ["revoke", "stop", "lock"])
def test_removed_user_loses_every_credential(make_hub, oidc, user_prefix, on_removal):
    t = tag()
    gone, stays = f"gone{t}", f"stay{t}"
    hub = make_hub(config(on_removal), userlist=f"{gone}\n{stays}\n")
    name = f"{user_prefix}{gone}"
    user = Person(hub, oidc, gone, name)
    keeper = Person(hub, oidc, stays, f"{user_prefix}{stays}")
    hub.start_server(name)
    pid = hub.user_model(name)["servers"][""]["state"]["pid"]
    user.open_server_session(name)
    user.open_service_session()
    checks = {
        "hub_token": user.hub_token,
        "hub_cookie": user.hub_cookie,
        "server_cookie": lambda: user.server_cookie(name),
        "server_token": lambda: user.server_token(name),
        "service_token": user.service_token,
        "service_cookie": user.service_cookie,
    }
    before = {k: f() for k, f in checks.items()}
    assert before == dict.fromkeys(checks, 200), before

    hub.userlist_path.write_text(f"{stays}\n")  # and no request from the removed user
    # a running server refuses (403); once stopped, the hub answers for it (a redirect, 403, 424)
    server_refused = {403} if on_removal == "revoke" else {302, 403, 424, 503}
    took = within_bound(
        checks,
        {
            "hub_token": {403},
            "hub_cookie": {302},  # to the login page, where the login is refused
            "server_cookie": server_refused,
            "server_token": server_refused,
            "service_token": {401},
            "service_cookie": {401},
        },
        f"every credential of the removed user refused (on_removal={on_removal!r})",
    )
    print(f"on_removal={on_removal}: every credential refused after {took:.1f}s")
    assert hub.api("GET", f"users/{name}/tokens").json()["api_tokens"] == []
    assert hub.login(gone)[1].status_code == 403  # and a new login is refused

    model = hub.user_model(name)
    if on_removal == "revoke":  # the server keeps running, unreachable for its owner
        assert model["servers"][""]["ready"] is True
        os.kill(pid, 0)
        assert hub.server_api(name, "GET", "status").status_code == 200  # admins still reach it
    else:
        wait_until(lambda: hub.user_model(name)["servers"] == {}, timeout=DEADLINE, what="stop")
        if on_removal == "lock":  # after the stop
            wait_until(lambda: account_locked(name), timeout=DEADLINE, what="account locked")
        assert account_locked(name) is (on_removal == "lock")
        # not even an admin starts it again (which would also unlock the account)
        again = hub.start_server(name, wait=False)
        assert again.status_code == 403, again.text
        assert "is not on this hub's user list" in again.json()["message"]
        assert hub.user_model(name)["servers"] == {}
        assert account_locked(name) is (on_removal == "lock")

    # the user who stays keeps everything
    assert keeper.hub_token() == 200 and keeper.hub_cookie() == 200
    assert keeper.service_token() == 200


def test_demoted_admin_loses_admin_access_only(make_hub, oidc, user_prefix):
    t = tag()
    boss, other = f"boss{t}", f"oth{t}"
    hub = make_hub(config(), userlist=f"{boss} admin\n{other}\n")
    admin = Person(hub, oidc, boss, f"{user_prefix}{boss}")
    plain = f"{user_prefix}{other}"
    Person(hub, oidc, other, plain)
    hub.start_server(plain)
    admin.open_server_session(plain)  # admins may open other users' servers
    admin_only = {
        "list_users": lambda: admin.hub_token("users"),
        "other_server_cookie": lambda: admin.server_cookie(plain),
        "other_server_token": lambda: admin.server_token(plain),
        "service_admin": admin.service_admin,
    }
    before = {k: f() for k, f in admin_only.items()}
    assert before == dict.fromkeys(admin_only, 200), before

    hub.userlist_path.write_text(f"{boss}\n{other}\n")  # no request from the admin
    took = within_bound(
        admin_only, dict.fromkeys(admin_only, {403}), "admin-only access of the demoted admin"
    )
    print(f"demoted admin refused after {took:.1f}s")
    # their own access stays
    own = httpx.get(
        f"{hub.url}/hub/api/user", headers={"Authorization": f"token {admin.token}"}, timeout=30
    )
    assert own.status_code == 200 and own.json()["admin"] is False
    assert admin.hub_cookie() == 200 and admin.service_token() == 200
