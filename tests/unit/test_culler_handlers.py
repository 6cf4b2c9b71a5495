"""The culler's REST API in-process: auth (401/403), bad input (400), persistence, OpenAPI."""

import json
import ssl
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import yaml
from fakehub import FakeHub, free_port
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.web import create_signed_value

from jupyterhub_lab_ext.services.culler.app import LabIdleCuller

PREFIX = "/services/idle-culler/"
NOW = datetime.now(timezone.utc)

TOKENS = {
    # a hub admin's full token, as the hub expands the admin role
    "admin": {
        "kind": "user",
        "name": "boss",
        "admin": True,
        "scopes": ["access:services", "admin:servers", "admin:users"],
    },
    # tokens an admin made with narrow scopes: the owner's admin flag must not count
    "narrow-admin": {
        "kind": "user",
        "name": "boss",
        "admin": True,
        "scopes": ["read:users:activity!user=boss"],
    },
    "read-only-admin": {
        "kind": "user",
        "name": "boss",
        "admin": True,
        "scopes": ["access:services!service=idle-culler"],
    },
    "other-service-admin": {
        "kind": "user",
        "name": "boss",
        "admin": True,
        "scopes": ["access:services!service=user-limit", "custom:user-limit:admin"],
    },
    "read": {
        "kind": "user",
        "name": "reader",
        "admin": False,
        "scopes": ["access:services!service=idle-culler"],
    },
    "read-all": {"kind": "user", "name": "r2", "admin": False, "scopes": ["access:services"]},
    "other-service": {
        "kind": "user",
        "name": "nosy",
        "admin": False,
        "scopes": ["access:services!service=something-else"],
    },
    "custom": {
        "kind": "service",
        "name": "ops-bot",
        "scopes": ["access:services!service=idle-culler", "custom:idle-culler:admin"],
    },
    "none": {"kind": "user", "name": "nobody", "admin": False, "scopes": []},
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (
        "JUPYTERHUB_API_URL",
        "JUPYTERHUB_API_TOKEN",
        "JUPYTERHUB_SERVICE_NAME",
        "JUPYTERHUB_SERVICE_URL",
        "JUPYTERHUB_SERVICE_PREFIX",
        "JUPYTERHUB_CLIENT_ID",
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def hub():
    h = FakeHub("service-token")
    h.tokens.update(TOKENS)
    h.add_user("alice", last_activity=NOW)
    h.add_server("alice", started=NOW, last_activity=NOW - timedelta(seconds=100))
    h.add_user("idle", last_activity=NOW)
    h.add_server("idle", started=NOW, last_activity=NOW - timedelta(hours=2))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


class Running:
    def __init__(self, app, server, port):
        self.app, self.server, self.port = app, server, port
        self.client = AsyncHTTPClient(force_instance=True)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    async def call(self, method, path, token=None, body=None, headers=None, **kw):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"token {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if method in ("POST", "PUT") and body is None:
            body = b""
        resp = await self.client.fetch(
            self.base + path,
            method=method,
            headers=h,
            body=body,
            raise_error=False,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            **kw,
        )
        data = None
        if resp.body and resp.headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(resp.body)
        return resp.code, data, resp

    async def stop(self):
        self.client.close()
        self.server.stop()
        await self.server.close_all_connections()
        await self.app.teardown()


@pytest.fixture
async def start(hub, tmp_path):
    running = []

    async def start_app(*argv):
        app = LabIdleCuller()
        app.initialize(
            [
                f"--url={hub.api_url}",
                f"--db-url=sqlite:///{tmp_path}/culler.sqlite",
                f"--ServiceApp.cookie_secret_file={tmp_path}/cookie_secret",
                "--timeout=3600",
                *argv,
            ]
        )
        app.api_token = hub.token
        port = free_port()
        app.service_url = f"http://127.0.0.1:{port}"
        await app.setup()
        server = HTTPServer(app.make_tornado_app())
        server.listen(port, "127.0.0.1")
        r = Running(app, server, port)
        running.append(r)
        return r

    yield start_app
    for r in running:
        await r.stop()


@pytest.fixture
async def api(start):
    return await start()


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "api/status"),
        ("GET", "api/users/alice"),
        ("POST", "api/passes"),
        ("PUT", "api/exemptions/alice"),
        ("DELETE", "api/exemptions/alice"),
        ("GET", "metrics"),
        ("GET", ""),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "token not-a-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
    ids=["none", "bad-token", "wrong-scheme"],
)
async def test_unauthenticated_401(api, method, path, headers):
    code, data, resp = await api.call(method, path, headers=headers)
    assert code == 401
    assert data["status"] == 401 and "token" in data["message"]
    assert resp.headers["WWW-Authenticate"].startswith("token")


