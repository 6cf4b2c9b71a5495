"""Unit tests of system_users with a fake account database and a fake command runner.

``FakeSystem`` plays both roles SystemUsers needs from the machine: it answers lookups
(like pwd/grp) and executes the argv of useradd/groupadd/usermod (and the adduser and
BusyBox variants) against an in-memory passwd/group, so the tests check the argv *and*
the end state. Home creation is replaced by a recorder (tests/unit/test_homes.py covers it).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tarfile

import pytest

from jupyterhub_lab_ext.accounts import homes
from jupyterhub_lab_ext.accounts.commands import (
    build_add_to_groups_argvs,
    build_group_argv,
    build_lock_argvs,
    build_user_argv,
    detect_flavour,
    run_command,
)
from jupyterhub_lab_ext.accounts.logindefs import read_login_defs, uid_min
from jupyterhub_lab_ext.accounts.policy import check_existing_account, check_existing_group
from jupyterhub_lab_ext.accounts.registry import RegistryError
from jupyterhub_lab_ext.accounts.system_users import (
    Account,
    AccountSpec,
    ExistingAccountError,
    GroupEntry,
    NssLookup,
    SystemUserError,
    SystemUsers,
    UserEntry,
)

# options that take a value, per command (everything else is a flag)
VALUE_OPTS = {
    "useradd": {"-d", "-s", "-g", "-u", "-G", "-c"},
    "groupadd": {"-g"},
    "usermod": {"-G", "-e"},
    "adduser": {"--home", "--shell", "--ingroup", "--uid", "--gecos", "-h", "-s", "-G", "-u", "-g"},
    "addgroup": {"--gid", "-g"},
    "passwd": set(),
}


def parse(argv):
    opts, args, it = {}, [], iter(argv[1:])
    for a in it:
        if a in VALUE_OPTS[argv[0]]:
            opts[a] = next(it)
        elif a.startswith("-"):
            opts[a] = True
        else:
            args.append(a)
    return opts, args


class FakeSystem:
    """In-memory passwd/group + a runner executing account commands against it."""

    def __init__(self):
        self.users: dict[str, UserEntry] = {
            "root": UserEntry("root", 0, 0, "/root", "/bin/bash"),
            "daemon": UserEntry("daemon", 1, 1, "/usr/sbin", "/usr/sbin/nologin"),
            "nobody": UserEntry("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin"),
            "olduser": UserEntry("olduser", 1400, 1400, "/home/olduser", "/bin/bash"),
        }
        self.groups: dict[str, GroupEntry] = {
            "root": GroupEntry("root", 0),
            "nogroup": GroupEntry("nogroup", 65534),
            "daemon": GroupEntry("daemon", 1),
            "sudo": GroupEntry("sudo", 27),
            "audio": GroupEntry("audio", 29),
            "users": GroupEntry("users", 100),
            "olduser": GroupEntry("olduser", 1400),
            "students": GroupEntry("students", 1500),
        }
        self.locked: dict[str, tuple] = {}
        self.calls: list[list[str]] = []
        self.fail: dict[str, list[tuple[int, str]]] = {}  # command -> queued (rc, stderr)
        self.running = 0
        self.max_running = 0

    # lookup interface (same as system_users.NssLookup)
    def user(self, name):
        return self.users.get(name)

    def user_by_uid(self, uid):
        return next((u for u in self.users.values() if u.uid == uid), None)

    def group(self, name):
        return self.groups.get(name)

    def group_by_gid(self, gid):
        return next((g for g in self.groups.values() if g.gid == gid), None)

    def group_names_of(self, name, gid):
        names = {g.name for g in self.groups.values() if name in g.members or g.gid == gid}
        return names

    def _next_id(self, used):
        i = 1000
        while i in used:
            i += 1
        return i

    # runner interface
    async def __call__(self, argv):
        self.calls.append(list(argv))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(0)  # let other tasks interleave here
            await asyncio.sleep(0)
            queued = self.fail.get(argv[0])
            if queued:
                rc, err = queued.pop(0)
                return rc, "", err
            return self._execute(list(argv))
        finally:
            self.running -= 1

    def _add_group(self, name, gid):
        if name in self.groups:
            return 9, "", f"{name}: group '{name}' already exists\n"
        gids = {g.gid for g in self.groups.values()}
        if gid is not None and int(gid) in gids:
            return 4, "", f"GID '{gid}' already exists\n"
        gid = int(gid) if gid is not None else self._next_id(gids)
        self.groups[name] = GroupEntry(name, gid)
        return 0, "", ""

    def _join(self, name, groups):
        for g in groups:
            if g not in self.groups:
                return 6, "", f"group '{g}' does not exist\n"
        for g in groups:
            old = self.groups[g]
            self.groups[g] = GroupEntry(old.name, old.gid, (*old.members, name))
        return 0, "", ""

    def _add_user(self, name, home, shell, group, uid, extra):
        if name in self.users:
            return 9, "", f"user '{name}' already exists\n"
        if group not in self.groups:
            return 6, "", f"group '{group}' does not exist\n"
        uids = {u.uid for u in self.users.values()}
        if uid is not None and int(uid) in uids:
            return 4, "", f"UID {uid} is not unique\n"
        uid = int(uid) if uid is not None else self._next_id(uids)
        self.users[name] = UserEntry(name, uid, self.groups[group].gid, home, shell)
        return self._join(name, extra)

    def _execute(self, argv):
        opts, args = parse(argv)
        cmd = argv[0]
        if cmd == "groupadd" or (cmd == "addgroup" and len(args) == 1):
            return self._add_group(args[0], opts.get("-g", opts.get("--gid")))
        if cmd == "addgroup":  # BusyBox: addgroup USER GROUP
            return self._join(args[0], [args[1]])
        if cmd == "useradd":
            extra = opts["-G"].split(",") if "-G" in opts else []
            return self._add_user(
                args[0], opts["-d"], opts["-s"], opts["-g"], opts.get("-u"), extra
            )
        if cmd == "adduser" and len(args) == 2:  # Debian: adduser USER GROUP
            return self._join(args[0], [args[1]])
        if cmd == "adduser" and "--home" in opts:
            return self._add_user(
                args[0], opts["--home"], opts["--shell"], opts["--ingroup"], opts.get("--uid"), []
            )
        if cmd == "adduser":
            return self._add_user(args[0], opts["-h"], opts["-s"], opts["-G"], opts.get("-u"), [])
        if cmd == "usermod":
            if args[0] not in self.users:
                return 6, "", f"user '{args[0]}' does not exist\n"
            if "-G" in opts:
                return self._join(args[0], opts["-G"].split(","))
            self.locked[args[0]] = ("-L" in opts, opts.get("-e"))
            return 0, "", ""
        if cmd == "passwd":
            self.locked[args[0]] = ("-l" in opts, None)
            return 0, "", ""
        return 127, "", f"{cmd}: not found\n"


@pytest.fixture
def fake():
    return FakeSystem()


@pytest.fixture
def made_homes(monkeypatch):
    """Replace home creation by a recorder: (home, uid, gid, mode, adopt) per call."""
    made = []

    def make_home(home, uid, gid, mode, *, adopt_root_owned):
        made.append((home, uid, gid, mode, adopt_root_owned))
        return True

    monkeypatch.setattr(homes, "make_home", make_home)
    return made


@pytest.fixture
def make_users(fake, tmp_path, made_homes):
    def factory(**kwargs):
        kwargs.setdefault("state_dir", str(tmp_path / "state"))
        kwargs.setdefault("uid_min", 1000)
        kwargs.setdefault("gid_min", 1000)
        kwargs.setdefault("flavour", "useradd")
        kwargs.setdefault("retry_delay", 0.001)
        return SystemUsers(fake, lookup=fake, **kwargs)

    return factory


def spec(name="alice", **kw):
    kw.setdefault("home", f"/srv/homes/{name}")
    return AccountSpec(name=name, **kw)


# -- argv builders ------------------------------------------------------------------------
FULL = spec(uid=2001, supplementary_groups=("a", "b"), shell="/bin/zsh", comment="Alice A")  # noqa: S604

BUILD_CASES = {
    "useradd-min": (
        "useradd",
        spec(),
        ["useradd", "-M", "-d", "/srv/homes/alice", "-s", "/bin/bash", "-g", "grp", "alice"],
    ),
    "useradd-full": (
        "useradd",
        FULL,
        [
            "useradd",
            "-M",
            "-d",
            "/srv/homes/alice",
            "-s",
            "/bin/zsh",
            "-g",
            "grp",
            "-u",
            "2001",
            "-G",
            "a,b",
            "-c",
            "Alice A",
            "alice",
        ],
    ),
    "adduser-full": (
        "adduser",
        FULL,
        [
            "adduser",
            "--quiet",
            "--disabled-password",
            "--no-create-home",
            "--home",
            "/srv/homes/alice",
            "--shell",
            "/bin/zsh",
            "--ingroup",
            "grp",
            "--uid",
            "2001",
            "--gecos",
            "Alice A",
            "alice",
        ],
    ),
    "busybox-full": (
        "busybox",
        FULL,
        [
            "adduser",
            "-D",
            "-H",
            "-h",
            "/srv/homes/alice",
            "-s",
            "/bin/zsh",
            "-G",
            "grp",
            "-u",
            "2001",
            "-g",
            "Alice A",
            "alice",
        ],
    ),
}


@pytest.mark.parametrize("flavour, sp, expected", BUILD_CASES.values(), ids=BUILD_CASES.keys())
def test_build_user_argv(flavour, sp, expected):
    assert build_user_argv(flavour, sp, "grp") == expected


@pytest.mark.parametrize(
    "flavour, gid, expected",
    [
        ("useradd", None, ["groupadd", "g"]),
        ("useradd", 3000, ["groupadd", "-g", "3000", "g"]),
        ("adduser", 3000, ["addgroup", "--quiet", "--gid", "3000", "g"]),
        ("busybox", 3000, ["addgroup", "-g", "3000", "g"]),
    ],
    ids=["useradd", "useradd-gid", "adduser-gid", "busybox-gid"],
)
def test_build_group_argv(flavour, gid, expected):
    assert build_group_argv(flavour, "g", gid) == expected


def test_build_membership_and_lock_argvs():
    assert build_add_to_groups_argvs("useradd", "u", ["a", "b"]) == [
        ["usermod", "-a", "-G", "a,b", "u"]
    ]
    assert build_add_to_groups_argvs("adduser", "u", ["a", "b"]) == [
        ["adduser", "--quiet", "u", "a"],
        ["adduser", "--quiet", "u", "b"],
    ]
    assert build_add_to_groups_argvs("busybox", "u", ["a"]) == [["addgroup", "u", "a"]]
    assert build_add_to_groups_argvs("useradd", "u", []) == []
    assert build_lock_argvs("useradd", "u") == [["usermod", "-L", "-e", "1", "u"]]
    assert build_lock_argvs("useradd", "u", unlock=True) == [["usermod", "-U", "-e", "", "u"]]
    assert build_lock_argvs("busybox", "u") == [["passwd", "-l", "u"]]


# -- creation -------------------------------------------------------------------------------
async def test_creates_group_user_and_home(fake, make_users, made_homes, tmp_path):
    su = make_users()
    account = await su.ensure_account(spec(home_mode=0o750))
    assert fake.calls == [
        ["groupadd", "alice"],
        ["useradd", "-M", "-d", "/srv/homes/alice", "-s", "/bin/bash", "-g", "alice", "alice"],
    ]
    assert account == Account("alice", 1000, 1000, "/srv/homes/alice", created=True)
    assert made_homes == [("/srv/homes/alice", 1000, 1000, 0o750, True)]
    assert su.created_by_us("alice") and not su.created_by_us("olduser")
    registry = tmp_path / "state" / "accounts.json"
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert stat.S_IMODE(registry.parent.stat().st_mode) == 0o700
    data = json.loads(registry.read_text())
    assert data["users"]["alice"]["uid"] == 1000 and data["groups"]["alice"]["gid"] == 1000


async def test_second_call_creates_nothing(fake, make_users):
    su = make_users()
    first = await su.ensure_account(spec())
    n_calls = len(fake.calls)
    again = await su.ensure_account(spec())
    assert again == Account(first.name, first.uid, first.gid, first.home, created=False)
    assert len(fake.calls) == n_calls
    # a new SystemUsers (hub restart) reads the registry from disk
    assert (await make_users().ensure_account(spec())).created is False


async def test_uid_gid_shared_and_supplementary_groups(fake, make_users):
    su = make_users(allowed_system_groups=["audio"])
    a = await su.ensure_account(spec(uid=2001, gid=2001))
    assert fake.calls[0] == ["groupadd", "-g", "2001", "alice"]
    assert (a.uid, a.gid) == (2001, 2001)
    fake.calls.clear()
    b = await su.ensure_account(
        spec("bob", group="students", supplementary_groups=("course1", "audio"))
    )
    assert fake.calls == [
        ["groupadd", "course1"],
        "useradd -M -d /srv/homes/bob -s /bin/bash -g students -G course1,audio bob".split(),
    ]
    assert b.gid == 1500
    assert "bob" in fake.groups["course1"].members and "bob" in fake.groups["audio"].members
    # later a new supplementary group is added to the existing account
    fake.calls.clear()
    await su.ensure_account(spec("bob", group="students", supplementary_groups=("course2",)))
    assert fake.calls == [["groupadd", "course2"], ["usermod", "-a", "-G", "course2", "bob"]]


@pytest.mark.parametrize("flavour", ["adduser", "busybox"])
async def test_adduser_flavours_add_supplementary_groups_after_creation(fake, make_users, flavour):
    su = make_users(flavour=flavour)
    account = await su.ensure_account(spec(supplementary_groups=("course1",)))
    assert account.created and "alice" in fake.groups["course1"].members
    assert fake.calls[-1][0] in ("adduser", "addgroup") and fake.calls[-1][-2:] == [
        "alice",
        "course1",
    ]


# -- refusals -------------------------------------------------------------------------------
REFUSE_CASES = {
    "root": ("root", {}),
    "root-allow-existing": ("root", {"allow_existing": True}),
    "daemon-allow-existing": ("daemon", {"allow_existing": True}),
    "nobody-allow-existing": ("nobody", {"allow_existing": True}),
    "existing-not-ours": ("olduser", {}),
    "below-login-defs-uid-min": ("olduser", {"allow_existing": True, "uid_min": 1401}),
}


@pytest.mark.parametrize("name, kwargs", REFUSE_CASES.values(), ids=REFUSE_CASES.keys())
async def test_refuses_existing_accounts(fake, make_users, name, kwargs):
    su = make_users(**kwargs)
    with pytest.raises(ExistingAccountError, match=name):
        await su.ensure_account(spec(name))
    assert fake.calls == []


async def test_allow_existing_accepts_a_normal_account(fake, make_users, made_homes):
    su = make_users(allow_existing=True)
    account = await su.ensure_account(spec("olduser", home="/home/olduser"))
    assert account == Account("olduser", 1400, 1400, "/home/olduser", created=False)
    assert made_homes == [("/home/olduser", 1400, 1400, 0o700, False)]
    # a home elsewhere than our layout (an LDAP account, /nonexistent) is left alone
    account = await su.ensure_account(spec("olduser", home="/srv/homes/olduser"))
    assert account.home == "/home/olduser" and len(made_homes) == 1
    assert fake.calls == []


async def test_uid_min_from_login_defs(fake, make_users, tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t 1401\nGID_MIN 1000\nUMASK 022\n")
    su = make_users(allow_existing=True, uid_min=None, login_defs=str(defs))
    with pytest.raises(ExistingAccountError, match="UID_MIN 1401"):
        await su.ensure_account(spec("olduser"))


async def test_recreated_account_with_other_uid_is_not_ours(fake, make_users):
    su = make_users()
    await su.ensure_account(spec())
    del fake.users["alice"]  # an admin deleted it and someone made a new "alice"
    fake.users["alice"] = UserEntry("alice", 1777, 1000, "/srv/homes/alice", "/bin/sh")
    with pytest.raises(ExistingAccountError, match="created it with uid 1000"):
        await su.ensure_account(spec())


GROUP_REFUSALS = {
    "personal-group-not-ours": (spec("olduser2", group=None), "olduser", "not created"),
    "system-group-supplementary": (spec(supplementary_groups=("sudo",)), None, "sudo"),
    "root-group-primary": (spec(group="root"), None, "gid 0"),
    "nogroup-primary": (spec(group="nogroup"), None, "gid 65534"),
    "pinned-gid-mismatch": (spec(group="students", gid=1600), None, "gid 1500"),
}


@pytest.mark.parametrize("sp, rename, match", GROUP_REFUSALS.values(), ids=GROUP_REFUSALS.keys())
async def test_refuses_groups(fake, make_users, sp, rename, match):
    if rename:  # a leftover personal group named like the new account
        fake.groups[sp.name] = GroupEntry(sp.name, 1450)
    with pytest.raises(SystemUserError, match=match):
        await make_users().ensure_account(sp)
    assert not any(c[0] == "useradd" for c in fake.calls)


async def test_leftover_personal_group_allowed_with_allow_existing(fake, make_users):
    fake.groups["carol"] = GroupEntry("carol", 1450)
    account = await make_users(allow_existing=True).ensure_account(spec("carol"))
    assert account.created and account.gid == 1450
    assert fake.calls == [
        ["useradd", "-M", "-d", "/srv/homes/carol", "-s", "/bin/bash", "-g", "carol", "carol"]
    ]


INVALID = {
    "uppercase": spec("Alice"),
    "leading-dash": spec("-alice"),
    "too-long": spec("a" * 33),
    "relative-home": spec(home="homes/alice"),
    "dotdot-home": spec(home="/srv/../etc/alice"),
    "root-home": spec(home="/"),
    "trailing-slash-home": spec(home="/srv/homes/alice/"),
    "colon-in-comment": spec(comment="a:b"),
    "newline-in-comment": spec(comment="a\nroot::0:0::/:/bin/sh"),
    "relative-shell": spec(shell="bash"),  # noqa: S604
    "bad-group": spec(group="Staff Group"),
    "uid-zero": spec(uid=0),
    "uid-below-min": spec(uid=999),
    "gid-zero": spec(gid=0),
    "uid-nobody": spec(uid=65534),
}


@pytest.mark.parametrize("sp", INVALID.values(), ids=INVALID.keys())
async def test_invalid_specs_run_nothing(fake, make_users, sp):
    with pytest.raises(SystemUserError):
        await make_users(allow_existing=True).ensure_account(sp)
    assert fake.calls == []


async def test_pinned_uid_in_use(fake, make_users):
    with pytest.raises(SystemUserError, match="already used by 'olduser'"):
        await make_users().ensure_account(spec(uid=1400))


# -- failures and retries -------------------------------------------------------------------
async def test_failure_carries_command_rc_and_stderr(fake, make_users):
    fake.fail["useradd"] = [(3, "useradd: invalid home directory '/srv/homes/alice'\n")]
    su = make_users()
    with pytest.raises(SystemUserError) as info:
        await su.ensure_account(spec())
    err = info.value
    assert err.rc == 3 and err.argv[0] == "useradd" and "invalid home directory" in err.stderr
    assert "rc=3" in str(err) and "'useradd'" in str(err) and "invalid home" in str(err)
    assert len([c for c in fake.calls if c[0] == "useradd"]) == 1  # not retried
    assert not su.created_by_us("alice")  # the intent record was dropped


async def test_name_taken_meanwhile_is_not_claimed(fake, make_users):
    su = make_users()
    original = fake._add_user

    def someone_else_was_faster(name, *args):
        original(name, "/home/other", "/bin/sh", "students", None, [])
        return 9, "", f"useradd: user '{name}' already exists\n"

    fake._add_user = someone_else_was_faster
    with pytest.raises(SystemUserError, match="rc=9"):
        await su.ensure_account(spec())
    assert not su.created_by_us("alice")
    fake._add_user = original
    with pytest.raises(ExistingAccountError, match="not created by"):
        await su.ensure_account(spec())


async def test_recovers_from_a_crash_after_useradd(fake, make_users, made_homes, tmp_path):
    su = make_users()
    # what a crash leaves: intent records, the group and the account, no uid recorded, no home
    su.registry.set_group("alice", None)
    su.registry.set_user("alice", uid=None, home="/srv/homes/alice")
    fake.groups["alice"] = GroupEntry("alice", 1300)
    fake.users["alice"] = UserEntry("alice", 1300, 1300, "/srv/homes/alice", "/bin/bash")
    account = await make_users().ensure_account(spec())
    assert account == Account("alice", 1300, 1300, "/srv/homes/alice", created=False)
    assert su.accounts()["alice"]["uid"] == 1300
    assert made_homes == [("/srv/homes/alice", 1300, 1300, 0o700, False)]
    assert fake.calls == []


async def test_failed_groupadd_leaves_no_claim(fake, make_users):
    fake.fail["groupadd"] = [(4, "groupadd: GID '1000' already exists\n")]
    su = make_users()
    with pytest.raises(SystemUserError, match="rc=4"):
        await su.ensure_account(spec())
    assert su.registry.group("alice") is None and not su.created_by_us("alice")
    fake.groups["alice"] = GroupEntry("alice", 1300)  # later someone else makes that group
    with pytest.raises(ExistingAccountError, match="group 'alice' already exists"):
        await su.ensure_account(spec())


@pytest.mark.parametrize(
    "rc, stderr",
    [
        (10, "useradd: cannot lock /etc/group; try again later.\n"),
        (1, "useradd: cannot lock /etc/passwd; try again later.\n"),
    ],
    ids=["rc10", "rc1-lock-message"],
)
async def test_retries_on_lock_contention(fake, make_users, rc, stderr):
    fake.fail["useradd"] = [(rc, stderr), (rc, stderr)]
    account = await make_users().ensure_account(spec())
    assert account.created and account.uid == 1000
    assert len([c for c in fake.calls if c[0] == "useradd"]) == 3


async def test_retries_are_bounded(fake, make_users):
    fake.fail["groupadd"] = [(10, "groupadd: cannot lock /etc/group\n")] * 10
    with pytest.raises(SystemUserError, match="rc=10"):
        await make_users(lock_retries=3).ensure_account(spec())
    assert len(fake.calls) == 4 and all(c[0] == "groupadd" for c in fake.calls)


async def test_concurrent_first_logins(fake, make_users):
    su = make_users()
    names = [f"user{i:02d}" for i in range(20)]
    order = [names[i % 20] for i in range(50)]
    fake.fail["useradd"] = [(10, "cannot lock /etc/passwd\n")] * 5  # contention on top
    accounts = await asyncio.gather(*(su.ensure_account(spec(n)) for n in order))
    assert sum(a.created for a in accounts) == 20
    assert sorted({a.name for a in accounts if a.created}) == names
    by_name = {}
    for a in accounts:  # every call for one name sees the same account
        assert by_name.setdefault(a.name, (a.uid, a.gid)) == (a.uid, a.gid)
    assert len({uid for uid, _ in by_name.values()}) == 20
    assert len([c for c in fake.calls if c[0] == "useradd"]) == 25
    assert fake.max_running == 1  # account-database commands never overlap
    assert set(su.accounts()) == set(names)


# -- deprovisioning -------------------------------------------------------------------------
async def test_lock_and_unlock(fake, make_users, tmp_path):
    su = make_users()
    await su.ensure_account(spec())
    fake.calls.clear()
    await su.lock_account("alice")
    assert fake.calls == [["usermod", "-L", "-e", "1", "alice"]]
    assert fake.locked["alice"] == (True, "1")
    assert su.accounts()["alice"]["locked"]
    await su.unlock_account("alice")
    assert fake.calls[-1] == ["usermod", "-U", "-e", "", "alice"]
    assert su.accounts()["alice"]["locked"] is None


@pytest.mark.parametrize("name", ["root", "daemon", "olduser", "nobody-here"])
async def test_lock_refuses_foreign_and_missing(fake, make_users, name):
    with pytest.raises(SystemUserError):
        await make_users().lock_account(name)
    assert fake.calls == []


async def test_lock_failure_surfaces(fake, make_users):
    su = make_users()
    await su.ensure_account(spec())
    fake.fail["usermod"] = [(8, "usermod: user alice is currently used by process 1\n")]
    with pytest.raises(SystemUserError, match="currently used by process"):
        await su.lock_account("alice")


# -- home population and archive through SystemUsers (real files) ---------------------------
@pytest.fixture
def owner():
    """A uid/gid to own test homes: a made-up one as root (checks chown), else our own."""
    if os.geteuid() == 0:
        return 54321, 54321
    return os.getuid(), os.getgid()


def own_users(fake, tmp_path, uid, **kwargs) -> SystemUsers:
    """SystemUsers over ``fake`` that may use accounts with the test's own ``uid``."""
    return SystemUsers(
        fake,
        lookup=fake,
        state_dir=str(tmp_path / "state"),
        uid_min=min(uid, 1000),
        gid_min=1000,
        flavour="useradd",
        **kwargs,
    )


