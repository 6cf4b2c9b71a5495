"""The JupyterLab status extension's logic: the status text (pure), the cached views, the
spawner's wiring and who may read a service's self view."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from jupyterhub_lab_ext.labserver import status as S
from jupyterhub_lab_ext.labserver.client import CachedView, activity_body, interpret, user_path
from jupyterhub_lab_ext.services.common.self_access import may_read_self
from jupyterhub_lab_ext.spawner import lab_status as W
from jupyterhub_lab_ext.util import lab_status as names

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)  # a Wednesday


def culler_view(left: float, idle: float, *, timeout=600, warning=120, exemption=None) -> dict:
    return {
        "name": "ann",
        "now": NOW.isoformat(),
        "timeout_seconds": timeout,
        "warning_seconds": warning,
        "exemption": exemption,
        "servers": {
            "": {"idle_seconds": idle, "cull_at": (NOW + timedelta(seconds=left)).isoformat()}
        },
    }


@pytest.mark.parametrize(
    "seconds, text",
    [(-5, "0 s"), (45, "45 s"), (89, "1 min"), (480, "8 min"), (3600, "1 h"), (7500, "2 h 5 min"),
     (3 * 86400, "3 days")],
)  # fmt: skip
def test_duration_reads_like_a_person_would_say_it(seconds, text):
    assert S.duration(seconds) == text


@pytest.mark.parametrize(
    "left, idle, state, item, warn",
    [
        (550, 50, "active", "shared/data", False),  # working: calm, env only
        (290, 310, "idle", "shared/data · idle - stops in 5 min", False),  # idle half the timeout
        (100, 500, "idle", "shared/data · idle - stops in 2 min", True),  # within the warning
    ],
)
def test_item_is_calm_while_active_and_counts_down_when_idle(left, idle, state, item, warn):
    doc = S.compose(
        "shared/data",
        S.Fetched(culler_view(left, idle)),
        S.Fetched(problem="not configured"),
        now=NOW,
    )
    assert doc["culler"]["state"] == state
    assert doc["item"] == item
    assert doc["warn"] is warn


def test_cached_answer_counts_down_from_the_culler_time():
    doc = S.compose(
        "e", S.Fetched(culler_view(130, 470)), S.Fetched(), now=NOW + timedelta(seconds=20)
    )
    assert doc["culler"]["seconds_left"] == 110
    assert doc["culler"]["idle_seconds"] == 490


def test_no_warning_period_means_a_share_of_the_timeout():
    view = culler_view(140, 460, warning=0)
    assert S.warning_seconds(view) == 150
    assert S.compose("e", S.Fetched(view), S.Fetched(), now=NOW)["warn"] is True
    assert S.warning_seconds({"timeout_seconds": 7200, "warning_seconds": 0}) == 300


def test_exemption_message_names_the_day_and_the_reason():
    until = datetime(2026, 12, 4, 18, 0).astimezone()  # Friday 18:00 local time
    view = culler_view(10, 590, exemption={"until": until.isoformat(), "reason": "exam week"})
    doc = S.compose("e", S.Fetched(view), S.Fetched(), now=NOW)
    assert doc["culler"]["text"] == "kept running until Fri 18:00: exam week"
    assert doc["warn"] is False and doc["culler"]["state"] == "exempt"
    assert "Idle culler: kept running until Fri 18:00: exam week" in doc["details"]
    open_ended = S.exemption_text({"until": None, "reason": ""}, NOW)
    assert open_ended == "kept running"


def test_missing_services_degrade_quietly():
    doc = S.compose("e", S.Fetched(problem="not running"), S.Fetched(problem="refused"), now=NOW)
    assert doc["item"] == "e"
    assert doc["warn"] is False
    assert "Idle culler: culler not running" in doc["details"]
    off = S.compose(
        None, S.Fetched(problem="not configured"), S.Fetched(problem="not configured"), now=NOW
    )
    assert off["item"] == "" and off["culler"]["state"] == "off"


def test_queue_and_limit_facts():
    view = {
        "usage": [{"name": "max_active_servers", "limit": 40, "used": 40}],
        "from_queue": {"waited_seconds": 185, "enqueued": 1.0, "started": 186.0},
    }
    u = S.limits_status(S.Fetched(view))
    assert u["text"] == "hub full: 40/40 servers; you started from the queue after 3 min"
    view = {
        "usage": [{"name": "group_quotas[students]", "limit": 30, "used": 12}],
        "from_queue": None,
    }
    assert S.limits_status(S.Fetched(view))["text"] == "hub: group students: 12/30 servers"
    assert (
        S.limits_status(S.Fetched({"exempt": True, "usage": []}))["text"]
        == "no limit applies to you"
    )
    # answers of the wrong shape never break the status
    assert S.limits_status(S.Fetched({"usage": ["x"], "from_queue": "y"}))["text"] == ""


def test_interpret_and_urls():
    assert interpret(599, None).problem == "not running"
    assert interpret(403, b"{}").problem == "refused"
    assert interpret(200, b"[1]").problem == "refused"
    assert interpret(200, b'{"a": 1}').view == {"a": 1}
    assert user_path("http://h:1/services/c/", "a b", "") == "http://h:1/services/c/api/users/a%20b"
    assert user_path("http://h:1/s/", "u", "n/x").endswith("/api/users/u?server=n%2Fx")
    body = activity_body("", NOW)
    assert body == {
        "last_activity": "2026-12-02T12:00:00Z",
        "servers": {"": {"last_activity": "2026-12-02T12:00:00Z"}},
    }


def test_view_is_asked_once_per_ttl_however_many_callers():
    calls = []
    now = [0.0]

    async def fetch(request):
        calls.append(request.url)
        await asyncio.sleep(0.01)
        return SimpleNamespace(code=200, body=b'{"n": %d}' % len(calls))

    async def main():
        view = CachedView("http://x/api/users/u", "tok", ttl=30, fetch=fetch, clock=lambda: now[0])
        answers = await asyncio.gather(*(view.get() for _ in range(10)))
        assert {a.view["n"] for a in answers} == {1}
        now[0] = 29.0
        assert (await view.get()).view == {"n": 1}
        now[0] = 31.0
        assert (await view.get()).view == {"n": 2}
        view.forget()
        assert (await view.get()).view == {"n": 3}
        return view.sent

    assert asyncio.run(main()) == 3 and len(calls) == 3


def test_unconfigured_view_sends_nothing():
    async def fetch(request):  # pragma: no cover - must not be called
        raise AssertionError

    assert asyncio.run(CachedView("", "t", ttl=30, fetch=fetch).get()).problem == "not configured"


def test_spawner_wiring_finds_the_services_in_the_hub_config():
    c = Config()
    c.JupyterHub.services = [
        {"name": "e2e", "api_token": "x"},
        {"name": "idle-culler", "url": "http://127.0.0.1:10101/"},
    ]
    services = W.configured_services(c)
    env = W.server_env(
        "shared/data", services, {"culler": "idle-culler", "user-limit": "user-limit"}, "/jh/", 30
    )
    assert env == {
        names.ENV_REFRESH: "30",
        names.ENV_NAME: "shared/data",
        names.ENV_CULLER_URL: "http://127.0.0.1:10101/jh/services/idle-culler/",
    }
    assert (
        W.service_url(services, "idle-culler", "/")
        == "http://127.0.0.1:10101/services/idle-culler/"
    )
    assert W.server_args() == ["--ServerApp.jpserver_extensions=jupyterhub_lab_ext.labserver=True"]
    assert W.configured_services(Config()) == []


@pytest.mark.parametrize(
    "credential, name, ok",
    [
        ({"kind": "user", "name": "ann", "scopes": ["users:activity!user=ann"]}, "ann", True),
        ({"kind": "user", "name": "ann", "scopes": ["users:activity"]}, "ann", True),
        ({"kind": "user", "name": "ann", "scopes": ["users:activity!user=ann"]}, "bob", False),
        ({"kind": "user", "name": "ann", "scopes": ["access:servers!server=ann/"]}, "ann", False),
        ({"kind": "user", "name": "ann", "scopes": ["read:users:activity!user=ann"]}, "ann", False),
        ({"kind": "service", "name": "ann", "scopes": ["users:activity"]}, "ann", False),
        (None, "ann", False),
    ],
    ids=[
        "server-token",
        "unfiltered",
        "other-user",
        "browser-oauth",
        "read-only",
        "service",
        "none",
    ],
)
def test_self_view_only_for_the_users_own_server_token(credential, name, ok):
    assert may_read_self(credential, name) is ok


def test_polling_costs_each_service_less_than_one_request_per_user_per_30s():
    """A tab polling every refresh period (30 s) for 10 minutes: the server asks each service
    once per three periods, so the services (and the hub behind their token checks) see well
    under one request per 30 s; "Keep my server" asks the culler afresh at once."""
    from jupyterhub_lab_ext.labserver.handlers import LabStatus

    sent: list[str] = []

    async def fetch(request):
        sent.append(request.url)
        return SimpleNamespace(code=200, body=b"{}")

    environ = {
        "JUPYTERHUB_USER": "ann",
        "JUPYTERHUB_API_TOKEN": "tok",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
        names.ENV_REFRESH: "30",
        names.ENV_CULLER_URL: "http://127.0.0.1:2/services/idle-culler/",
        names.ENV_USER_LIMIT_URL: "http://127.0.0.1:3/services/user-limit/",
    }
    now = [0.0]

    async def main():
        lab = LabStatus(environ, fetch=fetch)
        for view in (lab.culler, lab.limits):
            view._clock = lambda: now[0]
        for tick in range(20):  # 20 polls, 30 s apart
            now[0] = tick * 30.0
            await lab.status()

    asyncio.run(main())
    per_service = {url: sent.count(url) for url in set(sent)}
    assert len(per_service) == 2
    assert all(n <= 7 for n in per_service.values()), per_service  # 20 polls -> 7 asks each
