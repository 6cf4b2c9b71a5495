"""The hub side (admission point, post_stop/post_auth hooks) and ``enable_user_limit`` against
an in-process service; the keep-alive client; failure modes (fail open / closed). What the
admission point relies on in JupyterHub is tested on a real hub (tests/e2e/test_user_limit.py)."""

from __future__ import annotations

import copy
import json
import logging
import os
import stat
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException
from test_user_limit_support import HOOK, Service, free_port
from tornado import web
from traitlets.config import Config

from jupyterhub_lab_ext.services.user_limit.client import ServiceClient, ServiceUnavailable
from jupyterhub_lab_ext.services.user_limit.hook import ATTR, UserLimitHook, decided_at
from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions, enable_user_limit
from jupyterhub_lab_ext.services.user_limit.points import AdmissionPoint, EarlyPoint


def spawner(user, server="", groups=(), admin=False, options=None):
    """A spawner in ``User.spawn()``: its server row (``orm_spawner.server``) is this spawn's."""
    u = SimpleNamespace(name=user, admin=admin, groups=[SimpleNamespace(name=g) for g in groups])
    row = SimpleNamespace(server=object())
    return SimpleNamespace(user=u, name=server, user_options=options or {}, orm_spawner=row)


@pytest.fixture
def svc(tmp_path):
    s = Service(tmp_path, max_active_servers=1, max_servers_per_user=1, start_queued_servers=False)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def undone():
    """Spawners the hook undid (at the admission point, the hub's spawn is undone by the hook)."""
    return []


@pytest.fixture
async def hook(svc, undone):
    h = UserLimitHook(
        svc.url + "/",
        HOOK,
        public_prefix="/services/user-limit/",
        timeout=5,
        undo=undone.append,
        undo_early=undone.append,
    )
    try:
        yield h
    finally:
        if h._client is not None:
            await h._client.aclose()


def status(svc):
    used = svc.app.ledger.usage()
    return used.total, list(svc.app.ledger.queue)


async def test_admit_queue_release(svc, hook, undone):
    a = spawner("a", options={"profile": "py"})
    await hook.decide_late(a)
    assert getattr(a, ATTR) and undone == []
    b = spawner("b", server="gpu", groups=["staff"])
    with pytest.raises(SpawnException) as info:
        await hook.decide_late(b)
    assert undone == [b], "a queued spawn is undone before the refusal"
    exc = info.value
    assert exc.status_code == 429 and exc.reason == "capacity"
    assert (
        exc.headers["X-JupyterHub-Queue-Position"] == "1" and int(exc.headers["Retry-After"]) >= 5
    )
    assert "number 1 in line" in exc.jupyterhub_message
    assert 'href="/services/user-limit/queue?server=gpu"' in exc.message_html
    assert 'http-equiv="refresh"' in exc.jupyterhub_html_message
    # the spawn form shows no HTML message: the Refresh header takes browsers to the queue page
    assert exc.headers["Refresh"] == "1; url=/services/user-limit/queue?server=gpu"
    assert getattr(b, ATTR) is None
    assert status(svc) == (1, ["b"])
    assert svc.app.ledger.queue["b"].groups == frozenset({"staff"})
    # the hub runs post_stop_hook after a refused spawn too: it must not free anything
    await hook.post_stop_hook(b)
    assert status(svc) == (1, ["b"])
    await hook.post_stop_hook(a)
    assert not hasattr(a, ATTR)
    used, queue = status(svc)
    assert queue == [] and svc.app.ledger.admissions  # b got the freed place (reserved)
    assert [x.state for x in svc.app.ledger.admissions.values()] == ["reserved"]


async def test_per_user_cap_is_a_403(svc, hook, undone):
    svc.call(svc.app.set_limits({"max_active_servers": 5}))
    await hook.decide_late(spawner("a"))
    two = spawner("a", server="two")
    with pytest.raises(SpawnException) as info:
        await hook.decide_late(two)
    assert info.value.status_code == 403 and "maximum of 1 server" in info.value.message
    assert undone == [two]


