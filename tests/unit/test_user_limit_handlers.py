"""REST API of the user-limit service, in-process: auth (401/403), bad input (400), decisions,
atomicity under concurrent requests, persistence of limits, metrics, and schemathesis."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from test_user_limit_support import HOOK, Service

import jupyterhub_lab_ext.services.user_limit as pkg

OPENAPI = Path(pkg.__file__).parent / "openapi.yaml"


def auth(token):
    return {"Authorization": f"token {token}"}


@pytest.fixture
def service_options():
    """Options of the service under test (a test overrides this fixture to change them)."""
    return {}


@pytest.fixture
def svc(tmp_path, service_options):
    s = Service(
        tmp_path,
        **{
            "max_active_servers": 2,
            "group_quotas": {"students": 1},
            "start_queued_servers": False,
            **service_options,
        },
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(svc):
    with httpx.Client(base_url=svc.url, timeout=10) as c:
        yield c


def admit(client, user, **body):
    r = client.post("/api/admissions", json={"user": user, **body}, headers=auth(HOOK))
    assert r.status_code == 200, r.text
    return r.json()


READS = [
    ("GET", "/api/status"),
    ("GET", "/api/queue"),
    ("GET", "/api/users/alice"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize("method, path", READS, ids=[p for _, p in READS])
def test_reads_need_a_token_and_the_access_scope(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 401 and r.json()["status"] == 401
    assert client.request(method, path, headers=auth("not-a-token")).status_code == 401
    r = client.request(method, path, headers=auth("noscope"))
    assert r.status_code == 403 and "access:services!service=user-limit" in r.json()["message"]
    assert client.request(method, path, headers=auth("reader")).status_code == 200
    assert client.request(method, path, headers=auth("hubadmin")).status_code == 200


@pytest.mark.parametrize(
    "token, status", [(None, 401), ("reader", 403), ("hubadmin", 403), ("limitadmin", 403)]
)
def test_admissions_only_accept_the_hook_credential(client, token, status):
    headers = auth(token) if token else {}
    r = client.post("/api/admissions", json={"user": "mallory"}, headers=headers)
    assert r.status_code == status
    r = client.delete("/api/admissions/abc", headers=headers)
    assert r.status_code == status


BAD_ADMISSIONS = [
    ("not-json", b"{nope", "Malformed JSON"),
    ("empty", b"", "JSON object"),
    ("list", b"[1]", "JSON object"),
    ("no-user", b"{}", "'user' is required"),
    ("empty-user", b'{"user": ""}', "'user' must be"),
    ("user-not-string", b'{"user": 5}', "'user' must be"),
    ("long-user", b'{"user": "' + b"x" * 300 + b'"}', "'user' must be"),
    ("server-slash", b'{"user": "a", "server_name": "x/y"}', "server_name"),
    ("groups-not-list", b'{"user": "a", "groups": "students"}', "'groups'"),
    ("group-not-string", b'{"user": "a", "groups": [1]}', "'groups'"),
    ("admin-not-bool", b'{"user": "a", "admin": "yes"}', "'admin'"),
    ("options-not-object", b'{"user": "a", "user_options": [1]}', "'user_options'"),
    ("bad-kind", b'{"user": "a", "kind": "vip"}', "'kind'"),
    ("seat-existing-not-bool", b'{"user": "a", "kind": "seat", "existing": 1}', "'existing'"),
]


@pytest.mark.parametrize(
    "body, message", [c[1:] for c in BAD_ADMISSIONS], ids=[c[0] for c in BAD_ADMISSIONS]
)
def test_bad_admission_bodies_are_400(client, body, message):
    r = client.post(
        "/api/admissions", content=body, headers={**auth(HOOK), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert message in r.json()["message"]


def test_cap_queue_release_and_reservation(svc, client):
    a = admit(client, "a")
    b = admit(client, "b", server_name="lab")
    c = admit(client, "c", user_options={"env": "py311"})
    d = admit(client, "d")
    assert (a["outcome"], b["outcome"], c["outcome"], d["outcome"]) == (
        "admitted",
        "admitted",
        "queued",
        "queued",
    )
    assert (c["position"], d["position"]) == (1, 2)
    assert c["retry_after"] >= 5 and "number 1 in line" in c["message"]
    # a second tab / a direct REST call does not take a second place in line
    assert admit(client, "c")["position"] == 1
    queue = client.get("/api/queue", headers=auth("reader")).json()
    assert [e["user"] for e in queue["entries"]] == ["c", "d"]
    # a user cannot skip the line by asking for a named server
    assert admit(client, "d", server_name="other")["position"] == 2

    r = client.delete(f"/api/admissions/{a['id']}", headers=auth(HOOK))
    assert r.status_code == 204
    assert client.delete(f"/api/admissions/{a['id']}", headers=auth(HOOK)).status_code == 404
    status = client.get("/api/status", headers=auth("reader")).json()
    assert status["usage"]["active_servers"] == 2 and status["usage"]["reserved"] == 1
    assert status["queue_length"] == 1
    me = client.get("/api/users/c", headers=auth("reader")).json()
    assert me["state"] == "starting" and me["position"] is None
    # someone new still queues behind d: the reservation holds c's place
    assert admit(client, "e")["position"] == 2
    got = admit(client, "c")
    assert got["outcome"] == "admitted" and got["reason"] == "reserved"
    me = client.get("/api/users/c", headers=auth("reader")).json()
    assert me["state"] == "active" and me["can_spawn"] is True


def test_group_quota_and_admin_exemption(client):
    assert admit(client, "s1", groups=["students"])["outcome"] == "admitted"
    s2 = admit(client, "s2", groups=["students"])
    assert s2["outcome"] == "queued" and s2["limit"] == "group_quotas[students]=1"
    assert admit(client, "staff", groups=["staff"])["outcome"] == "admitted"
    # full now; an admin is exempt
    assert admit(client, "x")["outcome"] == "queued"
    boss = admit(client, "boss", admin=True)
    assert boss["outcome"] == "admitted" and boss["reason"] == "exempt"
    me = client.get("/api/users/s2", headers=auth("reader")).json()
    assert me["state"] == "queued" and me["position"] == 1 and me["can_spawn"] is False


def test_concurrent_admissions_never_over_admit(svc, client):
    client.put(
        "/api/limits",
        json={"max_active_servers": 10, "group_quotas": None},
        headers=auth("hubadmin"),
    )

    def one(i):
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            return admit(c, f"u{i}")

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    admitted = [r for r in results if r["outcome"] == "admitted"]
    queued = sorted(r["position"] for r in results if r["outcome"] == "queued")
    assert len(admitted) == 10
    assert queued == list(range(1, 41))
    assert client.get("/api/status", headers=auth("reader")).json()["usage"]["active_servers"] == 10


def test_limits_change_at_runtime_and_persist(svc, client, tmp_path):
    r = client.put("/api/limits", json={"max_active_servers": 5}, headers=auth("reader"))
    assert r.status_code == 403
    for body, msg in [
        ({"max_active_servers": -1}, "integer >= 0"),
        ({}, "at least one"),
        ({"nope": 1}, "unknown"),
    ]:
        r = client.put("/api/limits", json=body, headers=auth("limitadmin"))
        assert r.status_code == 400 and msg in r.json()["message"]
    r = client.put("/api/limits", content=b"{", headers=auth("limitadmin"))
    assert r.status_code == 400
    for u in "abc":
        admit(client, u)
    r = client.put(
        "/api/limits", json={"max_active_servers": 5, "max_users": 3}, headers=auth("limitadmin")
    )
    assert r.status_code == 200 and r.json()["limits"]["max_active_servers"] == 5
    # raising the cap hands the free place to the waiter at once
    status = client.get("/api/status", headers=auth("reader")).json()
    assert status["queue_length"] == 0 and status["usage"]["reserved"] == 1
    svc.stop()
    again = Service(tmp_path, max_active_servers=2).start()
    try:
        with httpx.Client(base_url=again.url) as c2:
            limits = c2.get("/api/status", headers=auth("reader")).json()["limits"]
            assert limits["max_active_servers"] == 5 and limits["max_users"] == 3
            r = c2.put("/api/limits", json={"max_active_servers": None}, headers=auth("hubadmin"))
            assert r.json()["limits"]["max_active_servers"] == 2
    finally:
        again.stop()


def test_seats(client):
    client.put("/api/limits", json={"max_users": 1}, headers=auth("hubadmin"))
    first = admit(client, "first", kind="seat")
    assert first["outcome"] == "admitted" and first["kind"] == "seat"
    second = admit(client, "second", kind="seat")
    assert second["outcome"] == "refused" and "seats are taken" in second["message"]
    assert admit(client, "known", kind="seat", existing=True)["outcome"] == "admitted"
    assert admit(client, "boss", kind="seat", admin=True)["outcome"] == "admitted"
    assert client.get("/api/status", headers=auth("reader")).json()["usage"]["seats"] == 3


def test_per_user_cap_refuses(client):
    client.put(
        "/api/limits",
        json={"max_servers_per_user": 1, "max_active_servers": 10},
        headers=auth("hubadmin"),
    )
    assert admit(client, "a")["outcome"] == "admitted"
    r = admit(client, "a", server_name="second")
    assert r["outcome"] == "refused" and r["reason"] == "max-servers-per-user"


def test_health_and_metrics(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["store"] == "ok"
    admit(client, "a")
    admit(client, "b")
    admit(client, "c")
    text = client.get("/metrics", headers=auth("reader")).text
    assert "jhle_user_limit_queue_length 1.0" in text
    assert "jhle_user_limit_active_servers 2.0" in text
    assert (
        'jhle_user_limit_decisions_total{kind="server",outcome="queue",reason="max-active-servers"} 1.0'
        in text
    )
    assert "jhle_user_limit_decision_duration_seconds_count 3.0" in text
    assert 'jhle_user_limit_group_active_servers{group="students"} 0.0' in text


# treat every booked place as older than the snapshot of the hub
@pytest.mark.parametrize("service_options", [{"reconcile_grace": -5}])
def test_reconcile_against_the_hub(svc, client):
    svc.hub.users = {
        "run": {
            "name": "run",
            "admin": False,
            "groups": ["students"],
            "servers": {"": {"ready": True, "pending": None}},
        },
        "idle": {"name": "idle", "admin": False, "groups": [], "servers": {}},
    }

    async def seats_matter():  # on the service's loop, without the reconcile a PUT starts
        svc.app.ledger.set_limits({"max_users": 10})

    svc.call(seats_matter())
    stale = admit(client, "phantom")
    summary = svc.call(svc.app.background.reconcile())
    assert summary["added"] == 1 and summary["removed"] == 1
    me = client.get("/api/users/run", headers=auth("reader")).json()
    assert [a["state"] for a in me["admissions"]] == ["observed"]
    assert client.delete(f"/api/admissions/{stale['id']}", headers=auth(HOOK)).status_code == 404
    status = client.get("/api/status", headers=auth("reader")).json()
    assert status["usage"]["groups"] == {"students": 1} and status["usage"]["seats"] == 2


def test_queued_server_is_started_through_the_hub(tmp_path):
    s = Service(tmp_path, max_active_servers=1, start_queued_servers=True).start()
    try:
        with httpx.Client(base_url=s.url) as c:
            a = admit(c, "a")
            admit(c, "b", server_name="gpu", user_options={"profile": "big"})
            assert c.delete(f"/api/admissions/{a['id']}", headers=auth(HOOK)).status_code == 204
            for _ in range(100):
                if s.hub.starts:
                    break
                s.call(_sleep(0.05))
            assert s.hub.starts == [("b", "gpu", {"profile": "big"})]
    finally:
        s.stop()


async def _sleep(t):
    import asyncio

    await asyncio.sleep(t)


# -- schemathesis: no 500 for any input ------------------------------------------------------
schema = schemathesis.openapi.from_path(str(OPENAPI))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    s = Service(tmp_path_factory.mktemp("st"), max_active_servers=3, group_quotas={"g": 1}).start()
    try:
        yield s
    finally:
        s.stop()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_no_server_errors(case, live):
    token = HOOK if "admissions" in case.path else "hubadmin"
    response = case.call(base_url=live.url, headers=auth(token))
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500 or (case.path == "/health" and response.status_code == 503)


def test_settings_from_enable_user_limit_environment(monkeypatch, tmp_path):
    from jupyterhub_lab_ext.services.user_limit.app import UserLimitApp

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "JUPYTERHUB_USER_LIMIT_SETTINGS", '{"max_active_servers": 7, "group_quotas": {"s": 2}}'
    )
    app = UserLimitApp()
    app.initialize(["--max-users=3"])
    assert app.max_active_servers == 7 and app.group_quotas == {"s": 2} and app.max_users == 3
    assert app.ledger.limits.max_active_servers == 7
    monkeypatch.setenv("JUPYTERHUB_USER_LIMIT_SETTINGS", "[1]")
    with pytest.raises(SystemExit):
        UserLimitApp().initialize([])


def test_database_failure_is_a_clear_503(svc, client):
    import sqlalchemy as sa

    svc.call(
        svc.app.limit_store.store.run(
            lambda conn: conn.execute(sa.text("DROP TABLE user_limit_admissions"))
        )
    )
    r = client.post("/api/admissions", json={"user": "a"}, headers=auth(HOOK))
    assert r.status_code == 503 and "database is unavailable" in r.json()["message"]
    # the service keeps answering reads
    assert client.get("/api/status", headers=auth("reader")).status_code == 200


def test_queue_page(client):
    r = client.get("/queue", params={"server": "gpu"}, headers=auth("reader"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    html = r.text
    assert '"/services/user-limit/api/users/alice"' in html
    assert '"/hub/spawn-pending/alice"' in html and 'var wanted = "gpu"' in html
    assert 'data-testid="queue-position"' in html and "X-XSRFToken" in html
    assert client.get("/queue", headers=auth("limitadmin")).status_code == 403  # a service
    assert client.get("/queue", params={"server": "a/b"}, headers=auth("reader")).status_code == 400
    assert client.get("/queue").status_code == 401


def test_turning_seats_on_learns_the_hubs_users_at_once(svc, client):
    import time

    svc.hub.users = {
        n: {"name": n, "admin": False, "groups": [], "servers": {}} for n in ("x", "y")
    }
    assert client.get("/api/status", headers=auth("reader")).json()["usage"]["seats"] == 0
    r = client.put("/api/limits", json={"max_users": 2}, headers=auth("hubadmin"))
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get("/api/status", headers=auth("reader")).json()["usage"]["seats"] == 2:
            break
        time.sleep(0.05)
    assert set(svc.app.ledger.seats) == {"x", "y"}
    # the hub's users hold the seats: a newcomer is refused
    assert admit(client, "z", kind="seat")["outcome"] == "refused"


@pytest.mark.parametrize("service_options", [{"hub_prefix": "jh"}])
def test_queue_page_links_under_the_hubs_prefix(svc, client):
    # a path prefix, normalised where the trait is declared
    assert svc.app.hub_prefix == "/jh/"
    html = client.get("/queue", headers=auth("reader")).text
    assert '"/jh/hub/spawn-pending/alice"' in html and '"/jh/hub/home"' in html