@pytest.mark.parametrize("token", ["none", "other-service"])
@pytest.mark.parametrize("path", ["api/status", "api/users/alice", "metrics", ""])
async def test_under_scoped_read_403(api, token, path):
    code, data, _ = await api.call("GET", path, token=token)
    assert (code, data["status"]) == (403, 403)
    assert "access:services!service=idle-culler" in data["message"]


@pytest.mark.parametrize("token", ["read", "read-all", "custom", "admin"])
async def test_read_scopes_200(api, token):
    code, data, _ = await api.call("GET", "api/status", token=token)
    assert code == 200
    assert data["config"]["timeout"] == 3600 and data["service"] == "idle-culler"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "api/passes", None),
        ("POST", "api/passes?dry_run=1", None),
        ("PUT", "api/exemptions/alice", {}),
        ("DELETE", "api/exemptions/alice", None),
    ],
)
@pytest.mark.parametrize(
    "token",
    ["read", "read-all", "none", "narrow-admin", "read-only-admin", "other-service-admin"],
)
async def test_changes_need_admin_403(api, hub, method, path, body, token):
    # the token's own scopes decide: a hub admin's narrow tokens change nothing
    code, data, _ = await api.call(method, path, token=token, body=body)
    assert code == 403
    no_read = {"none", "narrow-admin", "other-service-admin"}
    wanted = (
        "access:services!service=idle-culler" if token in no_read else "custom:idle-culler:admin"
    )
    assert wanted in data["message"]
    assert hub.count("DELETE", "/users/{}/server") == 0
    assert (await api.call("GET", "api/users/alice", token="admin"))[1]["exemption"] is None


@pytest.mark.parametrize("token", ["admin", "custom"])
async def test_pass_and_dry_run(api, hub, token):
    code, report, _ = await api.call("POST", "api/passes?dry_run=1", token=token)
    assert code == 200 and report["dry_run"] is True
    assert [e["user"] for e in report["culled"]] == ["idle"]
    assert "idle" in {u for u in hub.users if hub.users[u].servers}
    code, report, _ = await api.call("POST", "api/passes", token=token)
    assert code == 200 and report["dry_run"] is False
    assert [(e["user"], e["status"]) for e in report["culled"]] == [("idle", 204)]
    assert not hub.users["idle"].servers
    code, status, _ = await api.call("GET", "api/status", token="read")
    assert status["last_pass"]["counts"]["culled"] == 1
    assert status["last_pass"]["trigger"] == f"api:{TOKENS[token]['name']}"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "Malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"string"', "JSON object"),
        (b"null", "JSON object"),
        ({"until": 12}, "ISO 8601"),
        ({"until": "tomorrow"}, "ISO 8601"),
        ({"until": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"reason": 5}, "reason"),
        ({"reason": "x" * 1025}, "reason"),
        ({"until": None, "colour": "red"}, "Unknown fields: colour"),
        (b"\xff\xfe", "Malformed JSON"),
    ],
    ids=[
        "malformed",
        "array",
        "string",
        "null",
        "until-number",
        "until-words",
        "until-past",
        "reason-number",
        "reason-long",
        "unknown-field",
        "not-utf8",
    ],
)
async def test_bad_exemption_body_400(api, body, message):
    code, data, _ = await api.call("PUT", "api/exemptions/alice", token="admin", body=body)
    assert code == 400, data
    assert data["status"] == 400 and message in data["message"]


@pytest.mark.parametrize("value", ["maybe", "2", "yes%20please"])
async def test_bad_dry_run_400(api, value):
    code, data, _ = await api.call("POST", f"api/passes?dry_run={value}", token="admin")
    assert code == 400 and "dry_run" in data["message"]


async def test_name_too_long_400(api):
    code, data, _ = await api.call("GET", "api/users/" + "a" * 256, token="read")
    assert code == 400
    code, data, _ = await api.call("PUT", "api/exemptions/" + "a" * 256, token="admin", body={})
    assert code == 400


