"""The culling pass against a fake Hub API, with an injected clock and a real SQLite store."""

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from fakehub import FakeHub, free_port
from prometheus_client import generate_latest
from tornado import web
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.hubapi import HubAPI
from jupyterhub_lab_ext.services.common.metrics import make_registry
from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.engine import Culler, WebhookSender
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.store import CullerStore, metadata

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
H = 3600


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def hub():
    h = FakeHub("tok")
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/culler.sqlite", metadata)
    await s.start()
    try:
        yield CullerStore(s)
    finally:
        await s.close()


@pytest.fixture
def clock(hub):
    c = Clock()
    hub.clock = c  # the fake hub stamps stops with the same clock
    return c


@pytest.fixture
async def make_culler(hub, store, clock):
    made = []

    async def make(policy=None, **kw):
        api = HubAPI(
            hub.api_url,
            "tok",
            concurrency=kw.pop("hub_concurrency", kw.get("concurrency", 10)),
            backoff_base=0.001,
            retries=kw.pop("retries", 1),
        )
        registry = make_registry()
        c = Culler(
            api,
            policy or P.Policy(timeout=600),
            store=kw.pop("store", store),
            metrics=CullerMetrics(registry),
            clock=clock,
            **kw,
        )
        c.registry = registry
        await c.load()
        made.append(api)
        return c

    yield make
    for api in made:
        await api.aclose()


def add(hub, name, idle=0, *, server="", groups=(), admin=False, **kw):
    last = NOW - timedelta(seconds=idle)
    if name not in hub.users:
        hub.add_user(
            name, groups=groups, admin=admin, created=NOW - timedelta(days=9), last_activity=last
        )
    kw.setdefault("started", last)
    return hub.add_server(name, server, last_activity=last, **kw)


def running(hub):
    return {(u.name, s) for u in hub.users.values() for s in u.servers}


async def test_culls_idle_keeps_active(hub, make_culler):
    add(hub, "idle", 700)
    add(hub, "active", 10)
    add(hub, "named", 10)
    add(hub, "named", 900, server="gpu")
    c = await make_culler()
    report = await c.run_pass()
    assert running(hub) == {("active", ""), ("named", "")}
    assert sorted((e["user"], e["server"]) for e in report.lists["culled"]) == [
        ("idle", ""),
        ("named", "gpu"),
    ]
    assert report.counts["errors"] == 0 and report.complete
    assert report.users_scanned == 3
    assert hub.count("DELETE", "/users/{}/server") == 1
    assert hub.count("DELETE", "/users/{}/servers/{}") == 1


async def test_stops_run_in_parallel_and_bounded(hub, make_culler):
    hub.stop_latency = 0.05
    for i in range(40):
        add(hub, f"u{i:02d}", 700)
    c = await make_culler(concurrency=8, page_size=10)
    report = await c.run_pass()
    assert report.counts["culled"] == 40
    assert hub.peak_deletes_in_flight == 8
    assert running(hub) == set()
    # removal-safe listing: one GET per page, nobody skipped
    assert hub.count("GET", "/users") == 4


async def test_no_second_delete_for_stopping_server(hub, make_culler, clock):
    add(hub, "slow", 700)
    hub.slow_stop.add("slow")
    c = await make_culler(P.Policy(timeout=600, pending_timeout=300))
    report = await c.run_pass()
    assert [e["status"] for e in report.lists["stopping"]] == [202]
    assert hub.count("DELETE", "/users/{}/server") == 1
    clock.advance(60)
    report = await c.run_pass()
    assert hub.count("DELETE", "/users/{}/server") == 1
    assert report.counts["stuck"] == 0
    clock.advance(300)
    report = await c.run_pass()
    assert hub.count("DELETE", "/users/{}/server") == 1
    assert [e["reason"] for e in report.lists["stuck"]] == [P.STUCK_STOP]
    assert "jhle_culler_stuck_servers 1.0" in generate_latest(c.registry).decode()


async def test_one_users_error_does_not_abort_pass(hub, make_culler):
    for name in ("a", "b", "c", "d"):
        add(hub, name, 700)
    hub.fail_stop["b"] = 500
    hub.fail_stop["c"] = 403
    c = await make_culler()
    report = await c.run_pass()
    assert running(hub) == {("b", ""), ("c", "")}
    assert sorted(e["user"] for e in report.lists["errors"]) == ["b", "c"]
    assert {e["stage"] for e in report.lists["errors"]} == {"stop"}
    # 500 is retried (bounded), 403 is not
    assert hub.requests[("DELETE", "/users/{}/server")] == 2 + 2 + 1
    metrics = generate_latest(c.registry).decode()
    assert 'jhle_culler_errors_total{stage="stop"} 2.0' in metrics
    assert 'jhle_culler_passes_total{dry_run="false",result="partial"} 1.0' in metrics


