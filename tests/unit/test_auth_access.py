"""Applying the userlist to the hub's database: the pure plan, the timing bounds, and one pass of
:class:`HubAccess` against a real (in-memory) JupyterHub database."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub import orm, roles
from jupyterhub.user import User
from tornado.web import HTTPError
from traitlets.config import Configurable

from jupyterhub_lab_ext.auth.access import (
    AccessPlan,
    HubUser,
    Wanted,
    check_interval,
    plan_access,
    server_args,
    server_cache_max_age,
)
from jupyterhub_lab_ext.auth.authenticator import UserlistOAuthenticator

# ---- timing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "poll, age, expected",
    [(10, 60, 10), (10, 10, 5), (0, 60, 30), (10, 0, 10), (0, 0, 0), (2.5, 1, 0.5)],
)
def test_check_interval_is_at_most_half_the_refresh_age(poll, age, expected):
    assert check_interval(poll, age) == expected


@pytest.mark.parametrize(
    "age, expected", [(60, 30), (10, 5), (5, 2), (1, 1), (3600, 300), (0, None)]
)
def test_server_cache_is_half_the_refresh_age(age, expected):
    assert server_cache_max_age(age) == expected


def test_server_args_add_the_cache_bound_once():
    assert server_args(["--debug"], 5) == ["--debug", "--HubOAuth.cache_max_age=5"]
    once = server_args([], 5)
    assert server_args(once, 5) == once  # a server started again gets no second copy
    mine = ["--HubOAuth.cache_max_age=1"]
    assert server_args(mine, 30) == mine  # the admin's own setting wins
    assert server_args(["--HubOAuth.cache_max_age", "1"], 30) == ["--HubOAuth.cache_max_age", "1"]
    assert server_args(["--x"], None) == ["--x"]


# ---- the plan -----------------------------------------------------------------------------------

LIST = {
    "ann": Wanted(listed=True, admin=True, groups=frozenset({"staff"})),
    "bob": Wanted(listed=True, admin=False, groups=frozenset()),
}


def wanted(name):
    return LIST.get(name, Wanted(listed=False))


@pytest.mark.parametrize(
    "user, stop, ended, expected",
    [
        # listed and in line with the file: nothing
        (HubUser("ann", True, frozenset({"staff"})), True, (), AccessPlan()),
        # demoted in the file
        (HubUser("bob", True), False, (), AccessPlan(admin={"bob": False})),
        # promoted, and groups changed
        (
            HubUser("ann", False, frozenset({"x"})),
            False,
            (),
            AccessPlan(admin={"ann": True}, groups={"ann": frozenset({"staff"})}),
        ),
        # removed: revoked (once per process, again whenever tokens appear)
        (HubUser("zed", False), False, (), AccessPlan(revoke=["zed"])),
        (HubUser("zed", False), False, {"zed"}, AccessPlan()),
        (HubUser("zed", False, has_tokens=True), False, {"zed"}, AccessPlan(revoke=["zed"])),
        # removed admin: also loses the flag
        (HubUser("zed", True), False, (), AccessPlan(revoke=["zed"], admin={"zed": False})),
        # servers are stopped only with on_removal stop/lock
        (HubUser("zed", False, has_servers=True), False, {"zed"}, AccessPlan()),
        (HubUser("zed", False, has_servers=True), True, {"zed"}, AccessPlan(stop=["zed"])),
        (HubUser("bob", False, has_servers=True), True, (), AccessPlan()),
    ],
    ids=[
        "in-line",
        "demoted",
        "promoted-regrouped",
        "removed",
        "removed-done",
        "removed-new-token",
        "removed-admin",
        "revoke-keeps-servers",
        "stop-stops-servers",
        "listed-servers-kept",
    ],
)
def test_plan_access(user, stop, ended, expected):
    assert plan_access([user], wanted, stop_servers=stop, ended=set(ended)) == expected


def test_groups_left_alone_when_not_managed():
    unmanaged = Wanted(listed=True, admin=False, groups=None)
    plan = plan_access(
        [HubUser("x", False, frozenset({"g"}))], lambda n: unmanaged, stop_servers=True
    )
    assert not plan


# ---- one pass on a real JupyterHub database -----------------------------------------------------

USERLIST = "ann admin group:staff\nbob\n"


class FakeSpawner(SimpleNamespace):
    pending = None


class HubUsers:
    """``app.users``: real JupyterHub users, with fake spawners for the names in ``running``."""

    def __init__(self, db, running=()):
        self.db = db
        self.stopped: list[tuple[str, str]] = []
        self.running = set(running)

    def __getitem__(self, name):
        user = User(orm.User.find(self.db, name), {})
        if name in self.running:
            user.__dict__["spawners"] = {"": FakeSpawner(active=True)}
            user.stop = self._stopper(name)
        return user

    def _stopper(self, name):
        async def stop(server_name):
            self.stopped.append((name, server_name))
            self.running.discard(name)

        return stop


class FakeHubApp(Configurable):
    def __init__(self, db, running=()):
        super().__init__()
        self.db = db
        self.users = HubUsers(db, running)
        self.proxy = SimpleNamespace(delete_user=self._no_route)
        self._start_future = asyncio.get_running_loop().create_future()
        self._start_future.set_result(None)

    async def _no_route(self, user, server_name):
        pass


def make_db():
    db = orm.new_session_factory("sqlite:///:memory:")()
    for role in roles.get_default_roles():
        roles.create_role(db, role)
    db.add(orm.OAuthClient(identifier="jupyterhub"))
    db.commit()
    return db


def add_user(db, name, *, admin=False, tokens=0, server=False):
    user = orm.User(name=name, admin=admin)
    db.add(user)
    db.commit()
    roles.assign_default_roles(db, entity=user)
    client = orm.OAuthClient(identifier=f"jupyterhub-user-{name}", secret="x", redirect_uri="/")
    db.add(client)
    for _ in range(tokens):
        user.new_api_token(note="own")
    if tokens:  # a server's cookie and a pending OAuth code
        user.new_api_token(oauth_client=client)
        db.add(orm.OAuthCode(client_id=client.identifier, code="c", user=user, expires_at=2**31))
    if server:
        db.add(orm.Spawner(user=user, name="", server=orm.Server()))
    db.commit()
    return user


@pytest.fixture
def hub_auth(tmp_path):
    made = []

    def make(db, *, running=(), text=USERLIST, **kw):
        path = tmp_path / "userlist"
        path.write_text(text)
        kw.setdefault("userlist_poll_interval", 0)
        kw.setdefault("auth_refresh_age", 0)  # no background pass: the test drives it
        auth = UserlistOAuthenticator(
            parent=FakeHubApp(db, running),
            userlist_file=str(path),
            system_users=SimpleNamespace(),
            system_names_loader=lambda uid_min: frozenset(),
            create_system_users=False,
            **kw,
        )
        made.append(auth)
        return auth

    yield make
    for auth in made:
        auth.background.stop_polling()


def edit(auth, text, *, invalidate=True):
    path = Path(auth.userlist_file)
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    if invalidate:
        auth.userlist.file.invalidate()


def tokens_of(db, user):
    return db.query(orm.APIToken).filter(orm.APIToken.user_id == user.id).count()


@pytest.fixture
def hub_log(caplog):
    """caplog for the authenticator's logger (the hub database's alembic setup rewires logging)."""
    from traitlets.log import get_logger

    log = get_logger()
    log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=log.name)
    try:
        yield caplog
    finally:
        log.removeHandler(caplog.handler)


async def test_removed_users_lose_tokens_codes_and_login_cookie(hub_auth, hub_log):
    db = make_db()
    ann = add_user(db, "ann", tokens=1)
    zed = add_user(db, "zed", admin=True, tokens=2)
    old = add_user(db, "old")
    cookies = {u.name: u.cookie_id for u in (ann, zed, old)}
    auth = hub_auth(db)

    plan = await auth.access.sync()
    assert sorted(plan.revoke) == ["old", "zed"]
    assert tokens_of(db, zed) == 0
    assert not db.query(orm.OAuthCode).filter_by(user_id=zed.id).all()
    assert zed.cookie_id != cookies["zed"] and old.cookie_id != cookies["old"]
    assert zed.admin is False and orm.Role.find(db, "admin") not in zed.roles
    assert tokens_of(db, ann) == 2 and ann.cookie_id == cookies["ann"]  # listed: untouched
    assert "user=zed is not in the userlist: 3 tokens revoked" in hub_log.text
    assert not await auth.access.sync()  # nothing left to do

    zed.new_api_token(note="made by an admin later")
    plan = await auth.access.sync()
    assert plan.revoke == ["zed"] and tokens_of(db, zed) == 0


async def test_admin_flag_roles_and_groups_follow_the_file(hub_auth):
    db = make_db()
    ann = add_user(db, "ann")
    bob = add_user(db, "bob", admin=True)
    auth = hub_auth(db)
    plan = await auth.access.sync()
    assert plan.admin == {"ann": True, "bob": False}
    admin_role = orm.Role.find(db, "admin")
    assert ann.admin and admin_role in ann.roles
    assert not bob.admin and admin_role not in bob.roles
    assert [g.name for g in ann.groups] == ["staff"]
    assert tokens_of(db, bob) == 0 and not plan.revoke  # a demotion revokes nothing

    edit(auth, "ann group:other\nbob admin\n")
    await auth.access.sync()
    assert (ann.admin, bob.admin) == (False, True)
    assert [g.name for g in ann.groups] == ["other"]


@pytest.mark.parametrize("mode, stopped", [("revoke", []), ("stop", [("zed", "")])])
async def test_servers_of_removed_users_stop_only_when_asked(hub_auth, mode, stopped):
    db = make_db()
    add_user(db, "zed", server=True)
    auth = hub_auth(db, running={"zed"}, on_removal=mode)
    await auth.access.sync()
    await auth.background.wait()
    assert auth.parent.users.stopped == stopped


async def test_readded_user_is_left_alone(hub_auth):
    db = make_db()
    zed = add_user(db, "zed")
    auth = hub_auth(db)
    await auth.access.sync()
    assert auth.access._ended == {"zed"}
    edit(auth, USERLIST + "zed\n")
    cookie = zed.cookie_id
    await auth.access.sync()
    assert auth.access._ended == set() and zed.cookie_id == cookie


async def test_no_pass_without_a_list_or_with_allow_all_or_before_start(hub_auth):
    db = make_db()
    zed = add_user(db, "zed", tokens=1)
    assert await hub_auth(db, allow_all=True).access.sync() is None
    assert await hub_auth(db, text="bob admn\n").access.sync() is None  # never loaded
    starting = hub_auth(db)
    starting.parent._start_future = asyncio.get_running_loop().create_future()
    assert await starting.access.sync() is None
    assert tokens_of(db, zed) == 2


async def test_no_hub_no_pass(tmp_path):
    path = tmp_path / "userlist"
    path.write_text(USERLIST)
    auth = UserlistOAuthenticator(
        userlist_file=str(path),
        system_users=SimpleNamespace(),
        system_names_loader=lambda uid_min: frozenset(),
        userlist_poll_interval=0,
        auth_refresh_age=0,
    )
    assert await auth.access.sync() is None  # e.g. the CLI loading the hub's config


async def test_file_change_revokes_at_once(hub_auth):
    db = make_db()
    bob = add_user(db, "bob", tokens=1)
    auth = hub_auth(db)
    assert not await auth.access.sync()
    edit(auth, "ann admin group:staff\n", invalidate=False)  # the poll has to notice
    await auth.poll_userlist()
    await auth.background.wait()
    assert tokens_of(db, bob) == 0


async def test_no_server_starts_for_a_user_without_a_line(hub_auth):
    db = make_db()
    auth = hub_auth(db)
    spawner = SimpleNamespace(args=[])
    with pytest.raises(HTTPError) as refused:
        await auth.pre_spawn_start(SimpleNamespace(name="zed"), spawner)
    assert refused.value.status_code == 403
    assert "zed is not on this hub's user list" in refused.value.log_message
    await auth.pre_spawn_start(SimpleNamespace(name="bob"), spawner)  # listed: fine
    everyone = hub_auth(db, allow_all=True)
    await everyone.pre_spawn_start(SimpleNamespace(name="zed"), SimpleNamespace(args=[]))