async def test_pre_spawn_hook_decides_only_when_the_admission_point_did_not_run(
    svc, hook, undone, caplog
):
    a = spawner("a")
    await hook.decide_late(a)
    await hook.pre_spawn_hook(a)  # decided already: nothing more
    assert svc.app.ledger.usage().total == 1
    caplog.set_level(logging.WARNING)
    b = spawner("b")  # a hub that never called the admission point
    with pytest.raises(SpawnException) as info:
        await hook.pre_spawn_hook(b)
    assert info.value.status_code == 429 and list(svc.app.ledger.queue) == ["b"]
    # the hub undoes a spawn that fails in pre_spawn_hook itself
    assert undone == []
    assert "admission point" in caplog.text


async def test_admission_point_is_the_admins_scopes_and_asks_first(svc, hook):
    point = AdmissionPoint(hook.decide_late, ["read:users:name!user"])
    # JupyterHub writes the trait into the server's environment as JSON, and calls it only
    # when it is true; traitlets deep-copies config per spawner
    assert json.dumps(point) == '["read:users:name!user"]'
    assert bool(AdmissionPoint(hook.decide_late)) and copy.deepcopy(point) is point
    a = spawner("a")
    assert await point(a) == ["read:users:name!user"] and getattr(a, ATTR)
    theirs = AdmissionPoint(hook.decide_late, [], theirs=lambda s: [f"custom:{s.user.name}"])
    with pytest.raises(SpawnException):
        await theirs(spawner("b"))  # full (cap 1): theirs is never asked
    svc.call(svc.app.set_limits({"max_active_servers": 5}))
    assert await theirs(spawner("c")) == ["custom:c"]


def early_hook(svc):
    """A hook whose two undos are told apart: ``(hook, undone early, undone late)``."""
    early, late = [], []
    h = UserLimitHook(svc.url + "/", HOOK, timeout=5, undo=late.append, undo_early=early.append)
    return h, early, late


async def test_early_point_decides_what_the_options_cannot_change(svc):
    # start_queued_servers=False: a place in line needs no options, so all is decided early
    h, early, late = early_hook(svc)
    try:
        a = spawner("a")
        await h.decide_early(a)
        assert getattr(a, ATTR) and decided_at(a) == "server_token_scopes"
        await h.decide_late(a)  # the admission point does not ask again
        await h.pre_spawn_hook(a)
        assert svc.app.ledger.usage().total == 1 and len(svc.app.ledger.admissions) == 1
        b = spawner("b")
        with pytest.raises(SpawnException) as info:
            await h.decide_early(b)
        assert info.value.status_code == 429 and list(svc.app.ledger.queue) == ["b"]
        assert early == [b] and late == [], "only the server row exists before the token"
        two = spawner("a", server="two")
        with pytest.raises(SpawnException) as info:
            await h.decide_early(two)
        assert info.value.status_code == 403 and early == [b, two]
        # the next spawn of the same spawner is a new server row: decided anew
        b.orm_spawner.server = object()
        assert decided_at(b) is None
    finally:
        await h._client.aclose()


async def test_early_point_leaves_a_queued_spawn_with_options_to_the_admission_point(tmp_path):
    s = Service(tmp_path, max_active_servers=1, start_queued_servers=True)
    s.start()
    h, early, late = early_hook(s)
    try:
        await h.decide_early(spawner("a"))
        b = spawner("b", options={"profile": "gpu"})
        await h.decide_early(b)  # would queue: undecided, nothing booked, no refusal yet
        assert decided_at(b) is None and early == [] and list(s.app.ledger.queue) == []
        with pytest.raises(SpawnException) as info:
            await h.decide_late(b)
        assert info.value.status_code == 429 and late == [b]
        assert decided_at(b) == "oauth_client_allowed_scopes"
        assert s.app.ledger.queue["b"].options == {"profile": "gpu"}
    finally:
        await h._client.aclose()
        s.stop()


async def test_early_point_is_the_admins_token_scopes(svc, hook):
    point = EarlyPoint(hook.decide_early, ["users:activity!user"])
    assert copy.deepcopy(point) is point
    assert await point(spawner("a")) == ["users:activity!user"]
    theirs = EarlyPoint(hook.decide_early, theirs=lambda s: [f"read:users!user={s.user.name}"])
    with pytest.raises(SpawnException):
        await theirs(spawner("b"))  # full (cap 1): theirs is never asked
    svc.call(svc.app.set_limits({"max_active_servers": 5}))
    assert await theirs(spawner("c")) == ["read:users!user=c"]
    assert await EarlyPoint(hook.decide_early)(spawner("d")) == []  # the hub's server role