async def test_listing_failure_is_reported_not_raised(hub, make_culler):
    add(hub, "a", 700)
    hub.fail_listing = 2
    c = await make_culler(retries=1)
    report = await c.run_pass()
    assert not report.complete
    assert report.lists["errors"][0]["stage"] == "list"
    assert running(hub) == {("a", "")}
    # the next pass works again
    report = await c.run_pass()
    assert report.complete and running(hub) == set()


async def test_dry_run_changes_nothing(hub, make_culler, store):
    add(hub, "idle", 700)
    add(hub, "warnme", 500)
    c = await make_culler(P.Policy(timeout=600, warning_period=200, cull_users=True))
    add(hub, "warned-before", 9000)
    before = running(hub)
    report = await c.run_pass(dry_run=True)
    assert running(hub) == before
    assert hub.count("DELETE", "/users/{}/server") == 0
    assert {e["user"] for e in report.lists["warned"]} == {"idle", "warnme", "warned-before"}
    assert c.memory.warned == {}
    assert await store.load_warnings() == {}
    assert report.dry_run


async def test_dry_run_reports_culls(hub, make_culler):
    add(hub, "idle", 700)
    c = await make_culler()
    report = await c.run_pass(dry_run=True)
    assert [(e["user"], e["reason"], e["status"]) for e in report.lists["culled"]] == [
        ("idle", "idle", None)
    ]
    assert running(hub) == {("idle", "")}


async def test_group_timeouts_from_user_models(hub, make_culler):
    add(hub, "teacher", 2 * H, groups=["teachers"])
    add(hub, "student", 2 * H, groups=["students"])
    add(hub, "both", 2 * H, groups=["students", "teachers"])
    add(hub, "staff", 30 * H, groups=["staff"])
    pol = P.Policy(
        timeout=600,
        group_timeouts={"teachers": 8 * H, "students": H},
        exempt_groups=frozenset({"staff"}),
    )
    c = await make_culler(pol)
    await c.run_pass()
    assert running(hub) == {("teacher", ""), ("both", ""), ("staff", "")}


async def test_group_timeouts_from_group_listing(hub, make_culler, monkeypatch):
    """Without read:users:groups the user models have no groups: use GET /groups once."""
    add(hub, "teacher", 2 * H, groups=["teachers"])
    add(hub, "other", 2 * H)
    original = type(hub.users["teacher"]).model

    def model_without_groups(self, base="/"):
        m = original(self, base)
        m.pop("groups")
        return m

    monkeypatch.setattr(type(hub.users["teacher"]), "model", model_without_groups)
    c = await make_culler(P.Policy(timeout=600, group_timeouts={"teachers": 8 * H}))
    await c.run_pass()
    assert running(hub) == {("teacher", "")}
    assert hub.count("GET", "/groups") == 1


async def test_exemption_protects_and_expires(hub, make_culler, store, clock):
    add(hub, "alice", 2 * H)
    add(hub, "bob", 2 * H)
    await store.put_exemption("alice", NOW + timedelta(hours=1), "demo", "admin", NOW)
    await store.put_exemption("bob", None, "forever", "admin", NOW)
    c = await make_culler()
    await c.run_pass()
    assert running(hub) == {("alice", ""), ("bob", "")}
    clock.advance(H + 1)
    await c.run_pass()
    assert running(hub) == {("bob", "")}
    assert set(await store.list_exemptions()) == {"bob"}  # expired one purged


async def test_stuck_pending_spawn_stopped(hub, make_culler):
    add(hub, "stuck", 0, ready=False, pending="spawn", started=NOW - timedelta(seconds=400))
    add(hub, "starting", 0, ready=False, pending="spawn", started=NOW - timedelta(seconds=30))
    c = await make_culler(P.Policy(timeout=600, pending_timeout=300))
    report = await c.run_pass()
    assert running(hub) == {("starting", "")}
    assert [e["reason"] for e in report.lists["culled"]] == [P.STUCK_SPAWN]
    assert hub.log[0][1] == "/hub/api/users?state=active"  # pending users are not "ready"


