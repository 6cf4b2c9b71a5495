"""Trust at the two services on a real hub, tried as an attacker would: a hub admin's narrow
tokens change nothing, revocation and demotion bounds, big unauthenticated bodies are never
buffered, deeply nested JSON is a 400, and a plain admin login still works in the browser.

Both services are set up exactly as the docs say: ``enable_idle_culler`` and ``enable_user_limit``.
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
from pathlib import Path

import httpx
import pytest
from harness import free_port, wait_until

HOOK = "e2e-hook-secret-" + "0" * 32
#: the documented bound for reads (ServiceApp.auth_cache_ttl is 5 s; changes are checked at once)
READ_BOUND = 10


def trust_config(tmp: Path, *admins: str) -> str:
    return f"""
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.allow_all = True
c.Authenticator.admin_users = {set(admins)!r}
c.JupyterHub.spawner_class = "simple"
from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit
enable_idle_culler(
    c,
    url="http://127.0.0.1:{free_port()}",
    args=["--timeout=3600", "--cull-every=3600"],
    db_url="sqlite:///{tmp}/culler.sqlite",
)
from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions
enable_user_limit(
    c,
    {{"max_active_servers": 5, "db_url": "sqlite:///{tmp}/user-limit.sqlite"}},
    url="http://127.0.0.1:{free_port()}",
    hook=HookOptions(token={HOOK!r}),
)
"""


class Services:
    def __init__(self, hub):
        self.hub = hub

    def call(self, service, method, path, token=None, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        return httpx.request(
            method, f"{self.hub.url}/services/{service}/{path}", headers=headers, timeout=60, **kw
        )

    def token(self, user, scopes=None) -> tuple[str, str]:
        body = {} if scopes is None else {"scopes": scopes}
        r = self.hub.api("POST", f"users/{user}/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"], r.json()["id"]

    def wait_up(self):
        for name in ("idle-culler", "user-limit"):
            wait_until(
                lambda n=name: self.call(n, "GET", "health").status_code == 200,
                timeout=60,
                what=f"{name} health",
            )

    def pid(self, module: str) -> int:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.hub.process.pid and module.encode() in cmd:
                return int(entry)
        raise AssertionError(f"no {module} process under the hub")


# the changes an admin scope allows, one per route
CHANGES = [
    ("idle-culler", "POST", "api/passes?dry_run=1", None),
    ("idle-culler", "PUT", "api/exemptions/{user}", {"reason": "exam"}),
    ("idle-culler", "DELETE", "api/exemptions/{user}", None),
    ("user-limit", "PUT", "api/limits", {"max_active_servers": 7}),
]


@pytest.fixture
def trust(make_hub, tmp_path, user_prefix):
    boss, chief, plain = (f"{user_prefix}{n}" for n in ("boss", "chief", "plain"))
    hub = make_hub(trust_config(tmp_path, boss, chief), authenticator=None)
    r = hub.api("POST", "users", json={"usernames": [boss, chief, plain]})
    assert r.status_code in (201, 409), r.text
    s = Services(hub)
    s.wait_up()
    s.boss, s.chief, s.plain = boss, chief, plain
    return s


def _change(s, token, service, method, path, body, user):
    kw = {"json": body} if body is not None else {}
    return s.call(service, method, path.format(user=user), token=token, **kw)


def test_an_admins_narrow_tokens_change_nothing(trust):
    s = trust
    full, _ = s.token(s.boss)
    narrow, _ = s.token(s.boss, [f"read:users:activity!user={s.boss}"])
    limit_only, _ = s.token(s.boss, ["access:services!service=user-limit"])
    for service, method, path, body in CHANGES:
        for token in (narrow, limit_only):
            r = _change(s, token, service, method, path, body, s.plain)
            assert r.status_code == 403, (service, method, path, r.status_code, r.text)
    # reads need access to that service on the token itself
    assert s.call("idle-culler", "GET", "api/status", token=narrow).status_code == 403
    assert s.call("idle-culler", "GET", "api/status", token=limit_only).status_code == 403
    assert s.call("user-limit", "GET", "api/status", token=limit_only).status_code == 200
    # nothing changed
    assert (
        s.call("user-limit", "GET", "api/status", token=full).json()["limits"]["max_active_servers"]
        == 5
    )
    view = s.call("idle-culler", "GET", f"api/users/{s.plain}", token=full).json()
    assert view["exemption"] is None
    # the same admin's full token may do all of it
    for service, method, path, body in CHANGES:
        r = _change(s, full, service, method, path, body, s.plain)
        assert r.status_code in (200, 201, 204), (service, method, path, r.status_code, r.text)


def test_revoked_token_and_demoted_admin_are_refused_within_the_bound(trust):
    s = trust
    token, token_id = s.token(s.boss)
    assert s.call("idle-culler", "GET", "api/status", token=token).status_code == 200
    assert s.call("user-limit", "GET", "api/status", token=token).status_code == 200
    r = s.hub.api("DELETE", f"users/{s.boss}/tokens/{token_id}")
    assert r.status_code == 204, r.text
    revoked = time.monotonic()
    # changes ask the hub again: refused at once
    for service, method, path, body in CHANGES:
        assert _change(s, token, service, method, path, body, s.plain).status_code == 401
    # reads: refused within the bound
    for service in ("idle-culler", "user-limit"):
        wait_until(
            lambda sv=service: s.call(sv, "GET", "api/status", token=token).status_code == 401,
            timeout=READ_BOUND - (time.monotonic() - revoked),
            interval=0.5,
            what=f"revoked token refused by {service}",
        )

    # demotion on the admin page (PATCH admin=false): the token keeps the person's own scopes
    token, _ = s.token(s.boss)
    assert _change(s, token, "user-limit", "PUT", "api/limits", {"max_users": 9}, "").is_success
    # only an admin may demote an admin: another admin does it, with their own token
    chief, _ = s.token(s.chief)
    r = s.hub.api("PATCH", f"users/{s.boss}", json={"admin": False}, token=chief)
    assert r.status_code == 200, r.text
    demoted = time.monotonic()
    for service, method, path, body in CHANGES:
        r = _change(s, token, service, method, path, body, s.plain)
        assert r.status_code == 403, (service, method, path, r.status_code)
    # a plain user may read the user-limit service (its queue page) but not the culler
    wait_until(
        lambda: s.call("idle-culler", "GET", "api/status", token=token).status_code == 403,
        timeout=READ_BOUND - (time.monotonic() - demoted),
        interval=0.5,
        what="demoted admin's culler read refused",
    )
    assert s.call("user-limit", "GET", "api/status", token=token).status_code == 200


def _rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def _post_huge(url: str, path: str, size: int, token: str | None = None) -> int:
    """Stream a ``size``-byte POST until the server answers; the answer's status code."""
    port = int(url.rsplit(":", 1)[1])
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {size}"]
    if token:
        head.append(f"Authorization: token {token}")
    chunk = b"x" * (1 << 20)
    deadline = time.monotonic() + 60
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        while sent < size and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(30)
        data = b""
        while b"\r\n" not in data:
            try:
                part = sock.recv(4096)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1])


