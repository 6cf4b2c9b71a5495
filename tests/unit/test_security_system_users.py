"""Security properties of system_users with a fake account database and command runner.

Whatever name, home or shell reaches :class:`SystemUsers`, no command runs with an option-like
or multi-line argument, and no existing system or foreign account is handed out.
"""

from __future__ import annotations

import pytest

from jupyterhub_lab_ext.accounts import homes
from jupyterhub_lab_ext.accounts.commands import build_user_argv
from jupyterhub_lab_ext.accounts.system_users import (
    AccountSpec,
    ExistingAccountError,
    SystemUserError,
    SystemUsers,
    UserEntry,
)


class Lookup:
    """A passwd database with system accounts and one human account not made by us."""

    users = {
        "root": UserEntry("root", 0, 0, "/root", "/bin/bash"),
        "daemon": UserEntry("daemon", 1, 1, "/usr/sbin", "/usr/sbin/nologin"),
        "nobody": UserEntry("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin"),
        "dave": UserEntry("dave", 1001, 1001, "/home/dave", "/bin/bash"),
    }

    def user(self, name):
        return self.users.get(name)

    def user_by_uid(self, uid):
        return next((u for u in self.users.values() if u.uid == uid), None)

    def group(self, name):
        return None

    def group_by_gid(self, gid):
        return None

    def group_names_of(self, name, gid):
        return set()


@pytest.fixture
def calls():
    return []


@pytest.fixture
def su(tmp_path, calls, monkeypatch):
    monkeypatch.setattr(homes, "make_home", lambda *a, **k: True)

    async def runner(argv):
        calls.append(list(argv))
        return 1, "", "refused by the fake runner"

    def make(**kw):
        return SystemUsers(
            runner,
            state_dir=str(tmp_path / "state"),
            uid_min=1000,
            gid_min=1000,
            flavour="useradd",
            lookup=Lookup(),
            **kw,
        )

    return make


BAD_NAMES = [
    "-rf",
    "--help",
    "-o",
    "alice\n",
    "alice\nroot",
    "\nalice",
    "Alice",
    "a/b",
    "..",
    ".hidden",
    "a b",
    "a:b",
    "",
    "x" * 33,
    "alice\x00",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_account_names_run_nothing(su, calls, name):
    s = su()
    with pytest.raises(SystemUserError, match="invalid account"):
        await s.ensure_account(AccountSpec(name=name, home="/srv/homes/x"))
    for action in (s.lock_account, s.unlock_account):
        with pytest.raises(SystemUserError, match="invalid account"):
            await action(name)
    assert calls == []


@pytest.mark.parametrize("group", ["-g0", "root\n", "a,b", "wheel\nx"], ids=repr)
async def test_bad_group_names_run_nothing(su, calls, group):
    with pytest.raises(SystemUserError, match="invalid account or group"):
        await su().ensure_account(
            AccountSpec(name="alice", home="/srv/homes/alice", supplementary_groups=(group,))
        )
    assert calls == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("home", "/srv/homes/../../etc"),
        ("home", "srv/homes/alice"),
        ("home", "/"),
        ("home", "/srv/homes/al:ice"),
        ("home", "/srv/homes/alice\n"),
        ("shell", "/bin/bash\n/bin/sh"),
        ("shell", "bash"),
        ("shell", "/bin/bash\x1b"),
        ("comment", "x:0:0"),
        ("comment", "line\nroot::0:0::/:/bin/sh"),
        ("comment", "tab\there"),
    ],
)
async def test_bad_fields_run_nothing(su, calls, field, value):
    spec = {"name": "alice", "home": "/srv/homes/alice", field: value}
    with pytest.raises(SystemUserError):
        await su().ensure_account(AccountSpec(**spec))
    assert calls == []


@pytest.mark.parametrize("uid", [0, 1, 999, 65534, 2**32 - 1])
async def test_low_or_special_uid_refused(su, calls, uid):
    with pytest.raises(ExistingAccountError):
        await su().ensure_account(AccountSpec(name="alice", home="/srv/homes/alice", uid=uid))
    assert calls == []


@pytest.mark.parametrize("name", ["root", "daemon", "nobody"])
@pytest.mark.parametrize("allow_existing", [False, True])
async def test_system_accounts_never_handed_out(su, calls, name, allow_existing):
    with pytest.raises(ExistingAccountError):
        await su(allow_existing=allow_existing).ensure_account(
            AccountSpec(name=name, home=f"/srv/homes/{name}")
        )
    assert calls == []


async def test_foreign_human_account_refused_unless_allowed(su, calls):
    with pytest.raises(ExistingAccountError, match="not created by"):
        await su().ensure_account(AccountSpec(name="dave", home="/srv/homes/dave"))
    # allowed by the admin: used, but its home elsewhere is left alone (no command, no chown)
    account = await su(allow_existing=True).ensure_account(
        AccountSpec(name="dave", home="/srv/homes/dave")
    )
    assert (account.created, account.home) == (False, "/home/dave")
    assert calls == []


async def test_foreign_account_cannot_be_locked_or_archived(su, calls, tmp_path):
    s = su()
    for action, args in ((s.lock_account, ()), (s.archive_home, (str(tmp_path / "arch"),))):
        with pytest.raises(ExistingAccountError):
            await action("dave", *args)
    assert calls == [] and not (tmp_path / "arch").exists()


@pytest.mark.parametrize("comment", ["-x", "--help", "-o -u 0"])
@pytest.mark.parametrize("flavour", ["useradd", "adduser", "busybox"])
def test_name_is_last_and_option_values_stay_values(flavour, comment):
    spec = AccountSpec(name="_-rf", home="/srv/homes/_-rf", comment=comment)
    argv = build_user_argv(flavour, spec, "grp")
    assert argv[-1] == "_-rf"
    i = argv.index(comment)
    assert argv[i - 1] in ("-c", "-g", "--gecos")  # the option that takes it as its value
