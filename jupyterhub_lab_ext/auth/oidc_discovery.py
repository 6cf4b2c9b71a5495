"""OpenID Connect discovery: a provider's endpoints from its issuer URL alone.

``c.UserlistOAuthenticator.oidc_issuer = "https://idp.example.org/realms/lab"`` is enough for
any standard OpenID Connect provider (Keycloak, Authentik, Dex, Okta, a university IdP, ...):
at the first login the hub reads ``<issuer>/.well-known/openid-configuration`` and takes the
authorization, token and userinfo endpoints from it. URLs set explicitly
(``authorize_url``, ``token_url``, ``userdata_url``) win over discovered ones.

:func:`endpoints_from_document` is the pure check of a discovery document;
:class:`OIDCDiscovery` fetches it (once per hub process, on the hub's event loop) and
fills in the authenticator's empty URLs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlparse

from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import TraitError, Unicode, validate
from traitlets.config import Configurable

WELL_KNOWN = "/.well-known/openid-configuration"
#: seconds for one fetch of the discovery document (unless ``http_request_kwargs`` says otherwise)
FETCH_TIMEOUT = 10.0


class DiscoveryError(Exception):
    """The discovery document could not be fetched or does not describe a usable provider."""


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    userdata_url: str


def discovery_url(issuer: str) -> str:
    """``https://idp/realms/lab`` -> ``https://idp/realms/lab/.well-known/openid-configuration``."""
    return issuer.rstrip("/") + WELL_KNOWN


def check_issuer(issuer: str) -> str:
    """The issuer if it is an absolute http(s) URL without query or fragment, else ValueError."""
    parsed = urlparse(issuer)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{issuer!r} is not an http(s) URL")
    if parsed.query or parsed.fragment:
        raise ValueError(f"{issuer!r}: an issuer URL has no query or fragment")
    return issuer


def endpoints_from_document(issuer: str, doc: object) -> Endpoints:
    """The three endpoints of a discovery document, checked against the configured issuer.

    The document must name the same issuer (a trailing slash aside: OpenID Connect Discovery
    1.0, section 4.3) and give absolute http(s) URLs; for an https issuer they must be https.
    """
    if not isinstance(doc, dict):
        raise DiscoveryError("the discovery document is not a JSON object")
    named = doc.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer.rstrip("/"):
        raise DiscoveryError(
            f"the discovery document names issuer {named!r}, not {issuer!r}: set oidc_issuer to "
            "the provider's issuer exactly"
        )
    https_only = urlparse(issuer).scheme == "https"
    urls = {}
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            raise DiscoveryError(f"the discovery document has no {key}")
        parsed = urlparse(value)
        allowed = ("https",) if https_only else ("http", "https")
        if parsed.scheme not in allowed or not parsed.netloc:
            raise DiscoveryError(f"{key} {value!r} is not an absolute {'/'.join(allowed)} URL")
        urls[key] = value
    return Endpoints(
        authorize_url=urls["authorization_endpoint"],
        token_url=urls["token_endpoint"],
        userdata_url=urls["userinfo_endpoint"],
    )


def unavailable() -> web.HTTPError:
    """The 503 a login gets while the provider's endpoints are unknown."""
    exc = web.HTTPError(503, "OpenID Connect discovery failed")
    exc.jupyterhub_message = (
        "The login provider cannot be reached or is misconfigured, so logins are not possible "
        "right now. The hub's administrators can see why in the hub log."
    )
    return exc


class DiscoveringLoginHandler(OAuthLoginHandler):
    """The OAuth login redirect, once the provider's endpoints are known."""

    async def get(self):
        try:
            await self.authenticator.resolve_oidc_endpoints()
        except DiscoveryError:
            raise unavailable() from None
        return super().get()


class OIDCDiscovery(Configurable):
    """The OIDC discovery feature: :attr:`oidc_issuer`, a mixin for oauthenticator's generic
    OAuth2 authenticator (in :class:`~.authenticator.UserlistOAuthenticator`)."""

    oidc_issuer = Unicode(
        "",
        help="""
        The issuer URL of an OpenID Connect provider, e.g.
        ``c.UserlistOAuthenticator.oidc_issuer = "https://idp.example.org/realms/lab"``
        (a Keycloak realm; most others look like ``https://login.example.org``). When set, the
        hub reads ``<issuer>/.well-known/openid-configuration`` at the first login and uses its
        ``authorization_endpoint``, ``token_endpoint`` and ``userinfo_endpoint`` for
        ``authorize_url``, ``token_url`` and ``userdata_url``, unless those are set explicitly.
        The document must name this issuer (a trailing slash aside); for an https issuer every
        endpoint must be https. It is read once per hub process; a failed read is logged and
        retried at the next login, which meanwhile answers 503.
        Providers whose document names a different issuer (e.g. multi-tenant endpoints with
        ``{tenantid}``) need the three URLs set explicitly instead.
        """,
    ).tag(config=True)

    login_handler = DiscoveringLoginHandler

    @validate("oidc_issuer")
    def _validate_oidc_issuer(self, proposal):
        value = proposal["value"]
        if not value:
            return value
        try:
            return check_issuer(value)
        except ValueError as e:
            raise TraitError(f"oidc_issuer: {e}") from None

    def _endpoints_missing(self) -> bool:
        return not (self.authorize_url and self.token_url and self.userdata_url)

    async def resolve_oidc_endpoints(self) -> None:
        """Fill in empty endpoint URLs from the issuer's discovery document (once).

        Raises :class:`DiscoveryError` (and logs why) when the document cannot be used.
        """
        if not self.oidc_issuer or not self._endpoints_missing():
            return
        lock = self.__dict__.setdefault("_oidc_lock", asyncio.Lock())
        async with lock:
            if not self._endpoints_missing():
                return  # another login did it while we waited
            url = discovery_url(self.oidc_issuer)
            try:
                endpoints = endpoints_from_document(self.oidc_issuer, await self._fetch(url))
            except DiscoveryError as e:
                self.log.error("OpenID Connect discovery from %s failed: %s", url, e)
                raise
            self.authorize_url = self.authorize_url or endpoints.authorize_url
            self.token_url = self.token_url or endpoints.token_url
            self.userdata_url = self.userdata_url or endpoints.userdata_url
            self.log.info(
                "OpenID Connect provider %s: authorize %s, token %s, userinfo %s",
                self.oidc_issuer,
                self.authorize_url,
                self.token_url,
                self.userdata_url,
            )

    async def _fetch(self, url: str) -> object:
        kwargs = {"request_timeout": FETCH_TIMEOUT, "connect_timeout": FETCH_TIMEOUT}
        kwargs.update(self.http_request_kwargs)
        kwargs["headers"] = {"Accept": "application/json"}
        try:
            return await self.httpfetch(url, label="reading the OpenID Connect discovery", **kwargs)
        except HTTPClientError as e:
            raise DiscoveryError(f"HTTP {e.code}") from None
        except (OSError, ValueError) as e:  # connection errors; a body that is not JSON
            raise DiscoveryError(f"{type(e).__name__}: {e}") from None

    async def get_token_info(self, handler, params):
        # the callback may reach a hub that restarted after it sent the user to the provider
        await self._resolve_or_503()
        return await super().get_token_info(handler, params)

    async def token_to_user(self, token_info):
        await self._resolve_or_503()
        return await super().token_to_user(token_info)

    async def _resolve_or_503(self) -> None:
        try:
            await self.resolve_oidc_endpoints()
        except DiscoveryError:
            raise unavailable() from None
