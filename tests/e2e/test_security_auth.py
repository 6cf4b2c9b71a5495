"""Adversarial end-to-end tests: a real hub, the real OIDC provider, real useradd.

Hostile identities from the provider, hostile names on the admin page (REST), an existing
account that is not ours, things planted at or in a future home, a hostile template, the
userlist replaced by a FIFO, unauthenticated REST calls, and racing first logins.
System users carry the test's ``user_prefix`` and are removed with their homes.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from harness import wait_until

from jupyterhub_lab_ext.auth.userlist import parse_userlist

EMAIL_CONFIG = """
c.UserlistOAuthenticator.username_claim = 'email'
c.UserlistOAuthenticator.domain_rules = {'example.org': ''}
"""


def tag() -> str:
    return secrets.token_hex(3)


def no_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False


def snapshot(path: str) -> tuple:
    """Owner and mode (not the inode: useradd rewrites /etc/shadow)."""
    st = os.lstat(path)
    return (st.st_uid, st.st_gid, st.st_mode)


@pytest.fixture
def victim_dir():
    """A root-owned directory that stands for /etc: nothing may change in it."""
    path = Path(tempfile.mkdtemp(prefix="jhle-victim-"))
    (path / "shadow").write_text("root:$6$secret\n")
    (path / "shadow").chmod(0o600)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_lookalike_and_forged_identities_are_refused(make_hub, oidc, user_prefix, home_root):
    t = tag()
    kate, sam = f"kate{t}", f"sam{t}"
    oidc.set_identity(kate, email_verified=True)
    # attackers: provider logins whose preferred_username only looks like a listed one
    lookalikes = {
        f"kel{t}": "\u212aate" + t,  # KELVIN SIGN: casefold()/NFKD turn it into "kate..."
        f"lng{t}": "\u017fam" + t,  # LONG S
        f"ful{t}": "".join(chr(0xFEE0 + ord(c)) for c in kate),  # fullwidth
        f"zwj{t}": kate + "\u200b",
    }
    for login, shown in lookalikes.items():
        oidc.set_identity(login, preferred_username=shown, email_verified=True)
    hub = make_hub(userlist=f"{kate}\n{sam}\n")
    for login in lookalikes:
        _, resp = hub.login(login)
        assert resp.status_code == 403, (login, resp.status_code, resp.text[:300])
        assert "is not on this hub" in resp.text
    for name in (f"{user_prefix}{kate}", f"{user_prefix}{sam}"):
        assert hub.user_model(name) is None and no_account(name)
    assert list(home_root.iterdir()) == []
    # the real kate still gets in
    assert hub.login(kate)[1].status_code == 200
    assert not no_account(f"{user_prefix}{kate}")


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_email_verified_as_string_false_is_refused(make_hub, oidc, user_prefix, value):
    ident = f"ver{tag()}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=value)
    hub = make_hub(EMAIL_CONFIG, userlist=f"{ident}@example.org\n")
    _, resp = hub.login(ident)
    assert resp.status_code == 403 and "is not verified" in resp.text
    assert no_account(f"{user_prefix}{ident}")


ADMIN_PAGE_NAMES = [
    "mal{t}\n{t}admin admin",
    "mal{t}\r\nx{t} admin",
    "mal{t}\u2028admin",
    "mal{t} admin",
    "mal{t}\tgroup:wheel",
    "mal{t}#admin",
    "mal{t}\x00",
    "group:mal{t}",
    "admin",
    "-rf{t}",
    "../../etc/{t}",
    "x{t}" + "y" * 300,
]


def test_admin_page_hostile_names_never_break_the_userlist(make_hub, user_prefix):
    t = tag()
    original = f"# managed file\nkeep{t} admin\n"
    hub = make_hub(userlist=original)
    statuses = {}
    for raw in (n.format(t=t) for n in ADMIN_PAGE_NAMES):
        bulk = hub.api("POST", "users", json={"usernames": [raw]})
        single = hub.api("POST", f"users/{quote(raw, safe='')}", json={})
        statuses[raw] = (bulk.status_code, single.status_code)
    assert all(s in (201, 400, 404, 409) for pair in statuses.values() for s in pair), statuses
    text = hub.userlist_path.read_text()
    assert text.startswith(original)
    parsed = parse_userlist(text, path=str(hub.userlist_path))  # still one valid file
    admins = [e.identity for e in parsed.entries if e.admin]
    assert admins == [f"keep{t}"]
    for e in parsed.entries:
        assert e.identity.isprintable() and not e.username.startswith("-")
    for entry in pwd.getpwall():  # whatever was created is a plain prefixed name
        if entry.pw_name.startswith(user_prefix):
            assert entry.pw_uid >= 1000 and Path(entry.pw_dir).parent == hub.home_root
    assert "Traceback" not in hub.log_text() or "Failed to create user" in hub.log_text()


def test_unauthenticated_and_forged_token_rest_calls_get_403(make_hub):
    hub = make_hub(userlist="nobody-here\n")
    for method, path in [
        ("GET", "users"),
        ("POST", "users"),
        ("POST", "users/mallory"),
        ("DELETE", "users/mallory"),
        ("GET", "users/mallory"),
    ]:
        for headers in ({}, {"Authorization": "token forged"}, {"Authorization": "bearer x y"}):
            resp = httpx.request(
                method,
                f"{hub.url}/hub/api/{path}",
                headers=headers,
                json={"usernames": ["mallory\nadmin"]} if method == "POST" else None,
                timeout=30,
            )
            assert resp.status_code in (401, 403), (method, path, headers, resp.status_code)
    assert hub.userlist_path.read_text() == "nobody-here\n"


def test_existing_account_not_created_by_us_is_never_used(make_hub, oidc, user_prefix, home_root):
    ident = f"old{tag()}"
    name = f"{user_prefix}{ident}"
    subprocess.run(
        ["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name], check=True
    )
    before = pwd.getpwnam(name)
    oidc.set_identity(ident, email_verified=True)
    hub = make_hub(userlist=f"{ident}\n")
    _, resp = hub.login(ident)
    assert resp.status_code == 403, resp.text[:300]
    assert "belongs to an existing account" in resp.text
    assert pwd.getpwnam(name) == before
    assert not (home_root / name).exists()


def test_reserved_system_names_never_reach_an_account(make_hub, oidc, home_root, victim_dir):
    """Without a prefix, a listed 'root' or 'daemon' is refused (the line is rejected)."""
    t = tag()
    fine = f"jhsec{t}"
    for ident in ("root", "daemon", fine):
        oidc.set_identity(ident, email_verified=True)
    passwd_before = Path("/etc/passwd").read_bytes()
    hub = make_hub(username_prefix="", userlist=f"{fine}\nroot\ndaemon\n")
    try:
        for ident in ("root", "daemon", fine):
            _, resp = hub.login(ident)
            assert resp.status_code == 403, (ident, resp.status_code)
        assert "reserved or system account" in hub.log_text()
        assert Path("/etc/passwd").read_bytes() == passwd_before
        assert list(home_root.iterdir()) == []
    finally:
        subprocess.run(["userdel", "-f", fine], capture_output=True)  # only if a test broke


def test_symlink_planted_at_future_home_is_refused(
    make_hub, oidc, user_prefix, home_root, victim_dir
):
    ident = f"pla{tag()}"
    name = f"{user_prefix}{ident}"
    (home_root / name).symlink_to(victim_dir)
    before = snapshot(str(victim_dir)), snapshot(str(victim_dir / "shadow"))
    oidc.set_identity(ident, email_verified=True)
    hub = make_hub(userlist=f"{ident}\n")
    _, resp = hub.login(ident)
    assert resp.status_code == 500 and "could not be created" in resp.text
    assert (snapshot(str(victim_dir)), snapshot(str(victim_dir / "shadow"))) == before
    assert "is a symlink" in hub.log_text()


def test_world_writable_home_root_is_refused(make_hub, oidc, user_prefix, home_root):
    home_root.chmod(0o1777)
    ident = f"www{tag()}"
    oidc.set_identity(ident, email_verified=True)
    hub = make_hub(userlist=f"{ident}\n")
    _, resp = hub.login(ident)
    assert resp.status_code == 500
    assert "writable by group or others" in hub.log_text()
    assert list(home_root.iterdir()) == []


def test_hostile_template_never_exposes_root_files(make_hub, oidc, user_prefix, victim_dir):
    template = Path(tempfile.mkdtemp(prefix="jhle-evil-template-"))
    template.chmod(0o755)
    try:
        (template / "notes.txt").write_text("ok")
        (template / "shadow").symlink_to("/etc/shadow")
        (template / "victim").symlink_to(victim_dir / "shadow")
        (template / "up").symlink_to("../../etc/shadow")
        os.mkfifo(template / "fifo")
        os.mknod(template / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        ident = f"tpl{tag()}"
        oidc.set_identity(ident, email_verified=True)
        shadow_before = snapshot("/etc/shadow")
        hub = make_hub(
            f"c.UserlistOAuthenticator.home_template = {str(template)!r}\n",
            userlist=f"{ident}\n",
        )
        assert hub.login(ident)[1].status_code == 200
        home = Path(pwd.getpwnam(f"{user_prefix}{ident}").pw_dir)
        assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
        assert snapshot("/etc/shadow") == shadow_before
    finally:
        shutil.rmtree(template, ignore_errors=True)


def test_racing_first_logins_of_one_new_user(make_hub, oidc, user_prefix, home_root):
    ident = f"race{tag()}"
    oidc.set_identity(ident, email_verified=True)
    hub = make_hub(userlist=f"{ident}\n")
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: hub.login(ident)[1].status_code, range(6)))
    assert statuses == [200] * 6
    name = f"{user_prefix}{ident}"
    account = pwd.getpwnam(name)
    assert [e.pw_name for e in pwd.getpwall()].count(name) == 1
    st = os.stat(home_root / name)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.pw_uid, 0o700)
    assert "Traceback" not in hub.log_text()


def test_userlist_replaced_by_fifo_keeps_hub_serving(make_hub, oidc, user_prefix):
    ident = f"ffo{tag()}"
    oidc.set_identity(ident, email_verified=True)
    hub = make_hub("c.UserlistOAuthenticator.userlist_poll_interval = 1\n", userlist=f"{ident}\n")
    path = hub.userlist_path
    path.unlink()
    os.mkfifo(path)
    try:
        wait_until(
            lambda: f"{path}:0: cannot read" in hub.log_text(),
            timeout=60,
            what="the FIFO userlist error in the hub log",
        )
        # the last good list is still in force: the listed user logs in
        assert hub.login(ident)[1].status_code == 200
        assert hub.api("GET", "users").status_code == 200
    finally:
        # if the hub blocked on the FIFO, a writer releases it so it can be stopped
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_refusal_page_escapes_a_hostile_identity(make_hub, oidc, user_prefix):
    """The 403 page repeats the identity: markup in it must arrive as text."""
    t = tag()
    login = f"xss{t}"
    shown = f'<img src=x onerror="alert({t})">\nFAKE log line {t}'
    oidc.set_identity(login, preferred_username=shown, email_verified=True)
    hub = make_hub(userlist=f"someone{t}\n")
    _, resp = hub.login(login)
    assert resp.status_code == 403
    assert "<img src=x" not in resp.text and "&lt;img src=x" in resp.text