async def test_populate_home_keeps_a_manifest(fake, tmp_path, owner, monkeypatch):
    uid, gid = owner
    home = tmp_path / "homes" / "dana"
    template = tmp_path / "template"
    (template / "nb").mkdir(parents=True)
    (template / "nb" / "intro.ipynb").write_text("{}")
    (template / "README.md").write_text("hello")
    fake.users["dana"] = UserEntry("dana", uid, gid, str(home), "/bin/bash")
    su = own_users(fake, tmp_path, uid, allow_existing=True)
    account = await su.ensure_account(spec("dana", home=str(home)))
    assert (home.stat().st_uid, stat.S_IMODE(home.stat().st_mode)) == (uid, 0o700)
    assert await su.populate_home(account, str(template), readonly=True) == 2
    assert stat.S_IMODE((home / "README.md").stat().st_mode) == 0o444
    (home / "README.md").unlink()  # the user deletes one file
    (template / "new.txt").write_text("new")
    report = await su.sync_home(account, str(template))
    assert (report.copied, report.removed_by_user) == (["new.txt"], ["README.md"])
    assert not (home / "README.md").exists()
    manifest = su.registry.manifest("dana")
    assert set(manifest) == {"nb/intro.ipynb", "README.md", "new.txt"}
    with pytest.raises(SystemUserError, match="does not match"):
        await su.populate_home(Account("dana", uid, gid, "/etc", False), str(template))


