"""OpenID Connect discovery: only the issuer configured, a full login on a fake provider."""

from __future__ import annotations

import logging

import pytest
from fakes_oauth import HOST, FakeHTTPClient, FakeProvider
from tornado.web import HTTPError
from traitlets import TraitError

from jupyterhub_lab_ext.auth.authenticator import UserlistOAuthenticator
from jupyterhub_lab_ext.auth.oidc_discovery import (
    WELL_KNOWN,
    DiscoveryError,
    discovery_url,
    endpoints_from_document,
)

ISSUER = f"https://{HOST}/realms/lab"


def document(**changes) -> dict:
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": f"https://{HOST}/authorize",
        "token_endpoint": f"https://{HOST}/token",
        "userinfo_endpoint": f"https://{HOST}/userinfo",
        "jwks_uri": f"https://{HOST}/jwks",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


class Discovery:
    """The provider's discovery document route; ``reply`` is what it answers."""

    def __init__(self, client: FakeHTTPClient):
        self.reply: object = document()
        self.fetches = 0
        client.add(HOST, "/realms/lab" + WELL_KNOWN, self)

    def __call__(self, request):
        self.fetches += 1
        assert request.headers.get("Accept") == "application/json"
        return self.reply


@pytest.fixture
def provider():
    return FakeProvider(FakeHTTPClient())


@pytest.fixture
def discovery(provider):
    return Discovery(provider.client)


@pytest.fixture
def make_auth(tmp_path, provider):
    made = []
    userlist = tmp_path / "userlist"
    userlist.write_text("alice@example.org\n")

    def make(**kw):
        cfg = {k: v for k, v in provider.config.items() if not k.endswith("_url")}
        cfg.update(
            oidc_issuer=ISSUER,
            oauth_callback_url=provider.config["oauth_callback_url"],
            userlist_file=str(userlist),
            username_claim="email",
            domain_rules={"example.org": ""},
            create_system_users=False,
            system_names_loader=lambda uid_min: frozenset(),
            userlist_poll_interval=0,
        )
        cfg.update(kw)
        auth = UserlistOAuthenticator(**cfg)
        made.append(auth)
        return auth

    yield make
    for a in made:
        a.background.stop_polling()


async def login(auth, provider):
    handler = provider.handler_for({"email": "alice@example.org", "email_verified": True})
    return await auth.get_authenticated_user(handler, None)


async def test_only_the_issuer_is_enough_for_a_login(make_auth, provider, discovery):
    auth = make_auth()
    assert (auth.authorize_url, auth.token_url, auth.userdata_url) == ("", "", "")
    await auth.resolve_oidc_endpoints()  # what the login redirect does
    assert auth.authorize_url == f"https://{HOST}/authorize"
    user = await login(auth, provider)
    assert user["name"] == "alice"
    paths = [r.url for r in provider.client.requests]
    assert paths == [
        discovery_url(ISSUER),
        f"https://{HOST}/token",
        f"https://{HOST}/userinfo",
    ]
    await login(auth, provider)
    assert discovery.fetches == 1, "the document is read once per hub process"


async def test_a_callback_after_a_hub_restart_discovers_too(make_auth, provider, discovery):
    """The login redirect happened in the previous hub process: the callback resolves first."""
    auth = make_auth()
    assert (await login(auth, provider))["name"] == "alice"
    assert discovery.fetches == 1


async def test_explicit_urls_win(make_auth, provider, discovery):
    auth = make_auth(userdata_url=f"https://{HOST}/userinfo?explicit=1")
    await auth.resolve_oidc_endpoints()
    assert auth.userdata_url == f"https://{HOST}/userinfo?explicit=1"
    assert auth.token_url == f"https://{HOST}/token"


async def test_nothing_is_fetched_when_all_urls_are_set(make_auth, provider, discovery):
    auth = make_auth(**{k: v for k, v in provider.config.items() if k.endswith("_url")})
    await login(auth, provider)
    assert discovery.fetches == 0


async def test_a_failed_read_is_logged_503_and_retried(make_auth, provider, discovery, caplog):
    auth = make_auth()
    discovery.reply = 404
    caplog.set_level(logging.ERROR)
    with pytest.raises(DiscoveryError, match="HTTP 404"):
        await auth.resolve_oidc_endpoints()
    assert "OpenID Connect discovery from https://provider.test/realms/lab/.well-known" in (
        caplog.text
    )
    with pytest.raises(HTTPError) as exc:
        await login(auth, provider)
    assert exc.value.status_code == 503
    discovery.reply = document()
    assert (await login(auth, provider))["name"] == "alice"
    assert discovery.fetches == 3


async def test_unreachable_provider(make_auth, provider):
    async def refuse(request, raise_error=True, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    provider.client.fetch = refuse
    with pytest.raises(DiscoveryError, match="Connection refused"):
        await make_auth().resolve_oidc_endpoints()


@pytest.mark.parametrize(
    "doc, message",
    [
        ("not a dict", "not a JSON object"),
        (document(issuer="https://evil.test/realms/lab"), "names issuer 'https://evil.test"),
        (document(issuer=None), "names issuer None"),
        (document(token_endpoint=None), "no token_endpoint"),
        (document(userinfo_endpoint=""), "no userinfo_endpoint"),
        (document(authorization_endpoint="http://provider.test/a"), "not an absolute https URL"),
        (document(token_endpoint="/token"), "not an absolute https URL"),
        (document(userinfo_endpoint=["https://x"]), "no userinfo_endpoint"),
    ],
    ids=[
        "not-object",
        "other-issuer",
        "no-issuer",
        "no-token",
        "empty-userinfo",
        "http",
        "rel",
        "list",
    ],
)
def test_bad_documents_are_refused(doc, message):
    with pytest.raises(DiscoveryError, match=message):
        endpoints_from_document(ISSUER, doc)


def test_trailing_slash_and_http_issuers():
    doc = document(issuer=ISSUER + "/")
    assert endpoints_from_document(ISSUER, doc).token_url == f"https://{HOST}/token"
    local = {
        "issuer": "http://127.0.0.1:9100",
        "authorization_endpoint": "http://127.0.0.1:9100/auth",
        "token_endpoint": "http://127.0.0.1:9100/token",
        "userinfo_endpoint": "http://127.0.0.1:9100/me",
    }
    assert endpoints_from_document("http://127.0.0.1:9100/", local).userdata_url.endswith("/me")
    assert discovery_url("https://idp/realms/x/") == "https://idp/realms/x" + WELL_KNOWN


@pytest.mark.parametrize("issuer", ["idp.example.org", "ftp://idp", "https://idp/?a=1", "https://"])
def test_bad_issuer_setting_is_a_config_error(make_auth, issuer):
    with pytest.raises(TraitError, match="oidc_issuer"):
        make_auth(oidc_issuer=issuer)
