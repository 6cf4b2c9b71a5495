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
from jupyterhub_lab_ext.services.user_limit.hook import ATTR, AdmissionPoint, UserLimitHook
from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions, enable_user_limit


def spawner(user, server="", groups=(), admin=False, options=None):
    u = SimpleNamespace(name=user, admin=admin, groups=[SimpleNamespace(name=g) for g in groups])
    return SimpleNamespace(user=u, name=server, user_options=options or {})


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
        svc.url + "/", HOOK, public_prefix="/services/user-limit/", timeout=5, undo=undone.append
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
    await hook.admit(a)
    assert getattr(a, ATTR) and undone == []
    b = spawner("b", server="gpu", groups=["staff"])
    with pytest.raises(SpawnException) as info:
        await hook.admit(b)
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
    await hook.admit(spawner("a"))
    two = spawner("a", server="two")
    with pytest.raises(SpawnException) as info:
        await hook.admit(two)
    assert info.value.status_code == 403 and "maximum of 1 server" in info.value.message
    assert undone == [two]


async def test_pre_spawn_hook_decides_only_when_the_admission_point_did_not_run(
    svc, hook, undone, caplog
):
    a = spawner("a")
    await hook.admit(a)
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
    point = AdmissionPoint(hook, ["read:users:name!user"])
    # JupyterHub writes the trait into the server's environment as JSON, and calls it only
    # when it is true; traitlets deep-copies config per spawner
    assert json.dumps(point) == '["read:users:name!user"]'
    assert bool(AdmissionPoint(hook)) and copy.deepcopy(point) is point
    a = spawner("a")
    assert await point(a) == ["read:users:name!user"] and getattr(a, ATTR)
    theirs = AdmissionPoint(hook, [], theirs=lambda s: [f"custom:{s.user.name}"])
    with pytest.raises(SpawnException):
        await theirs(spawner("b"))  # full (cap 1): theirs is never asked
    svc.call(svc.app.set_limits({"max_active_servers": 5}))
    assert await theirs(spawner("c")) == ["custom:c"]


async def test_release_after_hub_restart_finds_the_place(svc, hook):
    a = spawner("a")
    await hook.admit(a)
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
        await h.admit(s)
        assert getattr(s, ATTR) is None and undone == []
        assert await h.post_auth_hook(None, SimpleNamespace(), {"name": "a"}) == {"name": "a"}
    else:
        with pytest.raises(SpawnException) as info:
            await h.admit(s)
        assert info.value.status_code == 503 and "cannot be reached" in info.value.message
        assert undone == [s]
        with pytest.raises(web.HTTPError) as info:
            await h.post_auth_hook(None, SimpleNamespace(), {"name": "a"})
        assert info.value.status_code == 503
    assert "USER-LIMIT SERVICE UNREACHABLE" in caplog.text


async def test_wrong_hook_token_is_treated_as_unreachable(svc):
    h = UserLimitHook(svc.url + "/", "not-the-secret", undo=lambda s: None)
    with pytest.raises(SpawnException) as info:
        await h.admit(spawner("a"))
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
    assert isinstance(point, AdmissionPoint) and point.hook is hook and list(point) == []
    assert c.Spawner.pre_spawn_hook is not theirs
    assert c.Authenticator.post_auth_hook == hook.post_auth_hook
    # traitlets deep-copies config per spawner: the hook must stay one shared object
    assert copy.deepcopy(hook.post_stop_hook).__self__ is hook
    # a second call reuses the same secret and does not duplicate entries
    again = enable_user_limit(c, url="http://127.0.0.1:10101")
    assert again.token == hook.token
    assert [s["name"] for s in c.JupyterHub.services].count("user-limit") == 1
    assert c.Spawner.oauth_client_allowed_scopes.hook is again


async def test_admins_hooks_and_scopes_are_kept(svc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Config()
    seen = []
    c.Spawner.pre_spawn_hook = lambda s: seen.append(s.user.name)
    c.Spawner.oauth_client_allowed_scopes = ["read:users:name"]
    hook = enable_user_limit(c, url=svc.url.rsplit("/services", 1)[0], hook=HookOptions(token=HOOK))
    s = spawner("a")
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
            await hook.admit(s)
        except SpawnException:
            pass  # b is queued (cap 1)
    warned = [r for r in caplog.records if "before the user-limit service" in r.getMessage()]
    assert len(warned) == (0 if setting else 1)