async def test_release_after_hub_restart_finds_the_place(svc, hook):
    a = spawner("a")
    await hook.decide_late(a)
    fresh = spawner("a")  # a new Spawner object: the hub restarted since the spawn
    await hook.post_stop_hook(fresh)
    assert status(svc) == (0, [])


async def test_seats_at_login(svc, hook):
    svc.call(svc.app.set_limits({"max_users": 1}))
    handler = SimpleNamespace(find_user=lambda name: object() if name == "old" else None)
    model = {"name": "first", "admin": False}
    assert await hook.post_auth_hook(None, handler, model) is model
    with pytest.raises(web.HTTPError) as info:
        await hook.post_auth_hook(None, handler, {"name": "second", "admin": False})
    assert info.value.status_code == 403 and "seats are taken" in info.value.jupyterhub_message
    assert await hook.post_auth_hook(None, handler, {"name": "old", "admin": False})
    assert await hook.post_auth_hook(None, handler, {"name": "boss", "admin": True})
    assert set(svc.app.ledger.seats) == {"first", "old", "boss"}


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_unreachable_service(fail_open, caplog):
    undone = []
    h = UserLimitHook(
        f"http://127.0.0.1:{free_port()}/services/x/",
        HOOK,
        fail_open=fail_open,
        retries=1,
        undo=undone.append,
    )
    s = spawner("a")
    caplog.set_level(logging.ERROR)
    if fail_open:
        await h.decide_late(s)
        assert getattr(s, ATTR) is None and undone == []
        assert await h.post_auth_hook(None, SimpleNamespace(), {"name": "a"}) == {"name": "a"}
    else:
        with pytest.raises(SpawnException) as info:
            await h.decide_late(s)
        assert info.value.status_code == 503 and "cannot be reached" in info.value.message
        assert undone == [s]
        with pytest.raises(web.HTTPError) as info:
            await h.post_auth_hook(None, SimpleNamespace(), {"name": "a"})
        assert info.value.status_code == 503
    assert "USER-LIMIT SERVICE UNREACHABLE" in caplog.text


async def test_wrong_hook_token_is_treated_as_unreachable(svc):
    h = UserLimitHook(svc.url + "/", "not-the-secret", undo=lambda s: None)
    with pytest.raises(SpawnException) as info:
        await h.decide_late(spawner("a"))
    assert info.value.status_code == 503
    assert svc.app.ledger.usage().total == 0
    await h._client.aclose()


async def test_client_keeps_connections_alive(svc):
    client = ServiceClient(svc.url + "/api/", HOOK)
    try:
        for i in range(5):
            code, doc = await client.request(
                "POST", "admissions", {"user": f"u{i}", "kind": "seat"}
            )
            assert code == 200 and doc["outcome"] == "admitted"
        assert client.connections_opened == 1
        code, doc = await client.request("GET", "admissions/nope")
        assert code == 405 or code == 404
    finally:
        await client.aclose()
    with pytest.raises(ValueError):
        ServiceClient("https://example.invalid/", HOOK)


async def test_client_gives_up_after_retries():
    client = ServiceClient(f"http://127.0.0.1:{free_port()}/api/", HOOK, retries=2, backoff=0.01)
    with pytest.raises(ServiceUnavailable):
        await client.request("GET", "status")


