"""HubAPI against a fake Hub API (tornado on 127.0.0.1, free port, inside the test)."""

import asyncio
import json
import logging
from datetime import datetime, timezone

import pytest
from fakehub import FakeHub
from ports import free_port
from tornado import web
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError, endpoint_label

NOW = datetime.now(timezone.utc)
SECRET = "s3cr3t-token-value"


@pytest.fixture
async def hub():
    h = FakeHub(SECRET)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


def make_api(hub, **kw):
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("backoff_max", 0.01)
    return HubAPI(hub.api_url, SECRET, **kw)


def populate(hub, n, ready_every=1):
    for i in range(n):
        hub.add_user(f"u{i:04d}")
        if i % ready_every == 0:
            hub.add_server(f"u{i:04d}", started=NOW, last_activity=NOW)


class Flaky(web.RequestHandler):
    """Answers the queued statuses in order, then 200 ``{"ok": true}``."""

    def initialize(self, state):
        self.state = state

    async def _any(self):
        self.state["calls"].append((self.request.method, self.request.path, self.request.body))
        if self.state.get("sleep"):
            await asyncio.sleep(self.state["sleep"])
        status = self.state["statuses"].pop(0) if self.state["statuses"] else 200
        self.set_status(status)
        if status == 429:
            self.set_header("Retry-After", "0")
        if status != 204:
            self.finish(json.dumps({"ok": status < 400, "message": f"status {status}"}))

    get = post = delete = put = _any


@pytest.fixture
async def flaky():
    state = {"statuses": [], "calls": []}
    port = free_port()
    server = HTTPServer(web.Application([(r"/hub/api/.*", Flaky, {"state": state})]))
    server.listen(port, "127.0.0.1")
    state["url"] = f"http://127.0.0.1:{port}/hub/api"
    try:
        yield state
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.parametrize(
    "path, label",
    [
        ("/users", "/users"),
        ("/users/alice", "/users/{}"),
        ("/users/alice/server", "/users/{}/server"),
        ("/users/alice/servers/gpu", "/users/{}/servers/{}"),
        ("/users?state=ready&offset=50", "/users"),
        ("/user", "/user"),
        ("/groups/teachers", "/groups/{}"),
        ("http://127.0.0.1:8000/user/alice/gpu/api/kernels", "server:/api/kernels"),
    ],
)
def test_endpoint_label(path, label):
    assert endpoint_label(path) == label


def test_url_and_token_from_env(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "abc")
    api = HubAPI()
    assert (api.url, api.token) == ("http://127.0.0.1:1/hub/api", "abc")