async def test_lists_state_ready_by_default(hub, make_culler):
    add(hub, "a", 10)
    c = await make_culler()
    await c.run_pass()
    # server-side filtering: the culler asked for ready users only, one page
    assert [p for m, p in hub.log] == ["/hub/api/users?state=ready"]


async def test_cull_users(hub, make_culler):
    add(hub, "gone", 2 * H)  # server idle: stopped, then the user deleted in the same pass
    hub.add_user("old", created=NOW - timedelta(days=9), last_activity=NOW - timedelta(days=2))
    hub.add_user("fresh", created=NOW - timedelta(days=9), last_activity=NOW - timedelta(seconds=5))
    hub.add_user("boss", admin=True, created=NOW, last_activity=NOW - timedelta(days=2))
    add(hub, "slow", 2 * H)
    hub.slow_stop.add("slow")
    c = await make_culler(P.Policy(timeout=600, cull_users=True, cull_admin_users=False))
    report = await c.run_pass()
    assert set(hub.users) == {"fresh", "boss", "slow"}
    assert sorted(e["user"] for e in report.lists["users_deleted"]) == ["gone", "old"]


async def test_warning_then_cull_with_webhook(hub, make_culler, clock, store):
    received = []

    class Receiver(web.RequestHandler):
        def post(self):
            received.append((self.request.headers.get("X-Secret"), json.loads(self.request.body)))
            self.set_status(204)

    port = free_port()
    server = HTTPServer(web.Application([(r"/hook", Receiver)]))
    server.listen(port, "127.0.0.1")
    webhook = WebhookSender(f"http://127.0.0.1:{port}/hook", {"X-Secret": "s"})
    try:
        add(hub, "alice", 500)
        add(hub, "bob", 10)
        c = await make_culler(P.Policy(timeout=600, warning_period=200), webhook=webhook)
        report = await c.run_pass()
        assert running(hub) == {("alice", ""), ("bob", "")}
        assert [(h, p["user"], p["event"]) for h, p in received] == [("s", "alice", "cull-warning")]
        assert received[0][1]["seconds_left"] == 200
        assert report.lists["warned"][0]["webhook_status"] == 204
        # the warning survives a restart of the service (new Culler, same store)
        c2 = await make_culler(P.Policy(timeout=600, warning_period=200), webhook=webhook)
        assert c2.memory.warned == {("alice", ""): NOW}
        clock.advance(100)
        await c2.run_pass()
        assert running(hub) == {("alice", ""), ("bob", "")} and len(received) == 1
        clock.advance(100)
        await c2.run_pass()
        assert running(hub) == {("bob", "")}
        assert len(received) == 1
        assert await store.load_warnings() == {}
    finally:
        webhook.close()
        server.stop()
        await server.close_all_connections()


async def test_webhook_failure_reported_cull_still_postponed(hub, make_culler):
    webhook = WebhookSender(f"http://127.0.0.1:{free_port()}/nothing", timeout=2)
    try:
        add(hub, "alice", 500)
        c = await make_culler(P.Policy(timeout=600, warning_period=200), webhook=webhook)
        report = await c.run_pass()
        assert [e["stage"] for e in report.lists["errors"]] == ["webhook"]
        assert running(hub) == {("alice", "")}
    finally:
        webhook.close()


async def test_kernel_aware(hub, make_culler):
    add(hub, "busy", 2 * H, kernels=[{"id": "1", "execution_state": "busy"}])
    add(hub, "quiet", 2 * H, kernels=[{"id": "2", "execution_state": "idle"}])
    add(hub, "long", 30 * H, kernels=[{"id": "3", "execution_state": "busy"}])
    add(hub, "active", 10, kernels=[{"id": "4", "execution_state": "busy"}])
    pol = P.Policy(timeout=600, kernel_aware=True, kernel_busy_ceiling=24 * H)
    c = await make_culler(pol, server_base_url=hub.url)
    report = await c.run_pass()
    assert running(hub) == {("busy", ""), ("active", "")}
    # only idle candidates below the ceiling are asked
    assert hub.count("GET", "server:/api/kernels") == 0  # counted by the fake under its own label
    asked = sorted(p for m, p in hub.log if "/api/kernels" in p)
    assert asked == [
        "/user/busy/api/kernels?no_track_activity=1",
        "/user/quiet/api/kernels?no_track_activity=1",
    ]
    assert c.memory.busy_since == {("busy", ""): NOW - timedelta(seconds=2 * H)}
    assert report.counts["errors"] == 0