async def test_archive_home(fake, tmp_path, owner):
    uid, gid = owner
    home = tmp_path / "homes" / "erin"
    fake.users["erin"] = UserEntry("erin", uid, gid, str(home), "/bin/bash")
    su = own_users(fake, tmp_path, uid, allow_existing=True)
    await su.ensure_account(spec("erin", home=str(home)))
    (home / "work.txt").write_text("results")
    (home / "escape").symlink_to("/etc/hostname")
    path = await su.archive_home("erin", str(tmp_path / "archive"))
    assert os.path.basename(path).startswith("erin-") and path.endswith(".tar.gz")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "archive").stat().st_mode) == 0o700
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("erin/work.txt").read() == b"results"
    assert members["erin/escape"].issym() and members["erin/escape"].linkname == "/etc/hostname"
    assert (home / "work.txt").exists()  # homes are never deleted
    second = await su.archive_home("erin", str(tmp_path / "archive"))  # same second, maybe
    names = sorted(os.listdir(tmp_path / "archive"))
    assert second != path and names == sorted(os.path.basename(p) for p in (path, second))


# -- plumbing -------------------------------------------------------------------------------
async def test_run_command_reports_rc_and_stderr():
    assert await run_command(["true"]) == (0, "", "")
    rc, out, err = await run_command(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (rc, out, err) == (3, "out\n", "err\n")
    rc, _, err = await run_command(["/nonexistent/useradd"])
    assert rc == 127 and "not found" in err
    rc, _, err = await run_command(["sleep", "30"], timeout=0.2)
    assert rc == -9 and "killed after 0.2 s" in err


def _tool(directory, name, content="#!/bin/sh\nexit 0\n"):
    path = directory / name
    path.write_text(content)
    path.chmod(0o755)
    return path


def test_detect_flavour(tmp_path):
    a, b, c, d = (tmp_path / x for x in "abcd")
    for x in (a, b, c, d):
        x.mkdir()
    _tool(a, "useradd")
    _tool(a, "adduser")
    _tool(b, "adduser", "#!/usr/bin/perl\n")
    (c / "adduser").symlink_to(_tool(c, "busybox"))
    assert detect_flavour(str(a)) == "useradd"
    assert detect_flavour(str(b)) == "adduser"
    assert detect_flavour(str(c)) == "busybox"
    with pytest.raises(RuntimeError, match="neither useradd nor adduser"):
        detect_flavour(str(d))


@pytest.mark.parametrize(
    "path, mode",
    [("accounts.json", 0o644), ("accounts.json", 0o620), (".", 0o755)],
    ids=["registry-world-readable", "registry-group-writable", "state-dir-open"],
)
async def test_registry_must_be_private(fake, make_users, tmp_path, path, mode):
    su = make_users()
    await su.ensure_account(spec())
    (tmp_path / "state" / path).chmod(mode)
    with pytest.raises(SystemUserError, match="mode"):
        await su.ensure_account(spec("bob"))
    with pytest.raises(RegistryError, match="mode"):
        su.created_by_us("alice")
    assert not any(c[0] == "useradd" and c[-1] == "bob" for c in fake.calls)


async def test_forged_registry_symlink_is_refused(fake, make_users, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    forged = tmp_path / "forged.json"
    forged.write_text('{"users": {"olduser": {"uid": 1400}}, "groups": {}}')
    forged.chmod(0o600)
    (state / "accounts.json").symlink_to(forged)
    with pytest.raises(SystemUserError):
        await make_users().ensure_account(spec("olduser"))


# -- the pure policy, table-driven ----------------------------------------------------------
ACCOUNT_POLICY = {
    # id: (uid, record, allow_existing, expected: True/False = ours?, or an error match)
    "ours": (1500, {"uid": 1500}, False, True),
    "ours-interrupted": (1500, {"uid": None}, False, True),
    "ours-allow-existing": (1500, {"uid": 1500}, True, True),
    "foreign": (1500, None, False, "not created by"),
    "foreign-allowed": (1500, None, True, False),
    "recreated-other-uid": (1600, {"uid": 1500}, False, "created it with uid 1500"),
    "recreated-other-uid-allowed": (1600, {"uid": 1500}, True, False),
    "root-even-if-recorded": (0, {"uid": 0}, True, "UID_MIN"),
    "system-uid": (999, None, True, "UID_MIN"),
    "nobody": (65534, {"uid": 65534}, True, "nobody"),
}


@pytest.mark.parametrize(
    "uid, record, allow, expected", ACCOUNT_POLICY.values(), ids=ACCOUNT_POLICY.keys()
)
def test_check_existing_account(uid, record, allow, expected):
    if isinstance(expected, bool):
        assert check_existing_account("x", uid, record, 1000, allow) is expected
    else:
        with pytest.raises(ExistingAccountError, match=expected):
            check_existing_account("x", uid, record, 1000, allow)


GROUP_POLICY = {
    # id: (gid, record, personal, allow_existing, allowed, error match or None)
    "personal-ours": (1500, {"gid": 1500}, True, False, (), None),
    "personal-foreign": (1500, None, True, False, (), "not created"),
    "personal-foreign-allowed": (1500, None, True, True, (), None),
    "personal-system-gid": (100, {"gid": 100}, True, True, (), "system group"),
    "shared-normal": (1500, None, False, False, (), None),
    "shared-system": (27, None, False, True, (), "allowed_system_groups"),
    "shared-system-listed": (27, None, False, False, ("x",), None),
    "root-group-listed": (0, None, False, True, ("x",), "gid 0"),
    "nogroup": (65534, None, False, True, ("x",), "gid 65534"),
}


@pytest.mark.parametrize(
    "gid, record, personal, allow, allowed, error", GROUP_POLICY.values(), ids=GROUP_POLICY.keys()
)
def test_check_existing_group(gid, record, personal, allow, allowed, error):
    kwargs = dict(personal=personal, gid_min=1000, allow_existing=allow, allowed=allowed)
    if error is None:
        check_existing_group("x", gid, record, **kwargs)
    else:
        with pytest.raises(ExistingAccountError, match=error):
            check_existing_group("x", gid, record, **kwargs)


# -- blocking helpers -----------------------------------------------------------------------
def test_nss_lookup_reads_the_real_databases():
    nss = NssLookup()
    root = nss.user("root")
    assert root is not None and (root.uid, root.gid, root.home) == (0, 0, "/root")
    assert nss.user_by_uid(0).name == "root" and nss.group_by_gid(0).name == "root"
    assert nss.group("root").gid == 0 and "root" in nss.group_names_of("root", 0)
    assert nss.user("no-such-user-jhle") is None and nss.group("no-such-group-jhle") is None
    assert nss.user_by_uid(2**31 - 7) is None and nss.group_by_gid(2**31 - 7) is None


def test_read_login_defs(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text(
        "# UID_MIN 5\nUID_MIN\t\t\t 1000\nGID_MIN 0x3e8  # hex\nUMASK 022\n"
        "ENCRYPT_METHOD SHA512\nSYS_UID_MAX 999\n\nBROKEN\n"
    )
    values = read_login_defs(str(defs))
    assert values["UID_MIN"] == 1000 and values["GID_MIN"] == 1000 and values["UMASK"] == 22
    assert values["SYS_UID_MAX"] == 999 and "ENCRYPT_METHOD" not in values
    assert read_login_defs(str(tmp_path / "missing")) == {}


def test_uid_min_of_login_defs(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("UID_MIN 500\nUID_MIN 1500  # the last one counts, as for shadow\n")
    assert uid_min(str(defs)) == 1500
    defs.write_text("UID_MIN nope\nUID_MAX 6\n")
    assert uid_min(str(defs)) == 1000
    assert uid_min(str(tmp_path / "missing")) == 1000
    assert uid_min(str(tmp_path)) == 1000  # unreadable (a directory): the default