def test_missing_url(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    with pytest.raises(ValueError, match="JUPYTERHUB_API_URL"):
        HubAPI()


@pytest.mark.parametrize(
    "page_size, n, pages", [(10, 95, 10), (50, 50, 1), (0, 120, 3), (200, 450, 3)]
)
async def test_iter_users_follows_pagination(hub, page_size, n, pages):
    populate(hub, n)
    api = make_api(hub, page_size=page_size)
    names = [u["name"] async for u in api.iter_users(state="ready")]
    await api.aclose()
    assert names == [f"u{i:04d}" for i in range(n)]
    assert hub.count("GET", "/users") == pages
    assert api.calls[("GET", "/users")] == pages


async def test_iter_users_state_filter(hub):
    populate(hub, 30, ready_every=3)
    api = make_api(hub, page_size=7)
    ready = [u["name"] async for u in api.iter_users(state="ready")]
    inactive = [u["name"] async for u in api.iter_users(state="inactive")]
    await api.aclose()
    assert len(ready) == 10 and len(inactive) == 20
    assert not set(ready) & set(inactive)


async def test_iter_users_prefetches_next_page(hub):
    populate(hub, 30)
    api = make_api(hub, page_size=10)
    gen = api.iter_users()
    first = await gen.__anext__()
    assert first["name"] == "u0000"
    # while we hold the first page, the second is already being fetched
    for _ in range(200):
        if hub.count("GET", "/users") >= 2:
            break
        await asyncio.sleep(0.01)
    assert hub.count("GET", "/users") == 2
    await gen.aclose()
    await api.aclose()


async def test_removal_safe_pagination_visits_everyone_once(hub):
    """Stopping servers while listing state=ready must not make users shift past us."""
    populate(hub, 57)
    api = make_api(hub, page_size=10)
    seen = []
    async for user in api.iter_users(state="ready", removal_safe=True):
        seen.append(user["name"])
        assert await api.stop_server(user["name"]) == 204
    await api.aclose()
    assert sorted(seen) == [f"u{i:04d}" for i in range(57)]
    assert len(seen) == len(set(seen))
    assert hub.count("GET", "/users") == 6


async def test_naive_pagination_misses_users_when_removing(hub):
    """Why removal_safe exists: the plain walk skips users that shift into read pages."""
    populate(hub, 57)
    api = make_api(hub, page_size=10)
    seen = []
    async for user in api.iter_users(state="ready"):
        seen.append(user["name"])
        await api.stop_server(user["name"])
    await api.aclose()
    assert len(seen) < 57


async def test_bare_list_without_pagination(flaky):
    flaky["statuses"] = []
    api = HubAPI(flaky["url"], "t")
    items = [x async for x in api.paginate("/things")]
    await api.aclose()
    # the flaky app answers a dict without items: treated as an empty listing
    assert items == []


async def test_bounded_real_concurrency(hub):
    populate(hub, 30)
    hub.stop_latency = 0.05
    api = make_api(hub, concurrency=5)
    statuses = await asyncio.gather(*(api.stop_server(f"u{i:04d}") for i in range(30)))
    await api.aclose()
    assert statuses == [204] * 30
    assert hub.peak_deletes_in_flight == 5
    assert api.peak_in_flight == 5


async def test_stop_server_statuses(hub):
    populate(hub, 3)
    hub.add_server("u0001", "gpu", started=NOW, last_activity=NOW)
    hub.slow_stop.add("u0002")
    api = make_api(hub)
    assert await api.stop_server("u0000") == 204
    assert await api.stop_server("u0001", "gpu", remove=True) == 204
    assert await api.stop_server("u0002") == 202
    assert await api.stop_server("u0002") == 202
    with pytest.raises(HubAPIError) as e:
        await api.stop_server("nobody")
    assert e.value.status == 404
    assert await api.get_user("nobody") is None
    assert (await api.get_user("u0001"))["name"] == "u0001"
    assert await api.delete_user("u0000") == 204
    await api.aclose()
    assert hub.count("DELETE", "/users/{}/servers/{}") == 1
    assert ("DELETE", "/hub/api/users/u0001/servers/gpu") in hub.log


async def test_groups(hub):
    hub.add_user("a", groups=["teachers", "staff"])
    hub.add_user("b", groups=["teachers"])
    api = make_api(hub, page_size=1)
    groups = {g["name"]: g["users"] async for g in api.iter_groups()}
    assert groups == {"staff": ["a"], "teachers": ["a", "b"]}
    assert (await api.get_group("teachers"))["users"] == ["a", "b"]
    assert await api.get_group("nope") is None
    await api.aclose()


@pytest.mark.parametrize("statuses", [[503, 503], [500], [502, 429], [429]])
async def test_retries_transient_errors(flaky, statuses):
    flaky["statuses"] = list(statuses)
    api = HubAPI(flaky["url"], "t", backoff_base=0.001, backoff_max=0.01)
    status, body = await api.request("GET", "/users")
    await api.aclose()
    assert (status, body["ok"]) == (200, True)
    assert len(flaky["calls"]) == len(statuses) + 1


async def test_retries_are_bounded(flaky):
    flaky["statuses"] = [503] * 10
    api = HubAPI(flaky["url"], "t", retries=2, backoff_base=0.001, backoff_max=0.01)
    with pytest.raises(HubAPIError) as e:
        await api.request("GET", "/users")
    await api.aclose()
    assert e.value.status == 503
    assert len(flaky["calls"]) == 3


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_client_errors_not_retried(flaky, status):
    flaky["statuses"] = [status]
    api = HubAPI(flaky["url"], "t", backoff_base=0.001)
    with pytest.raises(HubAPIError) as e:
        await api.request("GET", "/users/x")
    await api.aclose()
    assert e.value.status == status
    assert e.value.message == f"status {status}"
    assert len(flaky["calls"]) == 1


async def test_post_not_retried_on_5xx(flaky):
    flaky["statuses"] = [503]
    api = HubAPI(flaky["url"], "t", backoff_base=0.001)
    with pytest.raises(HubAPIError):
        await api.request("POST", "/users/x/activity", json={"a": 1})
    await api.aclose()
    assert len(flaky["calls"]) == 1
    assert json.loads(flaky["calls"][0][2]) == {"a": 1}


async def test_connection_refused_retried_then_599():
    port = free_port()  # nothing listens here
    api = HubAPI(f"http://127.0.0.1:{port}/hub/api", "t", retries=2, backoff_base=0.001)
    with pytest.raises(HubAPIError) as e:
        await api.request("GET", "/users")
    await api.aclose()
    assert e.value.status == 599
    assert api.calls[("GET", "/users")] == 3


async def test_timeout(flaky):
    flaky["sleep"] = 1.0
    api = HubAPI(flaky["url"], "t", request_timeout=0.1, retries=0)
    with pytest.raises(HubAPIError) as e:
        await api.request("GET", "/users")
    await api.aclose()
    assert e.value.status == 599


async def test_token_owner_cached_including_negatives(hub):
    hub.tokens["good"] = {"kind": "user", "name": "alice", "scopes": ["access:services"]}
    api = make_api(hub)
    assert (await api.token_owner("good"))["name"] == "alice"
    assert (await api.token_owner("good"))["name"] == "alice"
    assert await api.token_owner("bad") is None
    assert await api.token_owner("bad") is None
    assert await api.token_owner("") is None
    assert hub.count("GET", "/user") == 2
    api.forget_tokens()
    await api.token_owner("good")
    assert hub.count("GET", "/user") == 3
    await api.aclose()


async def test_token_owner_expires(hub):
    hub.tokens["good"] = {"kind": "user", "name": "alice", "scopes": []}
    api = make_api(hub, token_cache_ttl=0, negative_cache_ttl=0)
    await api.token_owner("good")
    await api.token_owner("good")
    await api.aclose()
    assert hub.count("GET", "/user") == 2


async def test_token_owner_coalesces_concurrent_lookups(hub):
    hub.tokens["good"] = {"kind": "user", "name": "alice", "scopes": []}
    api = make_api(hub)
    models = await asyncio.gather(*(api.token_owner("good") for _ in range(20)))
    await api.aclose()
    assert {m["name"] for m in models} == {"alice"}
    assert hub.count("GET", "/user") == 1


async def test_token_owner_hub_error_raises_and_is_not_cached(flaky):
    flaky["statuses"] = [500, 500]
    api = HubAPI(flaky["url"], "t", retries=1, backoff_base=0.001)
    with pytest.raises(HubAPIError):
        await api.token_owner("x")
    # the hub is back: the next lookup asks again
    assert await api.token_owner("x") == {"ok": True, "message": "status 200"}
    await api.aclose()


async def test_never_logs_tokens_or_query_strings(flaky, caplog):
    caplog.set_level(logging.DEBUG)
    flaky["statuses"] = [503] * 6
    api = HubAPI(flaky["url"], SECRET, retries=2, backoff_base=0.001, backoff_max=0.01)
    with pytest.raises(HubAPIError) as e:
        await api.request("GET", "/users", params={"name_filter": "needle-in-query"})
    with pytest.raises(HubAPIError):
        await api.token_owner("another-" + SECRET)
    await api.aclose()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("jupyterhub_lab_ext")]
    text = "\n".join(ours) + str(e.value)
    assert "retry" in text  # we did log the retries
    assert SECRET not in text
    assert "needle-in-query" not in text


