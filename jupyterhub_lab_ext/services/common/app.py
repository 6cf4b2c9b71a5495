"""``ServiceApp``: the traitlets Application base of the package's hub services.

A service subclasses it, sets ``name``/``service_default_name``/``config_file_name``, adds its
traits and overrides the hooks ``make_handlers()``, ``metadata()`` (a store to persist),
``on_start()``/``on_stop()`` (background work) and ``health()``.

The base declares the options every service has (config file, the ``JUPYTERHUB_*`` environment
of a managed service, internal SSL, the store, request auth) and wires them: one
:class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI`, a Prometheus registry, the store, the
HTTP side (:mod:`.web`) and the run from start to clean shutdown (:mod:`.runner`,
:mod:`.lifecycle`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, CaselessStrEnum, Float, Int, Unicode, default, validate
from traitlets.config import Application

from jupyterhub_lab_ext import __version__
from jupyterhub_lab_ext.services.common import web as service_web
from jupyterhub_lab_ext.services.common.hubapi import HubAPI
from jupyterhub_lab_ext.services.common.hubhttp import (
    API_TOKEN_ENV,
    API_URL_ENV,
    default_request_timeout,
)
from jupyterhub_lab_ext.services.common.lifecycle import (
    SERVICE_NAME_ENV,
    SERVICE_URL_ENV,
    StartupError,
    watch_hub,
)
from jupyterhub_lab_ext.services.common.metrics import HubAPIMetrics, make_registry
from jupyterhub_lab_ext.services.common.runner import run_service
from jupyterhub_lab_ext.services.common.store import Store

LOG_FORMAT = (
    "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s %(module)s:%(lineno)d] %(message)s"
)


class ServiceApp(Application):
    """Base Application of a JupyterHub service in this package."""

    version = __version__
    #: service name when $JUPYTERHUB_SERVICE_NAME is unset
    service_default_name = "service"
    #: default config file name
    config_file_name = "service_config.py"
    #: metric name prefix
    metrics_namespace = "jhle"
    #: package holding ``openapi.yaml`` (None: none shipped)
    openapi_package: str | None = None
    #: path (relative to the prefix) of the service's HTML page, where the index sends browsers
    dashboard_path: str | None = None

    base_aliases = {
        "config": "ServiceApp.config_file",
        "url": "ServiceApp.url",
        "db-url": "ServiceApp.db_url",
        "log-level": "Application.log_level",
    }
    base_flags = {
        "generate-config": (
            {"ServiceApp": {"generate_config": True}},
            "Print a config file with every option and its help, then exit.",
        ),
        "debug": ({"Application": {"log_level": 10}}, "Log at DEBUG level."),
    }

    config_file = Unicode(
        help="""Python config file to load (``c.<Class>.<trait> = ...``).

        Example: ``--config=/etc/jupyterhub/culler_config.py``. Command-line options win over the file.
        """,
    ).tag(config=True)

    @default("config_file")
    def _default_config_file(self):
        return self.config_file_name

    generate_config = Bool(False, help="Print a full config file and exit.").tag(config=True)

    url = Unicode(
        help="""URL of the JupyterHub REST API, e.g. ``http://127.0.0.1:8081/hub/api``.

        Default: ``$JUPYTERHUB_API_URL``, which the hub sets for managed services.
        """,
    ).tag(config=True)

    @default("url")
    def _default_url(self):
        return os.environ.get(API_URL_ENV, "")

    api_token = Unicode(
        help="""Hub API token of this service. Default: ``$JUPYTERHUB_API_TOKEN``. Never logged.""",
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get(API_TOKEN_ENV, "")

    service_name = Unicode(
        help="""Name of this service in the hub (``c.JupyterHub.services[...]["name"]``).

        Default: ``$JUPYTERHUB_SERVICE_NAME``. Read access to the REST API needs the scope
        ``access:services!service=<this name>``.
        """,
    ).tag(config=True)

    @default("service_name")
    def _default_service_name(self):
        return os.environ.get(SERVICE_NAME_ENV) or self.service_default_name

    service_url = Unicode(
        help="""Address to serve the REST API on, e.g. ``http://127.0.0.1:10101``.

        Default: ``$JUPYTERHUB_SERVICE_URL`` (set by the hub when the service entry has a ``url``).
        Empty: no HTTP server; the service only works in the background.
        """,
    ).tag(config=True)

    @default("service_url")
    def _default_service_url(self):
        return os.environ.get(SERVICE_URL_ENV, "")

    service_prefix = Unicode(
        help="""URL prefix the proxy routes to this service. Default: ``$JUPYTERHUB_SERVICE_PREFIX``
        or ``/services/<name>/``.""",
    ).tag(config=True)

    @default("service_prefix")
    def _default_service_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{self.service_name}/"

    @validate("service_prefix")
    def _slashes(self, proposal):
        value = proposal.value or "/"
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    db_url = Unicode(
        help="""Database for the service's persistent state (SQLAlchemy URL).

        Default: ``sqlite:///<service name>.sqlite`` in the working directory. PostgreSQL:
        ``postgresql://user:password@host/db`` (driver psycopg 3).

        A SQLite file is created mode 0600 (its ``-journal``, ``-wal`` and ``-shm`` files too) and
        a missing directory for it 0700; an existing file open to others is set to 0600. The
        service refuses to start (exit status 1) when the file's directory is writable by group
        or others, or owned by an account other than the service's own or root.
        """,
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return f"sqlite:///{self.service_name}.sqlite"

    cookie_secret_file = Unicode(
        "",
        help="""File holding the secret that signs the browser OAuth cookie (created 0600 if
        missing), so browsers stay logged in across restarts of the service.

        Example: ``/var/lib/jupyterhub-services/idle-culler_cookie_secret``. Empty (the
        default), or a file that cannot be written: a random secret per start (browsers go
        through the hub's OAuth again, without a password prompt while logged in to the hub).
        """,
    ).tag(config=True)

    hub_concurrency = Int(
        10, min=1, help="Hub API requests this service keeps in flight at most."
    ).tag(config=True)

    hub_request_timeout = Float(
        help="Seconds per Hub API request attempt. Default: ``$JUPYTERHUB_REQUEST_TIMEOUT`` or 60."
    ).tag(config=True)

    @default("hub_request_timeout")
    def _default_request_timeout(self):
        return default_request_timeout()

    hub_retries = Int(
        4, help="Retries of a Hub API request on connection errors, 5xx and 429."
    ).tag(config=True)

    ssl_keyfile = Unicode(
        help="""Private key for JupyterHub's internal SSL (``c.JupyterHub.internal_ssl``).

        Default: ``$JUPYTERHUB_SSL_KEYFILE``, which the hub sets for managed services. With a key,
        a certificate and a CA, Hub API calls present the client certificate and verify the hub,
        and an ``https`` service URL is served with TLS, requiring client certificates.
        """,
    ).tag(config=True)

    @default("ssl_keyfile")
    def _default_ssl_keyfile(self):
        return os.environ.get("JUPYTERHUB_SSL_KEYFILE", "")

    ssl_certfile = Unicode(
        help="Certificate for internal SSL. Default: ``$JUPYTERHUB_SSL_CERTFILE``."
    ).tag(config=True)

    @default("ssl_certfile")
    def _default_ssl_certfile(self):
        return os.environ.get("JUPYTERHUB_SSL_CERTFILE", "")

    ssl_client_ca = Unicode(
        help="CA bundle that signs the hub's and the proxy's certificates for internal SSL. "
        "Default: ``$JUPYTERHUB_SSL_CLIENT_CA``."
    ).tag(config=True)

    @default("ssl_client_ca")
    def _default_ssl_client_ca(self):
        return os.environ.get("JUPYTERHUB_SSL_CLIENT_CA", "")

    authenticate_metrics = Bool(
        True,
        help="""Require read access (``access:services!service=<name>``) for ``GET metrics``.

        Set False to let an unauthenticated Prometheus scrape the service directly.
        """,
    ).tag(config=True)

    max_body_size = Int(
        64 * 1024,
        help="""Largest request body in bytes. A larger one is refused with 413 before it is
        read (a declared ``Content-Length``) or as soon as it passes the cap (chunked), and the
        connection is closed. No body is read before the caller is authenticated.""",
    ).tag(config=True)

    auth_cache_ttl = Float(
        5.0,
        min=0,
        max=10,
        help="""Seconds an answer of the hub about a token or browser login is reused for reads.

        This is the bound on how long a revoked token, a logged-out browser or a demoted admin
        may still read through this service; changes (every method but GET/HEAD/OPTIONS) are
        always checked with the hub again. At most 10; 0 asks the hub on every request.""",
    ).tag(config=True)

    shutdown_timeout = Float(
        10.0, help="Seconds to let background work finish on SIGTERM before giving up."
    ).tag(config=True)

    exit_with_hub = CaselessStrEnum(
        ["auto", "on", "off"],
        "auto",
        help="""Shut down when the hub process that started this service is gone.

        A hub that crashes (SIGKILL, the OOM killer) cannot stop its managed services. With this
        on, the service checks its parent process every second and, once it has died, logs
        ``the hub (pid N) that started this service is gone`` and shuts down like on SIGTERM
        (exit status 0), so that the hub, started again, starts a fresh service with its new
        config on the same port.

        - ``auto`` (default): on when the process was started as a managed service: the hub set
          ``$JUPYTERHUB_SERVICE_NAME`` and started it in a session of its own;
        - ``on``: watch the parent process whatever started it;
        - ``off``: never (an external service, or a wrapper that outlives the hub on purpose).

        A parent that is pid 1 (systemd, a container's init) is never watched.
        """,
    ).tag(config=True)

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    @default("log_format")
    def _default_log_format(self):
        return LOG_FORMAT

    @default("log_datefmt")
    def _default_log_datefmt(self):
        return "%Y-%m-%d %H:%M:%S"

    # -- lifecycle -------------------------------------------------------------------------
    def initialize(self, argv=None):
        super().initialize(argv)
        if self.generate_config:
            print(self.generate_config_file())
            self.exit(0)
        if self.config_file and os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
            # command line wins over the file
            self.update_config(self.cli_config)
        elif self.config_file and self.config_file != self.config_file_name:
            self.log.critical("Config file %s not found", self.config_file)
            self.exit(1)
        self.registry = make_registry()
        self.hub_metrics = HubAPIMetrics(self.registry, self.metrics_namespace)
        self.hub = None
        self.store = None
        self.hub_auth = None
        self._stop_event = None

    def ssl_context(self, server: bool = False) -> ssl.SSLContext | None:
        """TLS context for internal SSL (see :func:`.web.tls_context`)."""
        return service_web.tls_context(
            self.ssl_keyfile, self.ssl_certfile, self.ssl_client_ca, server=server
        )

    def make_hub(self) -> HubAPI:
        return HubAPI(
            self.url or None,
            self.api_token,
            concurrency=self.hub_concurrency,
            request_timeout=self.hub_request_timeout,
            retries=self.hub_retries,
            token_cache_ttl=self.auth_cache_ttl,
            on_call=self.hub_metrics.observe,
            ssl_options=self.ssl_context(),
        )

    def make_hub_auth(self) -> HubOAuth | None:
        """HubOAuth for browser cookies when the hub gave us an OAuth client; else None."""
        if not (os.environ.get("JUPYTERHUB_CLIENT_ID") and self.api_token and self.url):
            return None
        return HubOAuth(
            api_url=self.url,
            api_token=self.api_token,
            base_url=self.service_prefix,
            cache_max_age=self.auth_cache_ttl,
            allow_token_in_url=False,
            keyfile=self.ssl_keyfile,
            certfile=self.ssl_certfile,
            client_ca=self.ssl_client_ca,
            parent=self,
        )

    # -- hooks of a service ----------------------------------------------------------------
    def metadata(self):
        """Override: a ``sqlalchemy.MetaData`` for the store, or None."""
        return None

    def make_handlers(self) -> list[tuple]:
        """Override: ``[(path relative to the prefix, handler class[, kwargs]), ...]``."""
        return []

    async def on_start(self) -> None:
        """Override: start background work (the HTTP server is already listening)."""

    async def on_stop(self) -> None:
        """Override: stop background work."""

    async def health(self) -> dict:
        """Override to add checks; ``status`` other than ``ok`` answers 503."""
        return {"status": "ok", "service": self.service_name, "version": self.version}

    # -- the HTTP side (see .web) ----------------------------------------------------------
    def _all_handlers(self) -> list[tuple]:
        return [*service_web.STANDARD_HANDLERS, *self.make_handlers()]

    def make_tornado_app(self) -> web.Application:
        return service_web.make_web_app(
            self.service_prefix,
            self._all_handlers(),
            oauth_callback=self.hub_auth is not None,
            openapi_package=self.openapi_package,
            log=self.log,
            service_app=self,
            hub=self.hub,
            hub_auth=self.hub_auth,
            service_name=self.service_name,
            cookie_secret=service_web.cookie_secret(self.cookie_secret_file, self.log),
        )

    def serve(self) -> HTTPServer | None:
        """Listen at ``service_url`` (None: no URL, no HTTP server)."""
        if not self.service_url:
            self.log.info(
                "%s %s running without a REST API (no service URL)", self.name, self.version
            )
            return None
        https = urlparse(self.service_url).scheme == "https"
        tls = self.ssl_context(server=True) if https else None
        server = service_web.serve(self.make_tornado_app(), self.service_url, tls)
        self.log.info(
            "%s %s serving %s at %s", self.name, self.version, self.service_prefix, self.service_url
        )
        return server

    # -- running ---------------------------------------------------------------------------
    async def setup(self) -> None:
        """Create the hub client, the store and the HubOAuth helper (no server, no loop)."""
        if self.hub is None:
            self.hub = self.make_hub()
        md = self.metadata()
        if md is not None and self.store is None:
            self.store = Store(self.db_url, md, log=self.log)
            await self.store.start()
        if self.service_url and self.hub_auth is None:
            self.hub_auth = self.make_hub_auth()

    async def teardown(self) -> None:
        if self.hub is not None:
            await self.hub.aclose()
        if self.store is not None:
            await self.store.close()

    def stop(self) -> None:
        """Ask a running service to shut down (thread-unsafe; call on its loop)."""
        if self._stop_event is not None:
            self._stop_event.set()

    def watch_hub(self) -> asyncio.Task | None:
        """Start watching the hub process per ``exit_with_hub`` (None: not watched)."""
        mode = self.exit_with_hub.lower()
        return watch_hub(mode, service_name=self.service_name, stop=self.stop, log=self.log)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, :meth:`stop`, or the hub that started us is gone."""
        self._stop_event = asyncio.Event()
        await run_service(self, self._stop_event, self.watch_hub())

    def start(self):
        if not self.url:
            self.log.critical("No Hub API URL: pass --url or set JUPYTERHUB_API_URL")
            self.exit(1)
        if not self.api_token:
            self.log.critical("No Hub API token: set JUPYTERHUB_API_TOKEN")
            self.exit(1)
        try:
            asyncio.run(self.run())
        except StartupError as e:
            self.log.critical("%s", e)
            self.exit(1)
        except KeyboardInterrupt:
            pass

    @classmethod
    def main(cls, argv=None):
        """Console-script entry point."""
        app = cls.instance()
        app.initialize(sys.argv[1:] if argv is None else argv)
        app.start()
