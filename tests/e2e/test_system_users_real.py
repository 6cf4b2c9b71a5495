"""system_users against the real account database: real useradd/groupadd/usermod as root.

No hub needed. Every account and group carries the test's unique prefix (``user_prefix``,
e.g. ``jt3fa2-``) and is removed with its home in the fixture teardown, also on failure.
Homes live under a fresh ``home_root`` (mode 0755); the registry under a temp state dir.
"""

# blocking checks (subprocess.run, os.path) inside async tests are fine: tests own their loop
# ruff: noqa: ASYNC220, ASYNC221, ASYNC240

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from jupyterhub_lab_ext.accounts.system_users import (
    AccountSpec,
    ExistingAccountError,
    SystemUsers,
    run_command,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def cleanup(user_prefix, home_root):
    """Remove every account and group with the test prefix (and their homes) afterwards."""
    yield
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(user_prefix):
            subprocess.run(["userdel", "-f", entry.pw_name], capture_output=True, check=False)
            if Path(entry.pw_dir).is_relative_to(home_root):
                shutil.rmtree(entry.pw_dir, ignore_errors=True)
    for entry in grp.getgrall():
        if entry.gr_name.startswith(user_prefix):
            subprocess.run(["groupdel", entry.gr_name], capture_output=True, check=False)
    leftovers = [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(user_prefix)]
    assert leftovers == [], f"test users left behind: {leftovers}"


@pytest.fixture
def su(tmp_path, cleanup):
    return SystemUsers(state_dir=str(tmp_path / "state"), retry_delay=0.05)


@pytest.fixture
def umask_077():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def shadow_entry(name: str) -> list[str]:
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                return fields
    raise KeyError(name)


def free_id(start: int) -> int:
    """A number unused as uid and as gid, from ``start`` on."""
    for n in range(start, start + 5000):
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
        except KeyError:
            return n
    raise RuntimeError("no free id")


async def test_create_user_group_home(su, user_prefix, home_root, umask_077):
    name, course = f"{user_prefix}ann", f"{user_prefix}course"
    home = home_root / "nfs" / "homes" / name  # parents do not exist yet
    login = {"shell": "/bin/sh", "comment": "Ann Example"}
    spec = AccountSpec(name, str(home), home_mode=0o750, supplementary_groups=(course,), **login)
    account = await su.ensure_account(spec)
    pw = pwd.getpwnam(name)
    assert account.created and (account.uid, account.gid) == (pw.pw_uid, pw.pw_gid)
    assert pw.pw_uid >= 1000 and pw.pw_dir == str(home) and pw.pw_shell == "/bin/sh"
    assert pw.pw_gecos == "Ann Example"
    assert grp.getgrgid(pw.pw_gid).gr_name == name  # personal group
    assert name in grp.getgrnam(course).gr_mem
    st = home.stat()
    assert (st.st_uid, st.st_gid, mode(home)) == (pw.pw_uid, pw.pw_gid, 0o750)
    assert mode(home.parent) == 0o755 and home.parent.stat().st_uid == 0
    assert su.created_by_us(name) and not su.created_by_us("daemon")
    registry = Path(su.registry.path)
    assert mode(registry) == 0o600 and mode(registry.parent) == 0o700
    again = await su.ensure_account(spec)
    assert not again.created and again.uid == account.uid


async def test_pinned_uid_and_gid(su, user_prefix, home_root):
    n = free_id(42000)
    name = f"{user_prefix}pin"
    account = await su.ensure_account(AccountSpec(name, str(home_root / name), uid=n, gid=n))
    pw = pwd.getpwnam(name)
    assert (account.uid, account.gid, pw.pw_uid, pw.pw_gid) == (n, n, n, n)
    assert grp.getgrgid(n).gr_name == name


async def test_template_copy_ownership_and_symlinks(su, user_prefix, home_root, tmp_path):
    template = tmp_path / "template"
    (template / "notebooks").mkdir(parents=True)
    (template / "notebooks" / "intro.ipynb").write_text('{"cells": []}')
    (template / "README.md").write_text("welcome")
    (template / "shadow").symlink_to("/etc/shadow")
    (template / "intro").symlink_to("notebooks/intro.ipynb")
    name = f"{user_prefix}tpl"
    account = await su.ensure_account(AccountSpec(name, str(home_root / name)))
    home = Path(account.home)
    # the user plants a symlink to a root-owned place before the copy
    victim = tmp_path / "victim"
    victim.mkdir()
    (home / "notebooks").symlink_to(victim)
    os.lchown(home / "notebooks", account.uid, account.gid)
    n = await su.populate_home(account, str(template), readonly=True)
    assert n == 2  # README.md and the inner link; notebooks/ is the user's symlink
    assert os.listdir(victim) == []
    assert not os.path.lexists(home / "shadow")
    for rel in ("README.md", "intro"):
        st = os.lstat(home / rel)
        assert (st.st_uid, st.st_gid) == (account.uid, account.gid)
    assert (
        mode(home / "README.md") == 0o444 and os.readlink(home / "intro") == "notebooks/intro.ipynb"
    )
    # the user removes the symlink: a sync now delivers the notebooks, as the user's files
    (home / "notebooks").unlink()
    assert await su.populate_home(account, str(template)) == 1
    st = (home / "notebooks" / "intro.ipynb").stat()
    assert (st.st_uid, mode(home / "notebooks")) == (account.uid, 0o755)
    # as that user, the copied files are readable and the home is private to them
    check = subprocess.run(
        ["runuser", "-u", account.name, "--", "cat", str(home / "notebooks" / "intro.ipynb")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout == '{"cells": []}'


async def test_twenty_concurrent_first_logins(su, user_prefix, home_root):
    names = [f"{user_prefix}c{i:02d}" for i in range(20)]
    specs = [AccountSpec(n, str(home_root / n)) for n in names]
    accounts = await asyncio.wait_for(
        asyncio.gather(*(su.ensure_account(s) for s in specs * 2)), 120
    )
    assert sum(a.created for a in accounts) == 20
    uids = set()
    for name in names:
        pw = pwd.getpwnam(name)
        uids.add(pw.pw_uid)
        st = os.stat(pw.pw_dir)
        assert (st.st_uid, st.st_gid, mode(pw.pw_dir)) == (pw.pw_uid, pw.pw_gid, 0o700)
    assert len(uids) == 20
    assert sorted(su.accounts()) == sorted(names)


@pytest.mark.parametrize("name", ["root", "daemon", "nobody"])
async def test_refuses_system_accounts_even_with_allow_existing(tmp_path, cleanup, name):
    su = SystemUsers(state_dir=str(tmp_path / "state"), allow_existing=True)
    before = pwd.getpwnam(name)
    with pytest.raises(ExistingAccountError, match=name):
        await su.ensure_account(AccountSpec(name, before.pw_dir))
    assert pwd.getpwnam(name) == before
    with pytest.raises(ExistingAccountError):
        await su.lock_account(name)
    assert shadow_entry(name)[7] != "1"


async def test_refuses_existing_account_not_in_registry(su, user_prefix, home_root, tmp_path):
    name = f"{user_prefix}ext"
    subprocess.run(["useradd", "-M", "-d", str(home_root / name), name], check=True)
    with pytest.raises(ExistingAccountError, match="not created by"):
        await su.ensure_account(AccountSpec(name, str(home_root / name)))
    assert not (home_root / name).exists()
    allowed = SystemUsers(state_dir=str(tmp_path / "state"), allow_existing=True)
    account = await allowed.ensure_account(AccountSpec(name, str(home_root / name)))
    assert not account.created and account.uid == pwd.getpwnam(name).pw_uid
    assert not allowed.created_by_us(name)


async def test_lock_unlock_and_archive(su, user_prefix, home_root, tmp_path):
    name = f"{user_prefix}bye"
    account = await su.ensure_account(AccountSpec(name, str(home_root / name)))
    (Path(account.home) / "results.txt").write_text("42")
    await su.lock_account(name)
    fields = shadow_entry(name)
    assert fields[1].startswith("!") and fields[7] == "1"  # locked and expired (1970-01-02)
    status = subprocess.run(["passwd", "-S", name], capture_output=True, text=True, check=True)
    assert status.stdout.split()[1] == "L"
    assert su.accounts()[name]["locked"]
    archive = await su.archive_home(name, str(tmp_path / "archive"))
    assert mode(archive) == 0o600 and mode(tmp_path / "archive") == 0o700
    with tarfile.open(archive) as tar:
        assert tar.extractfile(f"{name}/results.txt").read() == b"42"
    assert (Path(account.home) / "results.txt").exists()  # never deleted
    await su.unlock_account(name)
    assert shadow_entry(name)[7] == ""


async def test_retries_while_another_process_holds_the_passwd_lock(
    tmp_path, cleanup, user_prefix, home_root, caplog
):
    """A live process owning /etc/passwd.lock makes the real useradd fail with 'cannot lock';
    the lock is released right after that first failure, and the retry succeeds."""
    holder = subprocess.Popen(["sleep", "30"])
    lock = Path("/etc/passwd.lock")
    seen = []

    async def runner(argv):
        rc, out, err = await run_command(argv)
        seen.append((argv[0], rc, err))
        if rc != 0 and "lock" in err and lock.exists():
            lock.unlink()  # the other process is done
        return rc, out, err

    su = SystemUsers(runner, state_dir=str(tmp_path / "state"), retry_delay=0.05)
    name = f"{user_prefix}lk"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, str(holder.pid).encode())
        os.close(fd)
        with caplog.at_level(logging.WARNING, logger="jupyterhub_lab_ext.accounts.system_users"):
            account = await su.ensure_account(AccountSpec(name, str(home_root / name)))
    finally:
        holder.kill()
        holder.wait()
        if lock.exists() and lock.read_text() == str(holder.pid):
            lock.unlink()
    assert account.created and pwd.getpwnam(name).pw_uid == account.uid
    useradds = [(rc, err) for cmd, rc, err in seen if cmd == "useradd"]
    assert len(useradds) == 2 and useradds[1][0] == 0
    assert useradds[0][0] != 0 and "cannot lock /etc/passwd" in useradds[0][1]
    assert any("met the account-file lock" in r.getMessage() for r in caplog.records)


async def test_sync_template_cli(su, user_prefix, home_root, tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    (template / "a.ipynb").write_text("{}")
    names = [f"{user_prefix}s1", f"{user_prefix}s2"]
    accounts = [await su.ensure_account(AccountSpec(n, str(home_root / n))) for n in names]
    await su.populate_home(accounts[0], str(template))
    (home_root / names[0] / "a.ipynb").write_text("changed by the user")
    (template / "b.ipynb").write_text("{}")

    def cli(*args):
        command = ["homes", "sync-template", "--state-dir", su.registry.state_dir]
        argv = [sys.executable, "-m", "jupyterhub_lab_ext.cli.main", *command]
        argv += ["--template", str(template), *args]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)

    dry = cli("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"(dry run) {names[0]}: 1 new, 0 updated, 1 kept" in dry.stdout
    assert not (home_root / names[0] / "b.ipynb").exists()
    run = cli()
    assert run.returncode == 0, run.stderr
    assert f"{names[0]}: 1 new, 0 updated, 1 kept" in run.stdout
    assert f"{names[1]}: 2 new, 0 updated, 0 kept" in run.stdout
    assert (home_root / names[0] / "a.ipynb").read_text() == "changed by the user"
    for account in accounts:
        assert (home_root / account.name / "b.ipynb").stat().st_uid == account.uid
    refused = cli("--user", "daemon")
    assert refused.returncode == 1 and "daemon: error" in refused.stdout