@pytest.mark.parametrize(
    "method, path, token, code",
    [
        ("GET", "api/users/nobody", "read", 404),
        ("DELETE", "api/exemptions/nobody", "admin", 404),
        ("GET", "api/nothing", None, 404),
        ("GET", "api/passes", "admin", 405),
        ("PATCH", "api/status", "admin", 405),
        ("GET", "api/exemptions/alice", "admin", 405),
    ],
)
async def test_json_errors(api, method, path, token, code):
    got, data, resp = await api.call(
        method, path, token=token, body=b"{}" if method == "PATCH" else None
    )
    assert got == code
    assert data == {"status": code, "message": data["message"]}
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_exemption_lifecycle_and_restart(start, hub):
    api1 = await start()
    until = (NOW + timedelta(days=1)).replace(microsecond=0)
    code, ex, _ = await api1.call(
        "PUT",
        "api/exemptions/idle",
        token="custom",
        body={"until": until.isoformat(), "reason": "demo"},
    )
    assert code == 201
    assert ex["created_by"] == "ops-bot" and ex["reason"] == "demo"
    code, ex, _ = await api1.call(
        "PUT", "api/exemptions/idle", token="custom", body={"until": until.isoformat()}
    )
    assert code == 200
    await api1.stop()

    # a new process of the service (same database) still honours it
    api2 = await start()
    code, view, _ = await api2.call("GET", "api/users/idle", token="read")
    assert code == 200
    assert view["exemption"]["until"] == until.isoformat()
    assert view["timeout_source"] == "exemption"
    code, report, _ = await api2.call("POST", "api/passes", token="admin")
    assert report["counts"]["culled"] == 0 and hub.users["idle"].servers
    code, _, _ = await api2.call("DELETE", "api/exemptions/idle", token="admin")
    assert code == 204
    code, report, _ = await api2.call("POST", "api/passes", token="admin")
    assert report["counts"]["culled"] == 1 and not hub.users["idle"].servers


async def test_exemption_without_body_is_open_ended(api):
    code, ex, _ = await api.call("PUT", "api/exemptions/alice", token="admin")
    assert code == 201 and ex["until"] is None


async def test_user_view(api):
    code, view, _ = await api.call("GET", "api/users/alice", token="read")
    assert code == 200
    server = view["servers"][""]
    assert 0 < server["seconds_left"] <= 3500
    assert server["next_action"] == "keep" and view["timeout_source"] == "default"


async def test_health_is_public(api):
    code, data, _ = await api.call("GET", "health")
    assert code == 200 and data["status"] == "ok"


async def test_metrics(api):
    await api.call("POST", "api/passes", token="admin")
    code, _, resp = await api.call("GET", "metrics", token="read")
    assert code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.body.decode()
    assert 'jhle_culler_passes_total{dry_run="false",result="ok"} 1.0' in text
    assert 'jhle_culler_hub_api_requests_total{endpoint="/users",method="GET",status="200"}' in text
    assert "service-token" not in text


async def test_metrics_can_be_public(start):
    api = await start("--LabIdleCuller.authenticate_metrics=False")
    code, _, _ = await api.call("GET", "metrics")
    assert code == 200


async def test_openapi_document_matches_routes(api):
    code, _, resp = await api.call("GET", "api/openapi.yaml")
    assert code == 200
    doc = yaml.safe_load(resp.body)
    assert doc["openapi"].startswith("3.")
    documented = {p.lstrip("/") for p in doc["paths"]}
    routes = {p for p, *_ in api.app._all_handlers()} - {"api/openapi.yaml"}
    normalized = {r.replace("([^/]+)", "{name}") for r in routes}
    assert documented == normalized


async def test_hub_down_is_502_not_500(api, hub):
    await hub.stop()
    api.app.hub.retries = 0
    code, data, _ = await api.call("GET", "api/status", token="fresh-token")
    assert code == 502 and data["status"] == 502


