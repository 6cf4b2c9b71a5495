"""``jupyterhub-lab-idle-culler``: the idle-culler hub service (traitlets Application).

Drop-in for jupyterhub-idle-culler: the same flags with the same meaning (``--timeout``,
``--cull-every``, ``--concurrency``, ``--max-age``, ``--cull-users``, ``--remove-named-servers``,
``--cull-admin-users``, ``--api-page-size``, ``--url``, ``--cull-default-servers``,
``--cull-named-servers``), plus per-group/per-user timeouts, stuck-spawn culling, kernel-aware
idleness, warnings with a webhook, dry runs, a hub latency budget for its stops, and a REST API
when the service has a ``url``. ``hubconfig.enable_idle_culler`` adds it to a hub config.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from traitlets import Bool, Dict, Float, Int, List, Unicode, default
from traitlets.config import Config, catch_config_error

from jupyterhub_lab_ext.services.common.app import ServiceApp
from jupyterhub_lab_ext.services.common.hubapi import HubAPI
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.dashboard import dashboard_handlers
from jupyterhub_lab_ext.services.culler.engine import Culler, utcnow
from jupyterhub_lab_ext.services.culler.handlers import (
    ExemptionHandler,
    PassesHandler,
    StatusHandler,
    status,
)
from jupyterhub_lab_ext.services.culler.history import PassHistory
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.options import LatencyBudget, upstream_options
from jupyterhub_lab_ext.services.culler.overview import ServerOverview
from jupyterhub_lab_ext.services.culler.schedule import PassTimer
from jupyterhub_lab_ext.services.culler.self_view import SelfUserHandler
from jupyterhub_lab_ext.services.culler.store import CullerStore, metadata
from jupyterhub_lab_ext.services.culler.throttle import LatencyProbe, Throttle
from jupyterhub_lab_ext.services.culler.webhook import WebhookSender

#: the options ``GET api/status`` shows (plus whether a webhook is set, not its URL)
STATUS_OPTIONS = """timeout cull_every concurrency hub_latency_budget max_age cull_users
user_delete_timeout cull_admin_users remove_named_servers cull_default_servers cull_named_servers
api_page_size group_timeouts user_timeouts exempt_groups exempt_users pending_timeout kernel_aware
kernel_busy_ceiling warning_period dry_run""".split()


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
        "hub-latency-budget": "LabIdleCuller.hub_latency_budget",
        "max-age": "LabIdleCuller.max_age",
        "cull-users": "LabIdleCuller.cull_users",
        "remove-named-servers": "LabIdleCuller.remove_named_servers",
        "cull-admin-users": "LabIdleCuller.cull_admin_users",
        "cull-default-servers": "LabIdleCuller.cull_default_servers",
        "cull-named-servers": "LabIdleCuller.cull_named_servers",
        "api-page-size": "LabIdleCuller.api_page_size",
        "pending-timeout": "LabIdleCuller.pending_timeout",
        "user-delete-timeout": "LabIdleCuller.user_delete_timeout",
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
        min=1,
        help="""Idle seconds before a server is stopped (and, with ``cull_users``, a user deleted).

        Same as jupyterhub-idle-culler's ``--timeout``. Keep it above the hub's
        ``last_activity_interval`` (300 s by default) plus the 30 s websocket ping.
        """,
    ).tag(config=True)

    cull_every = Int(
        min=1,
        help="""Seconds between passes. Default: ``timeout // 2`` (jupyterhub-idle-culler's too).
        Passes never overlap: a long pass delays the next one.""",
    ).tag(config=True)

    @default("cull_every")
    def _default_cull_every(self):
        return max(1, self.timeout // 2)

    def load_config_file(self, filename, path=None):
        super().load_config_file(filename, path)
        self._adopt_upstream_config()

    def _adopt_upstream_config(self):
        """Accept a jupyterhub-idle-culler config file (``c.IdleCuller.<option>``) as it is."""
        upstream = self.config.get("IdleCuller")
        if not upstream:
            return
        ours = self.config.get("LabIdleCuller", {})
        adopted, unknown = upstream_options(upstream, ours, self.class_traits(config=True))
        for key in unknown:
            self.log.warning("Ignoring c.IdleCuller.%s: no such option here", key)
        if adopted:
            self.log.info("Using c.IdleCuller.%s as c.LabIdleCuller options", ", ".join(adopted))
            self.update_config(Config({"LabIdleCuller": adopted}))

    @catch_config_error  # a bad value in the config file: one error line and exit status 1
    def initialize(self, argv=None):
        super().initialize(argv)
        # the culler's modules and the hub API client log like the app (format, level)
        services = logging.getLogger("jupyterhub_lab_ext.services")
        services.handlers, services.propagate = list(self.log.handlers), False
        services.setLevel(self.log.level)
        # on_stop runs even when setup failed
        self.culler = self.timer = self.probe_hub = None

    concurrency = Int(
        10,
        min=1,
        help="""Hub API requests in flight at most (stops, listings, kernel checks), and the
        most stops and user deletions in flight (see ``hub_latency_budget``). Unlike
        jupyterhub-idle-culler, stops of different users really run in parallel.""",
    ).tag(config=True)

    hub_latency_budget = LatencyBudget(
        25.0,
        min=0.0,
        help="""How much slower (milliseconds, median) the hub may answer others while a pass
        stops servers; ``0`` or ``off``: no budget, always ``concurrency`` stops in flight.

        Every stop costs the hub CPU time, so a pass's speed and the hub's responsiveness
        trade against each other. With a budget, the culler times the hub's cheapest request
        (``GET /``, its own client) a few times before a pass for the idle median and every
        0.2 s during it, and keeps the median's increase within the budget: from one stop in
        flight it adds one per window of three answers within the budget (never above
        ``concurrency``) and halves on a window over it, or at once on a single answer more
        than twice the budget slower. It starts the stops a stop's recent duration over that
        number apart, not at once.
        Metrics ``concurrency`` and ``hub_latency_seconds`` show what it does.""",
    ).tag(config=True)

    max_age = Int(
        0,
        min=0,
        help="""Stop servers older than this many seconds even if active (0: off). For users
        (``cull_users``): their age since creation.""",
    ).tag(config=True)

    cull_users = Bool(
        False,
        help="""Also delete hub users that have no running server and have been inactive for
        ``user_delete_timeout`` (default ``timeout``). Needs the ``delete:users`` scope.""",
    ).tag(config=True)

    user_delete_timeout = Int(
        0,
        min=0,
        help="""Idle seconds before a user without servers is deleted (``cull_users``). 0: the
        server timeout that applies to the user. Lets one culler keep servers short and
        accounts long (e.g. servers 1 h, users 90 days). Not to be confused with
        ``user_timeouts``, the per-user idle timeouts of servers.""",
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
        0,
        min=0,
        help="Users per ``GET /users`` page (0: the hub's default, 50; the hub caps it at 200).",
    ).tag(config=True)

    group_timeouts = Dict(
        value_trait=Float(),
        help="""Idle timeout per hub group, seconds; 0 exempts the group.

        Example: ``{"teachers": 8 * 3600, "students": 3600}``. A user in several groups gets the
        longest. Needs ``read:users:groups`` (or ``read:groups`` and ``list:groups``).""",
    ).tag(config=True)

    user_timeouts = Dict(
        value_trait=Float(),
        help="""Idle timeout of servers per user name, seconds (0 exempts); beats groups.

        Example: ``{"alice": 24 * 3600}``. (Deleting idle users is ``user_delete_timeout``.)""",
    ).tag(config=True)

    exempt_groups = List(Unicode(), help="Hub groups whose servers are never culled.").tag(
        config=True
    )
    exempt_users = List(Unicode(), help="User names whose servers are never culled.").tag(
        config=True
    )

    pending_timeout = Int(
        0,
        min=0,
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
        min=0,
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
        return [
            ("api/status", StatusHandler),
            (r"api/users/([^/]+)", SelfUserHandler),
            ("api/passes", PassesHandler),
            (r"api/exemptions/([^/]+)", ExemptionHandler),
            *dashboard_handlers(),
        ]

    def make_policy(self) -> P.Policy:
        # every field of the policy is the option of the same name
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(P.Policy)}
        values["user_delete_timeout"] = self.user_delete_timeout or None  # 0: the server's
        values["group_timeouts"] = dict(self.group_timeouts)
        values["user_timeouts"] = dict(self.user_timeouts)
        values["exempt_groups"] = frozenset(self.exempt_groups)
        values["exempt_users"] = frozenset(self.exempt_users)
        return P.Policy(**values)

    async def setup(self):
        self.hub_concurrency = self.concurrency
        if self.ssl_enabled and not (self.ssl_keyfile and self.ssl_certfile):
            loc = self.internal_certs_location
            self.ssl_keyfile = os.path.join(loc, "hub-internal", "hub-internal.key")
            self.ssl_certfile = os.path.join(loc, "hub-internal", "hub-internal.crt")
            self.ssl_client_ca = self.ssl_client_ca or os.path.join(loc, "hub-ca", "hub-ca.crt")
        await super().setup()
        self.pass_history = PassHistory(self.store, clock=utcnow)
        metrics = CullerMetrics(self.registry, self.metrics_namespace)
        self.culler = Culler(
            self.hub,
            self.make_policy(),
            store=CullerStore(self.store),
            metrics=metrics,
            webhook=WebhookSender(self.webhook_url, dict(self.webhook_headers))
            if self.webhook_url
            else None,
            throttle=self.make_throttle(metrics),
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

    def make_throttle(self, metrics: CullerMetrics) -> Throttle:
        """The stops-in-flight limit; with a budget, its probe gets a Hub API client of its own."""
        budget = self.hub_latency_budget / 1000
        if budget <= 0:
            return Throttle(self.concurrency, metrics=metrics)
        self.probe_hub = HubAPI(
            self.url or None,
            self.api_token,
            concurrency=1,
            request_timeout=min(10.0, self.hub_request_timeout),
            retries=0,
            on_call=self.hub_metrics.observe,
            ssl_options=self.ssl_context(),
        )
        probe = LatencyProbe(self.probe_hub)
        return Throttle(self.concurrency, budget=budget, probe=probe, metrics=metrics)

    async def on_start(self):
        self.log.info(
            "Culling servers idle > %ss every %ss (concurrency %s, hub latency budget %s%s)",
            self.timeout,
            self.cull_every,
            self.concurrency,
            f"{self.hub_latency_budget:g} ms" if self.hub_latency_budget else "off",
            ", DRY RUN" if self.dry_run else "",
        )
        self.timer = PassTimer(self.culler, self.cull_every, dry_run=self.dry_run)
        self.timer.start()

    async def on_stop(self):
        if self.timer is not None:
            await self.timer.stop(self.shutdown_timeout * 0.8)
        if self.culler is not None and self.culler.webhook is not None:
            self.culler.webhook.close()
        if self.probe_hub is not None:
            await self.probe_hub.aclose()

    async def health(self):
        report = await super().health()
        last = self.culler.last_report
        report["last_pass"] = last.finished.isoformat() if last and last.finished else None
        return report

    def status(self) -> dict:
        """``GET api/status``: the options, the last pass, whether one runs, when the next."""
        return status(self, self.culler, self.timer, STATUS_OPTIONS)


#: the name the configuration reference uses
IdleCullerApp = LabIdleCuller

main = LabIdleCuller.main

if __name__ == "__main__":
    main()