async def test_on_call_hook_and_counters(hub):
    populate(hub, 2)
    seen = []
    api = make_api(hub, on_call=lambda m, ep, st, sec: seen.append((m, ep, st)))
    await api.get_user("u0000")
    await api.get_user("missing")
    await api.stop_server("u0001")
    await api.aclose()
    assert seen == [
        ("GET", "/users/{}", 200),
        ("GET", "/users/{}", 404),
        ("DELETE", "/users/{}/server", 204),
    ]
    assert api.calls == {("GET", "/users/{}"): 2, ("DELETE", "/users/{}/server"): 1}


async def test_closed_client_refuses(hub):
    api = make_api(hub)
    await api.aclose()
    with pytest.raises(RuntimeError):
        await api.request("GET", "/")


async def test_version_probe_needs_no_auth(hub):
    api = HubAPI(hub.api_url, "wrong-token")
    assert await api.get_version() == "6.1.1"
    await api.aclose()


def test_constructed_outside_a_running_loop():
    """Hooks may build the client at import/config time; it binds to the loop on first use."""
    api = HubAPI("http://127.0.0.1:1/hub/api", "t", retries=0, connect_timeout=1)

    async def use():
        with pytest.raises(HubAPIError) as e:
            await api.request("GET", "/")
        await api.aclose()
        return e.value.status

    assert asyncio.run(use()) == 599