async def test_browser_redirected_to_hub_login(start, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-idle-culler")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    api = await start()
    code, _, resp = await api.call("GET", "api/status", headers={"Accept": "text/html"})
    assert code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/hub/api/oauth2/authorize"
    assert "client_id=service-idle-culler" in location.query
    # API clients still get JSON 401
    code, data, _ = await api.call("GET", "api/status")
    assert code == 401 and data["status"] == 401


async def test_oauth_cookie_authenticates_browsers(start, monkeypatch, hub):
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-idle-culler")
    api = await start()
    secret = api.app.make_tornado_app().settings["cookie_secret"]
    api.server.stop()  # restart the server with a known cookie secret
    app = api.app.make_tornado_app()
    app.settings["cookie_secret"] = secret
    port = free_port()
    api.server = HTTPServer(app)
    api.server.listen(port, "127.0.0.1")
    api.port = port
    cookie = create_signed_value(secret, "service-idle-culler", "read").decode()
    code, data, _ = await api.call(
        "GET", "api/status", headers={"Cookie": f"service-idle-culler={cookie}"}
    )
    assert code == 200 and data["service"] == "idle-culler"
    bad = create_signed_value(secret, "service-idle-culler", "none").decode()
    code, _, _ = await api.call(
        "GET", "api/status", headers={"Cookie": f"service-idle-culler={bad}"}
    )
    assert code == 403
    # cookie-authenticated writes need the xsrf token (cross-site request forgery)
    admin = create_signed_value(secret, "service-idle-culler", "admin").decode()
    code, _, _ = await api.call(
        "POST",
        "api/passes?dry_run=1",
        headers={"Cookie": f"service-idle-culler={admin}", "Sec-Fetch-Mode": "cors"},
    )
    assert code in (401, 403)


async def test_cookie_secret_persisted(start, tmp_path):
    api1 = await start()
    secret = api1.app.make_tornado_app().settings["cookie_secret"]
    path = tmp_path / "cookie_secret"
    assert path.read_bytes() == secret and len(secret) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    api2 = await start()
    assert api2.app.make_tornado_app().settings["cookie_secret"] == secret


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (certipy)."""
    from certipy import Certipy

    store = Certipy(store_dir=str(tmp_path_factory.mktemp("certs")))
    ca = store.create_ca("test-ca")["files"]
    server = store.create_signed_pair("service", "test-ca", alt_names=["IP:127.0.0.1"])["files"]
    client = store.create_signed_pair("client", "test-ca")["files"]
    return ca, server, client


async def test_serves_tls_and_requires_client_certificates(hub, tmp_path, certs):
    ca, server, client = certs
    app = LabIdleCuller()
    app.initialize(
        [
            f"--url={hub.api_url}",
            f"--db-url=sqlite:///{tmp_path}/c.sqlite",
            f"--ServiceApp.ssl_keyfile={server['key']}",
            f"--ServiceApp.ssl_certfile={server['cert']}",
            f"--ServiceApp.ssl_client_ca={ca['cert']}",
        ]
    )
    await app.setup()
    # serving: TLS, and only for clients with a certificate from the CA
    port = free_port()
    srv = HTTPServer(app.make_tornado_app(), ssl_options=app.ssl_context(server=True))
    srv.listen(port, "127.0.0.1")
    client_ctx = ssl.create_default_context(cafile=ca["cert"])
    client_ctx.load_cert_chain(client["cert"], client["key"])
    bare_ctx = ssl.create_default_context(cafile=ca["cert"])
    http = AsyncHTTPClient(force_instance=True)
    try:
        url = f"https://127.0.0.1:{port}{PREFIX}health"
        r = await http.fetch(url, ssl_options=client_ctx, raise_error=False)
        assert r.code == 200
        with pytest.raises((ssl.SSLError, OSError)):  # no client certificate: no handshake
            await http.fetch(url, ssl_options=bare_ctx, raise_error=False)
    finally:
        http.close()
        srv.stop()
        await srv.close_all_connections()
        await app.teardown()
    # calling the hub: our certificate is presented, the hub is verified with the CA
    ctx = app.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    hub_client = app.make_hub()
    assert isinstance(hub_client.ssl_options, ssl.SSLContext)
    assert hub_client.ssl_options.verify_mode == ssl.CERT_REQUIRED


def test_no_tls_without_key_and_certificate():
    app = LabIdleCuller()
    app.initialize([])
    assert app.ssl_context() is None and app.ssl_context(server=True) is None


async def test_upstream_ssl_flags_use_the_hub_certificate_layout(hub, tmp_path, certs):
    """jupyterhub-idle-culler's --ssl-enabled/--internal-certs-location, for a hand-run culler."""
    import shutil

    ca, server, _ = certs
    loc = tmp_path / "internal-ssl"
    (loc / "hub-internal").mkdir(parents=True)
    (loc / "hub-ca").mkdir()
    shutil.copy(server["key"], loc / "hub-internal" / "hub-internal.key")
    shutil.copy(server["cert"], loc / "hub-internal" / "hub-internal.crt")
    shutil.copy(ca["cert"], loc / "hub-ca" / "hub-ca.crt")
    app = LabIdleCuller()
    app.initialize(
        [
            f"--url={hub.api_url}",
            f"--db-url=sqlite:///{tmp_path}/c.sqlite",
            "--ssl-enabled=True",
            f"--internal-certs-location={loc}",
        ]
    )
    await app.setup()
    try:
        assert app.ssl_keyfile == str(loc / "hub-internal" / "hub-internal.key")
        assert app.ssl_client_ca == str(loc / "hub-ca" / "hub-ca.crt")
        assert isinstance(app.hub.ssl_options, ssl.SSLContext)
    finally:
        await app.teardown()
