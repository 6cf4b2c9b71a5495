"""The admin dashboards: the history they chart (pure aggregation and storage), their pages
(CSP, no inline script, escaping, read-only vs admin) and their read endpoints, in-process."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import httpx
import pytest
from fakehub import FakeHub, free_port
from test_user_limit_support import Service
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.culler import history as H
from jupyterhub_lab_ext.services.culler.app import LabIdleCuller
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.store import metadata as culler_metadata
from jupyterhub_lab_ext.services.user_limit import history as UH
from jupyterhub_lab_ext.services.user_limit.store import metadata as limit_metadata

T0 = datetime(2026, 3, 6, 14, 25, tzinfo=timezone.utc)
HOSTILE = '<img src=x onerror="alert(1)">&'


def row(started, culled=0, stopping=0, warned=0, dry_run=False):
    return {
        "started": started,
        "culled": culled,
        "stopping": stopping,
        "warned": warned,
        "dry_run": dry_run,
    }


# -- culls per hour (pure) -----------------------------------------------------------------
def test_hourly_buckets_are_clock_hours_ending_with_this_one():
    buckets = H.hourly([], T0, hours=24)
    assert len(buckets) == 24
    assert buckets[-1].start == T0.replace(minute=0)
    assert buckets[0].start == T0.replace(minute=0) - timedelta(hours=23)
    assert all(b.culled == b.passes == 0 for b in buckets)


def test_hourly_counts_stops_warnings_and_dry_runs_apart():
    rows = [
        row(T0 - timedelta(minutes=5), culled=2, stopping=1, warned=1),  # this hour
        row(T0 - timedelta(minutes=20), culled=1),  # 14:05: this hour too
        row(T0 - timedelta(minutes=30), culled=4),  # 13:55: the hour before
        row(T0 - timedelta(hours=2), culled=5, dry_run=True),
        row(T0 - timedelta(hours=24), culled=100),  # 14:25 yesterday: outside the window
        row(T0 + timedelta(hours=1), culled=100),  # the future (clock skew): ignored
    ]
    buckets = H.hourly(rows, T0, hours=24)
    last, before, dry = buckets[-1], buckets[-2], buckets[-3]
    assert (last.culled, last.warned, last.passes, last.would_cull) == (4, 1, 2, 0)
    assert (before.culled, before.passes) == (4, 1)
    assert (dry.culled, dry.would_cull) == (0, 5)
    assert sum(b.culled for b in buckets) == 8


def test_hourly_accepts_naive_datetimes_from_sqlite():
    naive = (T0 - timedelta(minutes=1)).replace(tzinfo=None)
    assert H.hourly([row(naive, culled=1)], T0)[-1].culled == 1


def report(culled=(), dry_run=False, started=T0):
    r = PassReport(7, "timer", dry_run, started, limit=1000)
    for user, server in culled:
        r.add("culled", {"user": user, "server": server})
    r.add("warned", {"user": "w", "server": ""})
    r.finished, r.duration = started + timedelta(seconds=2), 2.0
    return r


def test_pass_row_names_culled_servers_capped():
    many = [(f"u{i}", "") for i in range(H.NAMES_PER_PASS + 10)] + [("x", "gpu")]
    got = H.pass_row(report(culled=many))
    assert got["culled"] == H.NAMES_PER_PASS + 11  # the count stays exact
    names = json.loads(got["culled_names"])
    assert len(names) == H.NAMES_PER_PASS and names[0] == "u0"
    assert H.pass_row(report(culled=[("a", "gpu")]))["culled_names"] == '["a/gpu"]'


async def test_pass_history_records_reads_and_forgets_old_passes(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/c.sqlite", culler_metadata)
    await store.start()
    now = [T0]
    history = H.PassHistory(store, clock=lambda: now[0])
    try:
        await history.record(report(culled=[("old", "")], started=T0 - timedelta(days=6)))
        await history.record(report(culled=[("a", ""), ("b", "lab")]))
        recent = await history.recent(10)
        assert [p["culled_names"] for p in recent] == [["a", "b/lab"], ["old"]]
        assert recent[0]["counts"]["culled"] == 2 and recent[0]["counts"]["warned"] == 1
        assert recent[0]["started"] == T0.isoformat()
        since = await history.since(T0 - timedelta(hours=1))
        assert [H.hourly(since, T0)[-1].culled] == [2]
        now[0] = T0 + timedelta(days=2)  # the first pass is now 8 days old
        await history.record(report(started=now[0]))
        assert len(await history.recent(10)) == 2
    finally:
        await store.close()


# -- usage samples (pure and stored) --------------------------------------------------------
def sample(ts, active, queued=0, reserved=0, seats=0):
    return {"ts": ts, "active": active, "queued": queued, "reserved": reserved, "seats": seats}


def test_downsample_keeps_the_peak_of_each_bucket_and_gaps_as_none():
    rows = [sample(0, 3), sample(60, 9, queued=4), sample(120, 2), sample(610, 5), sample(999, 1)]
    points = UH.downsample(rows, 0, 900, 300)
    assert [p.start for p in points] == [0, 300, 600]
    assert [(p.active, p.queued) for p in points] == [(9, 4), (None, None), (5, 0)]
    assert UH.downsample(rows, 0, 0, 300) == [] and UH.downsample(rows, 0, 10, 0) == []


def test_downsample_partial_last_bucket():
    assert len(UH.downsample([sample(950, 1)], 0, 1000, 300)) == 4


async def test_sampler_writes_one_row_per_sample_and_keeps_only_the_retention(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/l.sqlite", limit_metadata)
    await store.start()
    clock = [1000.0]
    counts = {"active": 2, "reserved": 1, "queued": 3, "seats": 4}
    sampler = UH.HistorySampler(
        store, lambda: counts, interval=60, retention=300, clock=lambda: clock[0]
    )
    try:
        for _ in range(10):
            await sampler.sample()
            clock[0] += 60
        rows = await sampler.since(0)
        assert [r["ts"] for r in rows] == [1240.0, 1300.0, 1360.0, 1420.0, 1480.0, 1540.0]
        assert {k: rows[-1][k] for k in counts} == counts
    finally:
        await store.close()


# -- the culler's page and endpoints, in-process --------------------------------------------
PREFIX = "/services/idle-culler/"
TOKENS = {
    "admin": {"kind": "user", "name": "boss", "scopes": ["access:services", "admin:servers"]},
    "reader": {
        "kind": "user",
        "name": HOSTILE,
        "scopes": ["access:services!service=idle-culler"],
    },
    "nobody": {"kind": "user", "name": "nobody", "scopes": []},
}


class Page(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.scripts, self.inline, self.styles, self.ids = [], [], [], set()
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.add(a.get("id"))
        if "style" in a or tag == "style":
            self.styles.append(tag)
        if tag == "script":
            self.scripts.append(a.get("src"))
            self._in_script = True
        self.body = a if tag == "body" else getattr(self, "body", None)

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(data)


@pytest.fixture
async def culler(tmp_path, monkeypatch):
    for var in ("JUPYTERHUB_SERVICE_NAME", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    now = datetime.now(timezone.utc)
    hub = FakeHub("service-token")
    hub.tokens.update(TOKENS)
    hub.add_user(HOSTILE, last_activity=now)
    hub.add_server(HOSTILE, started=now, last_activity=now - timedelta(seconds=100))
    hub.add_user("idle", last_activity=now)
    hub.add_server("idle", started=now, last_activity=now - timedelta(hours=2))
    await hub.start()
    app = LabIdleCuller()
    app.initialize(
        [
            f"--url={hub.api_url}",
            f"--db-url=sqlite:///{tmp_path}/culler.sqlite",
            "--timeout=3600",
        ]
    )
    app.api_token = hub.token
    port = free_port()
    app.service_url = f"http://127.0.0.1:{port}"
    await app.setup()
    server = HTTPServer(app.make_tornado_app())
    server.listen(port, "127.0.0.1")
    client = AsyncHTTPClient(force_instance=True)

    async def call(method, path, token="admin", **kw):
        headers = {"Authorization": f"token {token}", **kw.pop("headers", {})}
        return await client.fetch(
            f"http://127.0.0.1:{port}{PREFIX}{path}",
            method=method,
            headers=headers,
            raise_error=False,
            follow_redirects=False,
            allow_nonstandard_methods=True,
            **kw,
        )

    call.app = app
    try:
        yield call
    finally:
        client.close()
        server.stop()
        await app.teardown()
        await hub.stop()


async def test_culler_page_has_csp_no_inline_script_and_admin_controls(culler):
    resp = await culler("GET", "dashboard")
    assert resp.code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page = Page(resp.body.decode())
    assert page.inline == [] and page.styles == []
    assert [s.split("?")[0] for s in page.scripts] == [
        f"{PREFIX}static/dashboard.js",
        f"{PREFIX}static/culler-dashboard.js",
    ]
    assert page.body["data-can-change"] == "1" and page.body["data-prefix"] == PREFIX
    assert {"exempt-form", "run-pass", "servers", "culls-chart"} <= page.ids
    for src in page.scripts:
        asset = await culler("GET", src.split("?")[0][len(PREFIX) :], token="")
        assert asset.code == 200 and asset.headers["Content-Type"].startswith("text/javascript")


async def test_culler_page_read_only_and_escapes_the_viewer_name(culler):
    resp = await culler("GET", "dashboard", token="reader")
    html = resp.body.decode()
    assert resp.code == 200
    page = Page(html)
    assert page.body["data-can-change"] == "0"
    assert "exempt-form" not in page.ids and "run-pass" not in page.ids
    assert HOSTILE not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in html
    assert (await culler("GET", "dashboard", token="nobody")).code == 403


@pytest.mark.parametrize(
    "name", ["nope.js", "dashboard.html", "..%2Fstatic%2Fdashboard.js", "..%2F..%2F..%2Fsetup.cfg"]
)
async def test_static_serves_only_shipped_css_and_js(culler, name):
    resp = await culler("GET", f"static/{name}", token="")
    assert resp.code == 404 and json.loads(resp.body)["status"] == 404


async def test_index_sends_browsers_to_the_page_and_api_clients_json(culler):
    resp = await culler("GET", "", headers={"Accept": "text/html,*/*"})
    assert resp.code == 302 and resp.headers["Location"] == f"{PREFIX}dashboard"
    resp = await culler("GET", "")
    assert resp.code == 200 and json.loads(resp.body)["service"] == "idle-culler"


async def test_servers_exemptions_and_history_endpoints(culler):
    doc = json.loads((await culler("GET", "api/servers", token="reader")).body)
    by_user = {s["user"]: s for s in doc["servers"]}
    assert set(by_user) == {HOSTILE, "idle"}
    assert by_user["idle"]["next_action"] == "cull" and by_user["idle"]["seconds_left"] == 0
    assert 3000 < by_user[HOSTILE]["seconds_left"] <= 3500  # an hour after 100 s ago
    assert doc["servers"][0]["user"] == "idle"  # soonest cull first

    body = json.dumps({"reason": HOSTILE})
    assert (await culler("PUT", "api/exemptions/idle", body=body)).code == 201
    ex = json.loads((await culler("GET", "api/exemptions", token="reader")).body)
    assert [(e["name"], e["reason"], e["active"]) for e in ex["exemptions"]] == [
        ("idle", HOSTILE, True)
    ]
    # no waiting for the shared listing to age: decisions follow the exemption at once
    doc = json.loads((await culler("GET", "api/servers")).body)
    idle = next(s for s in doc["servers"] if s["user"] == "idle")
    assert idle["timeout_seconds"] is None and idle["cull_at"] is None

    assert (await culler("DELETE", "api/exemptions/idle")).code == 204
    assert (await culler("POST", "api/passes", body=b"")).code == 200
    hist = json.loads((await culler("GET", "api/history?hours=3&limit=5", token="reader")).body)
    assert len(hist["hourly"]) == 3 and hist["hourly"][-1]["culled"] == 1
    assert [p["culled_names"] for p in hist["passes"]] == [["idle"]]
    for bad in ("hours=0", "hours=1000", "limit=x"):
        assert (await culler("GET", f"api/history?{bad}")).code == 400


# -- the user-limit page and history --------------------------------------------------------
@pytest.fixture
def limits(tmp_path):
    s = Service(tmp_path, max_active_servers=3, group_quotas={"g": 1}, start_queued_servers=False)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_user_limit_page_and_history(limits):
    with httpx.Client(base_url=limits.url, timeout=10) as c:
        admin = {"Authorization": "token hubadmin"}
        resp = c.get("/dashboard", headers=admin)
        assert (
            resp.status_code == 200
            and "unsafe-inline" not in resp.headers["content-security-policy"]
        )
        page = Page(resp.text)
        assert page.inline == [] and page.body["data-can-change"] == "1"
        assert {"caps-form", "gauges", "usage-chart", "queue"} <= page.ids
        assert (
            Page(c.get("/dashboard", headers={"Authorization": "token reader"}).text).body[
                "data-can-change"
            ]
            == "0"
        )
        limits.call(limits.app.history.sample())
        hist = c.get("/api/history", headers=admin).json()
        assert hist["cap"] == 3 and hist["step"] == 300 and len(hist["points"]) == 288
        assert hist["points"][-1]["active"] == 0 and hist["points"][0]["active"] is None
        assert c.get("/api/history?step=1", headers=admin).status_code == 400
        assert c.get("/api/history?hours=nan", headers=admin).status_code == 400


def test_hostile_strings_never_reach_a_page_template_unescaped():
    # the pages' scripts build the DOM with text nodes only: no innerHTML anywhere
    from jupyterhub_lab_ext.util.data import share_dir

    for js in (share_dir() / "static").glob("*.js"):
        assert not re.search(
            r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", js.read_text()
        )
