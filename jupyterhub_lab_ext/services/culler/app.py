"""``jupyterhub-lab-idle-culler``: the idle-culler hub service (traitlets Application).

Drop-in for jupyterhub-idle-culler: the same flags with the same meaning (``--timeout``,
``--cull-every``, ``--concurrency``, ``--max-age``, ``--cull-users``, ``--remove-named-servers``,
``--cull-admin-users``, ``--api-page-size``, ``--url``, ``--cull-default-servers``,
``--cull-named-servers``), plus per-group/per-user timeouts, stuck-spawn culling, kernel-aware
idleness, warnings with a webhook, dry runs and a REST API when the service has a ``url``.

Example ``jupyterhub_config.py``::

    c.JupyterHub.services = [{
        "name": "idle-culler",
        "url": "http://127.0.0.1:10101",
        "command": [sys.executable, "-m", "jupyterhub_lab_ext.services.culler", "--timeout=3600"],
    }]
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from traitlets import Bool, Dict, Float, Int, List, Unicode, default, validate
from traitlets.config import Config

from jupyterhub_lab_ext.services.common.app import ServiceApp
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.dashboard import dashboard_handlers
from jupyterhub_lab_ext.services.culler.engine import Culler, WebhookSender, utcnow
from jupyterhub_lab_ext.services.culler.history import PassHistory
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.overview import ServerOverview
from jupyterhub_lab_ext.services.culler.store import CullerStore, metadata


class LabIdleCuller(ServiceApp):
    name = "jupyterhub-lab-idle-culler"
    description = (
        "Stop idle single-user servers (and optionally delete idle users) of a JupyterHub."
    )
    service_default_name = "idle-culler"
    config_file_name = "jupyterhub_lab_idle_culler_config.py"
    metrics_namespace = "jhle_culler"
    openapi_package = "jupyterhub_lab_ext.services.culler"
    dashboard_path = "dashboard"

    aliases = {
        **ServiceApp.base_aliases,
        "timeout": "LabIdleCuller.timeout",
        "cull-every": "LabIdleCuller.cull_every",
        "concurrency": "LabIdleCuller.concurrency",
        "max-age": "LabIdleCuller.max_age",
        "cull-users": "LabIdleCuller.cull_users",
        "remove-named-servers": "LabIdleCuller.remove_named_servers",
        "cull-admin-users": "LabIdleCuller.cull_admin_users",
        "cull-default-servers": "LabIdleCuller.cull_default_servers",
        "cull-named-servers": "LabIdleCuller.cull_named_servers",
        "api-page-size": "LabIdleCuller.api_page_size",
        "pending-timeout": "LabIdleCuller.pending_timeout",
        "user-timeout": "LabIdleCuller.user_timeout",
        "warning-period": "LabIdleCuller.warning_period",
        "webhook-url": "LabIdleCuller.webhook_url",
        "kernel-aware": "LabIdleCuller.kernel_aware",
        "dry-run": "LabIdleCuller.dry_run",
        "ssl-enabled": "LabIdleCuller.ssl_enabled",
        "internal-certs-location": "LabIdleCuller.internal_certs_location",
    }
    flags = {
        **ServiceApp.base_flags,
        "dry-run": (
            {"LabIdleCuller": {"dry_run": True}},
            "Report what would be culled; change nothing.",
        ),
    }

    timeout = Int(
        600,
        help="""Idle seconds before a server is stopped (and, with ``cull_users``, a user deleted).

        Same as jupyterhub-idle-culler's ``--timeout``. Keep it above the hub's
        ``last_activity_interval`` (300 s by default) plus the 30 s websocket ping.
        """,
    ).tag(config=True)

    cull_every = Int(
        help="""Seconds between passes. Default: ``timeout // 2`` (jupyterhub-idle-culler's too).
        Passes never overlap: a long pass delays the next one.""",
    ).tag(config=True)

    @default("cull_every")
    def _default_cull_every(self):
        return max(1, self.timeout // 2)

    @validate("cull_every")
    def _positive_every(self, proposal):
        if proposal.value <= 0:
            raise ValueError("LabIdleCuller.cull_every must be > 0")
        return proposal.value

    def load_config_file(self, filename, path=None):
        super().load_config_file(filename, path)
        self._adopt_upstream_config()

    def _adopt_upstream_config(self):
        """Accept a jupyterhub-idle-culler config file (``c.IdleCuller.<option>``) as it is."""
        legacy = self.config.get("IdleCuller")
        if not legacy:
            return
        ours = self.config.get("LabIdleCuller", {})
        known = self.class_traits(config=True)
        adopted = {}
        for key, value in legacy.items():
            if key in ("config_file", "generate_config"):
                continue
            if key not in known:
                self.log.warning("Ignoring c.IdleCuller.%s: no such option here", key)
            elif key not in ours:
                adopted[key] = value
        if adopted:
            self.log.info("Using c.IdleCuller.%s as c.LabIdleCuller options", ", ".join(adopted))
            self.update_config(Config({"LabIdleCuller": adopted}))

    def initialize(self, argv=None):
        super().initialize(argv)
        # traitlets may skip @validate for values loaded from config: check again here
        problems = [
            f"LabIdleCuller.{name} must be > 0, not {getattr(self, name)}"
            for name in ("cull_every", "concurrency", "timeout")
            if getattr(self, name) <= 0
        ]
        problems += [
            f"LabIdleCuller.{name} must be >= 0, not {getattr(self, name)}"
            for name in ("max_age", "api_page_size", "pending_timeout", "warning_period")
            if getattr(self, name) < 0
        ]
        if problems:
            for p in problems:
                self.log.critical(p)
            self.exit(1)
        self.culler = None
        self._loop_task = None  # on_stop runs even when setup failed

    concurrency = Int(
        10,
        help="""Hub API requests in flight at most (stops, listings, kernel checks). Unlike
        jupyterhub-idle-culler, stops of different users really run in parallel.""",
    ).tag(config=True)

    max_age = Int(
        0,
        help="""Stop servers older than this many seconds even if active (0: off). For users
        (``cull_users``): their age since creation.""",
    ).tag(config=True)

    cull_users = Bool(
        False,
        help="""Also delete hub users that have no running server and have been inactive for
        ``user_timeout`` (default ``timeout``). Needs the ``delete:users`` scope.""",
    ).tag(config=True)

    user_timeout = Int(
        0,
        help="""Idle seconds before a user without servers is deleted (``cull_users``). 0: the
        server timeout that applies to the user. Lets one culler keep servers short and
        accounts long (e.g. servers 1 h, users 90 days).""",
    ).tag(config=True)

    cull_admin_users = Bool(
        True,
        help="With ``cull_users``, also delete admin users (jupyterhub-idle-culler's default).",
    ).tag(config=True)

    remove_named_servers = Bool(
        False, help='Delete culled named servers (``{"remove": true}``), not just stop them.'
    ).tag(config=True)

    cull_default_servers = Bool(True, help="Cull default (unnamed) servers.").tag(config=True)
    cull_named_servers = Bool(True, help="Cull named servers.").tag(config=True)

    api_page_size = Int(
        0, help="Users per ``GET /users`` page (0: the hub's default, 50; the hub caps it at 200)."
    ).tag(config=True)

    group_timeouts = Dict(
        value_trait=Float(),
        help="""Idle timeout per hub group, seconds; 0 exempts the group.

        Example: ``{"teachers": 8 * 3600, "students": 3600}``. A user in several groups gets the
        longest. Needs ``read:users:groups`` (or ``read:groups`` and ``list:groups``).""",
    ).tag(config=True)

    user_timeouts = Dict(
        value_trait=Float(), help="Idle timeout per user name, seconds (0 exempts); beats groups."
    ).tag(config=True)

    exempt_groups = List(Unicode(), help="Hub groups whose servers are never culled.").tag(
        config=True
    )
    exempt_users = List(Unicode(), help="User names whose servers are never culled.").tag(
        config=True
    )

    pending_timeout = Int(
        0,
        help="""Stop spawns pending for longer than this many seconds (0: off), and report stops
        pending that long as stuck (``GET api/status``, metric ``stuck_servers``). When on, the
        culler lists ``state=active`` users instead of ``state=ready``.""",
    ).tag(config=True)

    kernel_aware = Bool(
        False,
        help="""Before stopping an idle server, ask it (``GET <server>/api/kernels`` through the
        proxy) whether a kernel is busy; if so keep it until ``kernel_busy_ceiling``. Needs the
        ``access:servers`` scope and ``server_base_url``.""",
    ).tag(config=True)

    kernel_busy_ceiling = Int(
        0, help="Idle seconds after which even a server with a busy kernel is stopped (0: never)."
    ).tag(config=True)

    server_base_url = Unicode(
        help="""Proxy URL the single-user servers are reached at, e.g. ``http://127.0.0.1:8000``
        (for kernel checks). Default: ``$JUPYTERHUB_PUBLIC_URL``.""",
    ).tag(config=True)

    @default("server_base_url")
    def _default_server_base_url(self):
        return os.environ.get("JUPYTERHUB_PUBLIC_URL", "")

    warning_period = Int(
        0,
        help="""Warn this many seconds before a cull (0: off). The time left shows in
        ``GET api/users/{name}``; with ``webhook_url`` a JSON POST is sent. A server is culled no
        earlier than this long after its warning. Keep it above ``cull_every``.""",
    ).tag(config=True)

    webhook_url = Unicode(
        "", help="URL that gets a JSON POST (``event: cull-warning``) when a server is warned."
    ).tag(config=True)

    webhook_headers = Dict(
        value_trait=Unicode(), help="Extra headers for the webhook POST (e.g. a shared secret)."
    ).tag(config=True)

    dry_run = Bool(
        False, help="Report what would be culled (and log it); stop, warn and delete nothing."
    ).tag(config=True)

    ssl_enabled = Bool(
        False,
        help="""jupyterhub-idle-culler's switch for internal SSL: when no
        ``$JUPYTERHUB_SSL_*`` files are given, use ``hub-internal/hub-internal.{key,crt}`` and
        ``hub-ca/hub-ca.crt`` under ``internal_certs_location``. (A managed service gets the
        files from the hub and needs neither.)""",
    ).tag(config=True)

    internal_certs_location = Unicode(
        "internal-ssl", help="Where the hub keeps its internal SSL certificates (``ssl_enabled``)."
    ).tag(config=True)

    admin_scope = Unicode(
        "custom:idle-culler:admin",
        help="""Scope a token needs (with read access) to run passes and change exemptions.

        The hub-level ``admin:servers`` (held by the built-in admin role) implies it.
        ``enable_idle_culler`` declares it in ``c.JupyterHub.custom_scopes``; grant it to
        people who are not hub admins with a role.""",
    ).tag(config=True)

    report_limit = Int(
        1000, help="Entries kept per list in a pass report (counts stay exact)."
    ).tag(config=True)

    @default("hub_concurrency")
    def _default_hub_concurrency(self):
        return self.concurrency

    # -- wiring ----------------------------------------------------------------------------
    def metadata(self):
        return metadata

    def make_handlers(self):
        from jupyterhub_lab_ext.services.culler.handlers import (
            ExemptionHandler,
            PassesHandler,
            StatusHandler,
        )
        from jupyterhub_lab_ext.services.culler.self_view import SelfUserHandler

        return [
            ("api/status", StatusHandler),
            (r"api/users/([^/]+)", SelfUserHandler),
            ("api/passes", PassesHandler),
            (r"api/exemptions/([^/]+)", ExemptionHandler),
            *dashboard_handlers(),
        ]

    def make_policy(self) -> P.Policy:
        return P.Policy(
            timeout=self.timeout,
            max_age=self.max_age,
            cull_default_servers=self.cull_default_servers,
            cull_named_servers=self.cull_named_servers,
            cull_users=self.cull_users,
            user_timeout=self.user_timeout or None,
            cull_admin_users=self.cull_admin_users,
            pending_timeout=self.pending_timeout,
            group_timeouts=dict(self.group_timeouts),
            user_timeouts=dict(self.user_timeouts),
            exempt_groups=frozenset(self.exempt_groups),
            exempt_users=frozenset(self.exempt_users),
            kernel_aware=self.kernel_aware,
            kernel_busy_ceiling=self.kernel_busy_ceiling,
            warning_period=self.warning_period,
        )

    async def setup(self):
        self.hub_concurrency = self.concurrency
        if self.ssl_enabled and not (self.ssl_keyfile and self.ssl_certfile):
            loc = self.internal_certs_location
            self.ssl_keyfile = os.path.join(loc, "hub-internal", "hub-internal.key")
            self.ssl_certfile = os.path.join(loc, "hub-internal", "hub-internal.crt")
            self.ssl_client_ca = self.ssl_client_ca or os.path.join(loc, "hub-ca", "hub-ca.crt")
        await super().setup()
        self.pass_history = PassHistory(self.store, clock=utcnow)
        self.culler = Culler(
            self.hub,
            self.make_policy(),
            store=CullerStore(self.store),
            metrics=CullerMetrics(self.registry, self.metrics_namespace),
            webhook=WebhookSender(self.webhook_url, dict(self.webhook_headers))
            if self.webhook_url
            else None,
            clock=utcnow,
            concurrency=self.concurrency,
            page_size=self.api_page_size,
            remove_named_servers=self.remove_named_servers,
            server_base_url=self.server_base_url,
            report_limit=self.report_limit,
            service_name=self.service_name,
            on_pass=self.pass_history.record,
        )
        self.server_overview = ServerOverview(self.culler)
        await self.culler.load()
        self.next_pass_at = None
        self._loop_task = None

    async def on_start(self):
        self.log.info(
            "Culling servers idle > %ss every %ss (concurrency %s%s)",
            self.timeout,
            self.cull_every,
            self.concurrency,
            ", DRY RUN" if self.dry_run else "",
        )
        self._loop_task = asyncio.ensure_future(self._loop())

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.culler.run_pass(dry_run=self.dry_run, trigger="timer")
            except Exception:
                self.log.exception("Culling pass crashed")
            delay = max(0.0, self.cull_every - (loop.time() - started))
            self.next_pass_at = utcnow() + timedelta(seconds=delay)
            await asyncio.sleep(delay)

    async def on_stop(self):
        if self._loop_task is not None:
            if self.culler.busy:
                self.log.info("Waiting for the running pass to finish")
                try:
                    # let the running pass finish, then stop the loop between passes
                    await asyncio.wait_for(self.culler._lock.acquire(), self.shutdown_timeout * 0.8)
                    self.culler._lock.release()
                except asyncio.TimeoutError:
                    pass
            self._loop_task.cancel()
            try:
                await self._loop_task
            except (asyncio.CancelledError, Exception):
                pass
        if self.culler is not None and self.culler.webhook is not None:
            self.culler.webhook.close()

    async def health(self):
        report = await super().health()
        last = self.culler.last_report
        report["last_pass"] = last.finished.isoformat() if last and last.finished else None
        return report

    def status(self) -> dict:
        last = self.culler.last_report
        running = self.culler.running
        return {
            "service": self.service_name,
            "version": self.version,
            "config": {
                "timeout": self.timeout,
                "cull_every": self.cull_every,
                "concurrency": self.concurrency,
                "max_age": self.max_age,
                "cull_users": self.cull_users,
                "user_timeout": self.user_timeout,
                "cull_admin_users": self.cull_admin_users,
                "remove_named_servers": self.remove_named_servers,
                "cull_default_servers": self.cull_default_servers,
                "cull_named_servers": self.cull_named_servers,
                "api_page_size": self.api_page_size,
                "group_timeouts": dict(self.group_timeouts),
                "user_timeouts": dict(self.user_timeouts),
                "exempt_groups": list(self.exempt_groups),
                "exempt_users": list(self.exempt_users),
                "pending_timeout": self.pending_timeout,
                "kernel_aware": self.kernel_aware,
                "kernel_busy_ceiling": self.kernel_busy_ceiling,
                "warning_period": self.warning_period,
                "webhook": bool(self.webhook_url),
                "dry_run": self.dry_run,
            },
            "last_pass": None
            if last is None
            else {**last.summary(), "errors": last.lists["errors"], "stuck": last.lists["stuck"]},
            "pass_running": running is not None,
            "next_pass": self.next_pass_at.isoformat() if self.next_pass_at else None,
        }


#: the name the configuration reference uses
IdleCullerApp = LabIdleCuller

main = LabIdleCuller.main

if __name__ == "__main__":
    main()