async def test_passes_never_overlap(hub, make_culler):
    hub.stop_latency = 0.05
    for i in range(5):
        add(hub, f"u{i}", 700)
    c = await make_culler(concurrency=1)
    r1, r2 = await asyncio.gather(c.run_pass(), c.run_pass())
    assert r1.finished <= r2.started or r2.finished <= r1.started
    assert hub.peak_deletes_in_flight == 1
    assert r1.counts["culled"] + r2.counts["culled"] == 5
    assert hub.count("DELETE", "/users/{}/server") == 5


async def test_user_view(hub, make_culler, store):
    add(hub, "alice", 100, groups=["teachers"])
    add(hub, "alice", 0, server="gpu", ready=False, pending="spawn")
    c = await make_culler(P.Policy(timeout=600, group_timeouts={"teachers": 1200}))
    view = await c.user_view("alice")
    assert view["timeout_seconds"] == 1200 and view["timeout_source"] == "group:teachers"
    assert view["servers"][""]["seconds_left"] == 1100
    assert view["servers"][""]["cull_at"] == (NOW + timedelta(seconds=1100)).isoformat()
    assert view["servers"]["gpu"]["next_action"] == P.SKIP
    assert view["exemption"] is None
    await store.put_exemption("alice", None, "", "x", NOW)
    view = await c.user_view("alice")
    assert view["exemption"]["name"] == "alice" and view["timeout_seconds"] is None
    assert await c.user_view("nobody") is None


async def test_metrics_after_pass(hub, make_culler):
    add(hub, "idle", 700)
    c = await make_culler()
    await c.run_pass()
    text = generate_latest(c.registry).decode()
    assert 'jhle_culler_culls_total{kind="server",reason="idle"} 1.0' in text
    assert 'jhle_culler_passes_total{dry_run="false",result="ok"} 1.0' in text
    assert "jhle_culler_users_scanned 1.0" in text


async def test_cull_users_despite_the_hub_counting_our_stop_as_activity(hub, make_culler, clock):
    """A stop sets the user's last_activity to now in JupyterHub; that is not the user's doing."""
    add(hub, "slow", 2 * H)
    hub.slow_stop.add("slow")
    c = await make_culler(P.Policy(timeout=600, cull_users=True))
    report = await c.run_pass()
    assert [e["user"] for e in report.lists["stopping"]] == ["slow"]
    assert "slow" in hub.users
    # the slow stop finishes a minute later; the hub stamps the user active at that moment
    clock.advance(10)
    del hub.users["slow"].servers[""]
    hub.users["slow"].last_activity = clock()
    hub.changed()
    report = await c.run_pass()
    assert [e["user"] for e in report.lists["users_deleted"]] == ["slow"]
    assert "slow" not in hub.users


async def test_real_activity_after_a_cull_keeps_the_user(hub, make_culler, clock):
    add(hub, "back", 2 * H)
    hub.slow_stop.add("back")
    c = await make_culler(P.Policy(timeout=600, cull_users=True))
    await c.run_pass()
    clock.advance(300)  # the user logs in again five minutes later, without a server
    del hub.users["back"].servers[""]
    hub.users["back"].last_activity = clock()
    hub.changed()
    report = await c.run_pass()
    assert report.lists["users_deleted"] == []
    assert "back" in hub.users


async def test_dry_run_reports_user_deletions(hub, make_culler):
    add(hub, "idle", 2 * H)
    hub.add_user("old", created=NOW - timedelta(days=9), last_activity=NOW - timedelta(days=2))
    c = await make_culler(P.Policy(timeout=600, cull_users=True))
    report = await c.run_pass(dry_run=True)
    assert sorted(e["user"] for e in report.lists["users_deleted"]) == ["idle", "old"]
    assert set(hub.users) == {"idle", "old"} and running(hub) == {("idle", "")}


async def test_malformed_model_is_one_error_not_a_failed_pass(hub, make_culler):
    add(hub, "good", 700)
    add(hub, "bad", 700)
    original = type(hub.users["bad"].servers[""]).model

    def broken(self, user, base="/"):
        m = original(self, user, base)
        if user == "bad":
            m["last_activity"] = "not a date"
        return m

    type(hub.users["bad"].servers[""]).model = broken
    try:
        c = await make_culler(P.Policy(timeout=600, cull_users=True))
        report = await c.run_pass()
    finally:
        type(hub.users["bad"].servers[""]).model = original
    assert report.complete
    assert [(e["stage"], e["user"]) for e in report.lists["errors"]] == [("server", "bad")]
    assert running(hub) == {("bad", "")}
    assert [e["user"] for e in report.lists["users_deleted"]] == ["good"]
