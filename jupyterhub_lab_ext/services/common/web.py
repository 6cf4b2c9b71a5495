"""The HTTP side of a service: TLS, its routes and tornado application, listening and closing.

Pure builders that take what they need as arguments; :class:`~.app.ServiceApp` calls them
with its traits. Every service serves, under its prefix: the index (who you are, the
endpoints), ``health``, ``metrics``, ``api/openapi.yaml``, the OAuth callback when the hub
gave it an OAuth client, then its own handlers; anything else is a JSON 404.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable
from importlib import resources
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.auth import NotFoundHandler, OAuthCallbackHandler
from jupyterhub_lab_ext.services.common.handlers import (
    HealthHandler,
    IndexHandler,
    MetricsHandler,
    OpenAPIHandler,
)
from jupyterhub_lab_ext.services.common.lifecycle import StartupError, bind_failure, port_holders
from jupyterhub_lab_ext.util.secretfile import read_or_create_secret

#: routes of every service, relative to its prefix (before the service's own)
STANDARD_HANDLERS: list[tuple] = [
    ("health", HealthHandler),
    ("metrics", MetricsHandler),
    ("api/openapi.yaml", OpenAPIHandler),
]
#: bytes of a refused request body read (and thrown away) before the connection is closed
DRAIN_LIMIT = 128 << 20
#: seconds a request body may take to arrive
BODY_TIMEOUT = 60
#: seconds open connections get to finish at shutdown
CLOSE_TIMEOUT = 2
#: paths logged at DEBUG level while they succeed (probes scrape them all day)
QUIET_PATHS = ("/health", "/metrics")


def tls_context(
    keyfile: str, certfile: str, client_ca: str, *, server: bool = False
) -> ssl.SSLContext | None:
    """TLS context for JupyterHub's internal SSL (None without key and certificate).

    ``server=False``: for Hub API calls (verifies the hub with the CA, presents our
    certificate). ``server=True``: for serving (requires a client certificate by the CA).
    """
    if not (keyfile and certfile):
        return None
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    ctx = ssl.create_default_context(purpose, cafile=client_ca or None)
    ctx.load_cert_chain(certfile, keyfile)
    if server and client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def openapi_document(package: str | None) -> str | None:
    """The ``openapi.yaml`` shipped in ``package`` (None: no package, or none shipped)."""
    if not package:
        return None
    try:
        return resources.files(package).joinpath("openapi.yaml").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return None


def cookie_secret(path: str, log: logging.Logger | logging.LoggerAdapter) -> bytes:
    """The secret signing the browser OAuth cookie: kept in ``path`` (see
    :func:`~jupyterhub_lab_ext.util.secretfile.read_or_create_secret`), or random per start
    when ``path`` is empty or unusable (browsers then log in again through the hub)."""
    if not path:
        return secrets.token_bytes(32)
    try:
        return read_or_create_secret(path, log=log).encode()
    except OSError as e:
        log.warning("Cookie secret file %s unusable (%s): random secret", path, e)
        return secrets.token_bytes(32)


def service_routes(prefix: str, handlers: list[tuple], *, oauth_callback: bool) -> list[tuple]:
    """Tornado routes: the index, the OAuth callback (with ``oauth_callback``), then
    ``handlers`` (``(path relative to prefix, handler[, kwargs])``)."""
    routes: list[tuple] = [(prefix.rstrip("/") + "/?", IndexHandler)]
    if oauth_callback:
        routes.append((prefix + "oauth_callback", OAuthCallbackHandler))
    for path, handler, *kwargs in handlers:
        routes.append((prefix + path, handler, *kwargs))
    return routes


def request_logger(
    log: logging.Logger | logging.LoggerAdapter,
) -> Callable[[web.RequestHandler], None]:
    """The access log: status, method, path (never the query string: it could hold a token)."""

    def log_request(handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = log.info if status < 400 else log.warning
        if handler.request.path.endswith(QUIET_PATHS) and status < 400:
            level = log.debug
        level(
            "%s %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )

    return log_request


def make_web_app(
    prefix: str,
    handlers: list[tuple],
    *,
    oauth_callback: bool,
    openapi_package: str | None,
    log: logging.Logger | logging.LoggerAdapter,
    **settings,
) -> web.Application:
    """The tornado application of a service: ``handlers`` under ``prefix`` (see
    :func:`service_routes`; a service passes :data:`STANDARD_HANDLERS` and its own), a JSON 404
    for the rest, the access log to ``log``.

    ``settings`` are what the handlers read: ``service_app``, ``hub``, ``hub_auth``,
    ``service_name`` and ``cookie_secret``; the endpoint list and the OpenAPI document of
    ``openapi_package`` are added here.
    """
    return web.Application(
        service_routes(prefix, handlers, oauth_callback=oauth_callback),
        default_handler_class=NotFoundHandler,
        log_function=request_logger(log),
        endpoints=[prefix + path for path, *_ in handlers],
        openapi_document=openapi_document(openapi_package),
        **settings,
    )


def listen(server: HTTPServer, host: str, port: int) -> None:
    """``server.listen``; a port that cannot be had is a :class:`StartupError` naming its holder."""
    try:
        server.listen(port, host)
    except OSError as e:
        raise StartupError(bind_failure(host, port, e, port_holders(port))) from None


def serve(app: web.Application, url: str, tls: ssl.SSLContext | None) -> HTTPServer:
    """An HTTP server for ``app`` listening at ``url`` (``https`` needs ``tls``)."""
    bind = urlparse(url)
    https = bind.scheme == "https"
    if https and tls is None:
        raise ValueError(f"{url} is https but no ssl_keyfile/certfile")
    server = HTTPServer(
        app,
        xheaders=True,
        ssl_options=tls if https else None,
        # every handler streams and keeps at most max_body_size; this bounds how much of a
        # refused body is read and thrown away
        max_body_size=DRAIN_LIMIT,
        body_timeout=BODY_TIMEOUT,
    )
    listen(server, bind.hostname or "127.0.0.1", bind.port or (443 if https else 80))
    return server


async def close_connections(server: HTTPServer) -> None:
    """Give open connections :data:`CLOSE_TIMEOUT` seconds to finish (after ``server.stop()``)."""
    try:
        await asyncio.wait_for(server.close_all_connections(), CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        pass