def test_enable_user_limit_wires_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Config()
    calls = []

    def theirs(spawner):
        calls.append(spawner)

    c.Spawner.pre_spawn_hook = theirs
    c.JupyterHub.services.append({"name": "other", "api_token": "x"})
    c.JupyterHub.base_url = "/jh/"
    hook = enable_user_limit(
        c, {"max_active_servers": 4, "group_quotas": {"s": 2}}, url="http://127.0.0.1:10101"
    )
    token_file = tmp_path / "jupyterhub-user-limit-hook-token"
    assert not token_file.exists(), "loading the config writes nothing"
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"other", "user-limit"}
    svc = services["user-limit"]
    assert svc["url"] == "http://127.0.0.1:10101" and svc["oauth_no_confirm"] is True
    env = svc["environment"]
    # the hub calls this when it starts the service (Spawner.get_env): the file appears then
    lazy = env["JUPYTERHUB_USER_LIMIT_HOOK_TOKEN"]
    assert callable(lazy) and lazy(None) == hook.token  # what Spawner.get_env does with it
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert hook.token == token_file.read_text().strip()
    # the hub stores the environment of config services in its database: not the secret
    assert json.loads(json.dumps(env))["JUPYTERHUB_USER_LIMIT_HOOK_TOKEN"] == ""
    assert copy.deepcopy(lazy)() == hook.token
    assert '"max_active_servers": 4' in env["JUPYTERHUB_USER_LIMIT_SETTINGS"]
    assert hook.service_url == "http://127.0.0.1:10101/jh/services/user-limit/"
    assert hook.queue_url("") == "/jh/services/user-limit/queue"
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "start:servers" in roles["user-limit-service"]["scopes"]
    assert "custom:user-limit:admin" in c.JupyterHub.custom_scopes
    assert "access:services!service=user-limit" in c.JupyterHub.extra_user_scopes
    # the admission point; the existing pre_spawn_hook still runs (after ours)
    point = c.Spawner.oauth_client_allowed_scopes
    assert (
        isinstance(point, AdmissionPoint) and point.decide == hook.decide_late and list(point) == []
    )
    early = c.Spawner.server_token_scopes
    assert isinstance(early, EarlyPoint) and early.decide == hook.decide_early
    assert c.Spawner.pre_spawn_hook is not theirs
    assert c.Authenticator.post_auth_hook == hook.post_auth_hook
    # traitlets deep-copies config per spawner: the hook must stay one shared object
    assert copy.deepcopy(hook.post_stop_hook).__self__ is hook
    # a second call reuses the same secret and does not duplicate entries
    again = enable_user_limit(c, url="http://127.0.0.1:10101")
    assert again.token == hook.token
    assert [s["name"] for s in c.JupyterHub.services].count("user-limit") == 1
    assert c.Spawner.oauth_client_allowed_scopes.decide.__self__ is again


async def test_admins_hooks_and_scopes_are_kept(svc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Config()
    seen = []
    c.Spawner.pre_spawn_hook = lambda s: seen.append(s.user.name)
    c.Spawner.oauth_client_allowed_scopes = ["read:users:name"]
    c.Spawner.server_token_scopes = ["users:activity!user", "read:users:name!user"]
    hook = enable_user_limit(c, url=svc.url.rsplit("/services", 1)[0], hook=HookOptions(token=HOOK))
    s = spawner("a")
    scopes = await c.Spawner.server_token_scopes(s)
    assert scopes == ["users:activity!user", "read:users:name!user"]
    assert await c.Spawner.oauth_client_allowed_scopes(s) == ["read:users:name"]
    assert getattr(s, ATTR)
    await c.Spawner.pre_spawn_hook(s)
    assert seen == ["a"] and svc.app.ledger.usage().total == 1
    await hook._client.aclose()


def test_loading_the_config_needs_no_state_dir(tmp_path):
    """Admin commands load the hub config before the hub ever ran: nothing is read or written."""
    state = tmp_path / "not-yet"
    hook = enable_user_limit(
        Config(), hook=HookOptions(token_file=str(state / "user-limit-hook-token"))
    )
    assert not state.exists()
    with pytest.raises(FileNotFoundError):
        hook.token  # noqa: B018 - in the hub, its state directory exists


def test_external_service(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Config()
    hook = enable_user_limit(c, managed=False, api_token="t" * 32, hook=HookOptions(token="h" * 32))
    (svc,) = [s for s in c.JupyterHub.services if s["name"] == "user-limit"]
    assert svc["api_token"] == "t" * 32 and hook.token == "h" * 32
    assert not {"command", "environment", "user", "cwd"} & set(svc)
    # the hub must not hold its start (and its routes) for a unit that is not up yet
    assert svc["timeout"] == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"settings": {"max_active_servers": 3}}, "max_active_servers"),
        ({"settings": {"db_url": "sqlite:///x.sqlite"}}, "db_url"),
        ({"environment": {"A": "1"}}, "environment"),
        ({"service_options": {"user": "svc", "cwd": "/srv"}}, "cwd, user"),
    ],
)
def test_external_service_refuses_settings_of_a_managed_one(kwargs, named):
    with pytest.raises(ValueError, match=f"got {named}, which configure a service the hub starts"):
        enable_user_limit(
            Config(), managed=False, api_token="t", hook=HookOptions(token="h"), **kwargs
        )