def test_big_unauthenticated_bodies_are_refused_unread(trust):
    s = trust
    pid = s.pid("jupyterhub_lab_ext.services.user_limit")
    before = _rss_kb(pid)
    path = "/services/user-limit/api/admissions"
    statuses = [_post_huge(s.hub.url, path, 90 << 20) for _ in range(4)]
    assert statuses == [413] * 4
    # a wrong token changes nothing either
    assert _post_huge(s.hub.url, path, 90 << 20, token="not-a-token") == 413
    grown_mb = (_rss_kb(pid) - before) / 1024
    print(f"user-limit RSS {before / 1024:.0f} MB, growth after 5 x 90 MB: {grown_mb:.1f} MB")
    assert grown_mb < 20, f"user-limit service grew {grown_mb:.0f} MB"
    # still answering
    assert s.call("user-limit", "GET", "health").status_code == 200


@pytest.mark.parametrize(
    "service, method, path, token",
    [
        ("user-limit", "PUT", "api/limits", "admin"),
        ("idle-culler", "PUT", "api/exemptions/someone", "admin"),
        ("user-limit", "POST", "api/admissions", "hook"),
    ],
)
@pytest.mark.parametrize("depth_body", [b"[" * 60_000, b'{"a":' * 12_000])
def test_deeply_nested_json_is_a_400(trust, service, method, path, token, depth_body):
    s = trust
    credential = HOOK if token == "hook" else s.hub.admin_token
    r = s.call(
        service,
        method,
        path,
        token=credential,
        content=depth_body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "nested too deeply" in r.json()["message"]
    # over the body cap it is a 413, still never a 500
    r = s.call(service, method, path, token=credential, content=b"[" * 100_000)
    assert r.status_code == 413, (r.status_code, r.text[:300])


def _browser_login(hub, name: str) -> httpx.Client:
    browser = httpx.Client(follow_redirects=True, timeout=60)
    browser.get(f"{hub.url}/hub/login")
    xsrf = browser.cookies.get("_xsrf", path="/hub/")
    r = browser.post(
        f"{hub.url}/hub/login", data={"username": name, "password": "pw", "_xsrf": xsrf}
    )
    assert r.status_code == 200, r.text[:300]
    return browser


def test_admin_browser_login_changes_limits_without_a_consent_page(trust):
    s = trust
    base = f"{s.hub.url}/services/user-limit/"
    for name, expected in ((s.boss, 200), (s.plain, 403)):
        browser = _browser_login(s.hub, name)
        try:
            page = browser.get(base + "queue", headers={"Accept": "text/html"})
            assert page.status_code == 200, (str(page.url), page.text[:300])
            assert "oauth2/authorize" not in str(page.url)  # no consent page
            xsrf = re.search(r'var xsrf = "([^"]+)"', page.text).group(1)
            r = browser.put(
                base + "api/limits",
                json={"max_active_servers": 6},
                headers={"X-XSRFToken": xsrf, "Accept": "application/json"},
            )
            assert r.status_code == expected, (name, r.status_code, r.text[:300])
        finally:
            browser.close()
    r = s.call("user-limit", "GET", "api/status", token=s.hub.admin_token)
    assert r.json()["limits"]["max_active_servers"] == 6