def test_external_service_without_secrets_loads_with_a_warning():
    """``os.environ.get(...)`` in a root shell without the hub's environment file."""
    c = Config()
    with pytest.warns(UserWarning, match="api_token and hook_token empty"):
        enable_user_limit(c, managed=False, api_token=None, hook=HookOptions(token=""))
    (svc,) = [s for s in c.JupyterHub.services if s["name"] == "user-limit"]
    assert "api_token" not in svc


def test_rest_answers_wait_for_the_admission(tmp_path, monkeypatch):
    # JupyterHub answers a REST spawn 202 after slow_spawn_timeout (10 s) whatever is undecided
    monkeypatch.chdir(tmp_path)
    c = Config()
    c.JupyterHub.tornado_settings = {"headers": {"X-Frame-Options": "DENY"}}
    enable_user_limit(c, hook=HookOptions(token=HOOK))
    assert c.JupyterHub.tornado_settings == {
        "headers": {"X-Frame-Options": "DENY"},
        "slow_spawn_timeout": None,
    }
    # an admin's own value is kept, with a warning saying what it costs
    c = Config()
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 30}
    with pytest.warns(UserWarning, match="answered 202"):
        enable_user_limit(c, hook=HookOptions(token=HOOK))
    assert c.JupyterHub.tornado_settings == {"slow_spawn_timeout": 30}


@pytest.mark.parametrize("setting", [{"slow_spawn_timeout": None}, {}], ids=["none", "default-10"])
async def test_hook_warns_once_when_the_hub_answers_before_admission(svc, hook, caplog, setting):
    caplog.set_level(logging.WARNING)
    for name in ("a", "b"):
        s = spawner(name)
        s.handler = SimpleNamespace(settings=setting)
        try:
            await hook.decide_late(s)
        except SpawnException:
            pass  # b is queued (cap 1)
    warned = [r for r in caplog.records if "before the user-limit service" in r.getMessage()]
    assert len(warned) == (0 if setting else 1)


async def test_a_rollback_while_the_early_point_waits_leaves_no_orphan_server_row(svc, monkeypatch):
    """JupyterHub links the spawn's committed server row to the spawner without a commit just
    before the early point; another request finishing meanwhile rolls that link back
    (``BaseHandler.finish``). The hook links it again, so that the spawn goes on with its row
    and a refusal deletes it (seen on a real hub under load: an orphan row per refusal)."""
    from jupyterhub import orm
    from jupyterhub.objects import Server
    from jupyterhub.spawner import LocalProcessSpawner

    db = orm.new_session_factory("sqlite://")()
    spawners = []
    for name in ("a", "b"):  # cap 1: a is admitted, b is queued
        user = orm.User(name=name)
        orm_spawner = orm.Spawner(user=user, name="")
        row = orm.Server(base_url=f"/user/{name}/")
        db.add_all([user, orm_spawner, row])
        db.commit()
        hub_user = SimpleNamespace(name=name, admin=False, groups=[])
        spawners.append(LocalProcessSpawner(user=hub_user, orm_spawner=orm_spawner, db=db))
    rows = dict(zip(spawners, db.query(orm.Server).order_by(orm.Server.id), strict=True))

    def link(spawner):  # what User.spawn() does just before the early point, without a commit
        spawner.server = Server(orm_server=rows[spawner])
        return spawner

    h = UserLimitHook(svc.url + "/", HOOK, timeout=5)
    ask = h._ask

    async def ask_while_another_request_rolls_back(spawner, **kw):
        doc = await ask(spawner, **kw)
        db.rollback()  # another request's handler finished with uncommitted changes
        return doc

    monkeypatch.setattr(h, "_ask", ask_while_another_request_rolls_back)
    a, b = spawners
    try:
        await h.decide_early(link(a))
        assert getattr(a, ATTR) and a.orm_spawner.server is rows[a]
        db.commit()  # the hub goes on to new_api_token, which commits
        with pytest.raises(SpawnException):
            await h.decide_early(link(b))
    finally:
        await h._client.aclose()
    db.commit()
    assert [r.base_url for r in db.query(orm.Server)] == ["/user/a/"]
    assert a.server.orm_server is a.orm_spawner.server
