"""``jupyterhub-lab-user-limit``: the user-limit hub service.

Caps on running servers (overall, per hub group, per user), seats (how many users may log in),
a first-come-first-served queue when full, and a REST API. The hub asks it before every spawn
through the hub-side hook (``hook.py``); the service starts a queued user's server itself when
a place frees up. Decisions are made in memory, atomically (``ledger.py``), persisted before the
answer (``store.py``) and reconciled with the Hub API at start and periodically
(``background.py``).

Run it as a managed hub service (``hubconfig.enable_user_limit`` adds the entry), or by hand::

    jupyterhub-lab-user-limit --UserLimitApp.max_active_servers=20
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from tornado import web
from traitlets import Bool, Dict, Float, Int, Unicode, default, validate
from traitlets.config import Config

from jupyterhub_lab_ext.services.common.app import ServiceApp
from jupyterhub_lab_ext.services.common.hubapi import HubAPIError
from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.services.user_limit.background import Background, Timing
from jupyterhub_lab_ext.services.user_limit.dashboard import dashboard_handlers, usage_counts
from jupyterhub_lab_ext.services.user_limit.handlers import (
    AdmissionHandler,
    AdmissionsHandler,
    LimitsHandler,
    QueueHandler,
    QueuePageHandler,
    StatusHandler,
)
from jupyterhub_lab_ext.services.user_limit.history import HistorySampler
from jupyterhub_lab_ext.services.user_limit.ledger import Ledger
from jupyterhub_lab_ext.services.user_limit.metrics import UserLimitMetrics
from jupyterhub_lab_ext.services.user_limit.records import Outcome
from jupyterhub_lab_ext.services.user_limit.self_view import SelfUserHandler
from jupyterhub_lab_ext.services.user_limit.store import LimitStore, metadata

SETTINGS_ENV = "JUPYTERHUB_USER_LIMIT_SETTINGS"
HOOK_TOKEN_ENV = "JUPYTERHUB_USER_LIMIT_HOOK_TOKEN"


class UserLimitApp(ServiceApp):
    """Caps, seats, group quotas and a waiting queue for a JupyterHub."""

    name = "jupyterhub-lab-user-limit"
    description = __doc__
    service_default_name = "user-limit"
    config_file_name = "user_limit_config.py"
    metrics_namespace = "jhle_user_limit"
    openapi_package = "jupyterhub_lab_ext.services.user_limit"
    dashboard_path = "dashboard"

    aliases = {
        **ServiceApp.base_aliases,
        "max-active-servers": "UserLimitApp.max_active_servers",
        "max-users": "UserLimitApp.max_users",
        "max-servers-per-user": "UserLimitApp.max_servers_per_user",
    }
    flags = dict(ServiceApp.base_flags)

    max_active_servers = Int(
        0,
        help="""How many servers may run at once on the whole hub (pending spawns included).

        0: no limit. When the hub is full a spawn waits in line (first come, first served) and
        the service starts it when a place frees up. Example: ``c.UserLimitApp.max_active_servers = 40``.
        """,
    ).tag(config=True)

    max_users = Int(
        0,
        help="""Seats: how many distinct users may have an account on the hub and log in.

        0: no limit. Users the hub already knows keep their seats; a new user beyond the cap is
        refused at login with a clear page (needs the hook's ``post_auth_hook``). A seat frees up
        when the user is deleted from the hub. Example: ``c.UserLimitApp.max_users = 100``.
        """,
    ).tag(config=True)

    group_quotas = Dict(
        value_trait=Int(),
        help="""Concurrent servers per hub group, ``{group: count}``.

        A user in several limited groups must fit in each of them. Example:
        ``c.UserLimitApp.group_quotas = {"students": 30, "guests": 5}``.
        """,
    ).tag(config=True)

    max_servers_per_user = Int(
        0,
        help="""How many servers (default + named) one user may run at once. 0: no limit.

        Going over it is refused, not queued: the user must stop one of their servers first.
        """,
    ).tag(config=True)

    exempt_admins = Bool(
        True,
        help="""Hub admins are never queued or refused (their servers still count as usage).""",
    ).tag(config=True)

    hook_token = Unicode(
        help=f"""Shared secret of the hub-side admission hook.

        Only a caller presenting it (``Authorization: token <secret>``) may use
        ``POST/DELETE api/admissions``. Default: ``${HOOK_TOKEN_ENV}``, which
        ``enable_user_limit`` sets for the managed service. Never logged.
        """,
    ).tag(config=True)

    @default("hook_token")
    def _default_hook_token(self):
        return os.environ.get(HOOK_TOKEN_ENV, "")

    admin_scope = Unicode(
        "custom:user-limit:admin",
        help="""Scope a token needs (with read access) for ``PUT api/limits``.

        The hub-level ``admin:servers`` (held by the built-in admin role) implies it.
        ``enable_user_limit`` declares it in ``c.JupyterHub.custom_scopes``; grant it to
        people who are not hub admins with a role.
        """,
    ).tag(config=True)

    start_queued_servers = Bool(
        True,
        help="""Start the server of the first waiter in line when a place frees up.

        Uses ``POST /hub/api/users/<name>/server`` with the options of the queued request, so
        the service's role needs ``start:servers`` (JupyterHub 6) or ``servers``. With False,
        the place is reserved and the waiter's next spawn attempt takes it.
        """,
    ).tag(config=True)

    offer_timeout = Float(
        120.0,
        help="""Seconds a place reserved for the head of the line waits for that user's spawn
        before it goes to the next waiter.""",
    ).tag(config=True)

    reconcile_interval = Float(
        60.0,
        help="""Seconds between reconciliations with the Hub API (running servers, users).

        Places of servers that stopped without telling the service (hub crash, lost hook call)
        are freed at the next one. 0 disables the periodic pass (one still runs at start).
        """,
    ).tag(config=True)

    reconcile_grace = Float(
        10.0,
        help="""Admissions younger than this (seconds before a reconciliation listed the hub)
        are kept even if the hub does not list their server yet.""",
    ).tag(config=True)

    retry_after_per_position = Float(
        30.0,
        help="""Retry-After for queued API spawns: this many seconds per place in line
        (5 s at least, 10 minutes at most).""",
    ).tag(config=True)

    hub_prefix = Unicode(
        help="""URL path prefix of the hub as browsers see it (``c.JupyterHub.base_url``, e.g.
        ``/jupyter/``), for the links of the queue page. Default: ``$JUPYTERHUB_BASE_URL`` or
        ``/``.""",
    ).tag(config=True)

    @default("hub_prefix")
    def _default_hub_prefix(self):
        return os.environ.get("JUPYTERHUB_BASE_URL") or "/"

    @validate("hub_prefix")
    def _hub_prefix_slashes(self, proposal):
        value = proposal.value.strip("/")
        return f"/{value}/" if value else "/"

    history_interval = Float(
        60.0,
        min=1.0,
        help="""Seconds between two samples of the usage (active servers, queue length, seats)
        kept for the dashboard's chart.""",
    ).tag(config=True)

    history_hours = Float(
        24.0,
        min=1.0,
        max=24.0 * 7,
        help="Hours of usage samples kept (older ones are deleted); a day of minutes: 1440 rows.",
    ).tag(config=True)

    housekeeping_interval = Float(2.0, help="Seconds between checks for lapsed reservations.").tag(
        config=True
    )

    # -- setup -----------------------------------------------------------------------------
    def initialize(self, argv=None):
        super().initialize(argv)
        raw = os.environ.get(SETTINGS_ENV)
        if raw:
            # settings from enable_user_limit(); the command line still wins
            try:
                settings = json.loads(raw)
            except ValueError:
                self.log.critical("$%s is not valid JSON", SETTINGS_ENV)
                self.exit(1)
            if not isinstance(settings, dict):
                self.log.critical("$%s must hold a JSON object", SETTINGS_ENV)
                self.exit(1)
            self.update_config(Config({"UserLimitApp": settings}))
            self.update_config(self.cli_config)
        self.ledger = Ledger(self.configured_limits(), time.time)
        self.metrics = UserLimitMetrics(self.registry, self.metrics_namespace, self.ledger)
        self.limit_store: LimitStore | None = None
        self.background: Background | None = None
        self.history: HistorySampler | None = None
        self._history_task: asyncio.Task | None = None
        self._groups_cache: dict[str, tuple[float, frozenset[str], bool]] = {}

    def configured_limits(self) -> policy.Limits:
        return policy.Limits(
            max_active_servers=self.max_active_servers,
            max_users=self.max_users,
            group_quotas=dict(self.group_quotas),
            max_servers_per_user=self.max_servers_per_user,
            exempt_admins=self.exempt_admins,
        )

    def make_handlers(self):
        return [
            ("api/status", StatusHandler),
            ("api/users/([^/]+)", SelfUserHandler),
            ("api/admissions", AdmissionsHandler),
            ("api/admissions/([^/]+)", AdmissionHandler),
            ("api/queue", QueueHandler),
            ("api/limits", LimitsHandler),
            ("queue", QueuePageHandler),
            *dashboard_handlers(),
        ]

    def metadata(self):
        return metadata

    def timing(self) -> Timing:
        return Timing(
            offer_timeout=self.offer_timeout,
            start_queued_servers=self.start_queued_servers,
            reconcile_interval=self.reconcile_interval,
            reconcile_grace=self.reconcile_grace,
            housekeeping_interval=self.housekeeping_interval,
        )

    async def setup(self):
        await super().setup()
        if self.limit_store is None:
            self.limit_store = LimitStore(self.store)
            saved = await self.limit_store.load()
            self.ledger.load(
                saved["settings"].get("limits", {}),
                saved["admissions"],
                saved["waiters"],
                saved["seats"],
            )
            self.log.info(
                "Loaded %d place(s), %d waiter(s), %d seat(s); limits %s",
                len(self.ledger.admissions),
                len(self.ledger.queue),
                len(self.ledger.seats),
                self.ledger.limits.to_dict(),
            )
        if self.background is None:
            self.background = Background(
                self.ledger,
                self.hub,
                self.limit_store,
                self.metrics,
                self.timing(),
                persist=self.persist,
                release=self.release,
                log=self.log,
            )
        if self.history is None:
            self.history = HistorySampler(
                self.limit_store.store,
                lambda: usage_counts(self.ledger),
                interval=self.history_interval,
                retention=self.history_hours * 3600,
            )
        if not self.hook_token:
            self.log.warning(
                "No hook token (set $%s or UserLimitApp.hook_token): every admission request "
                "will be refused with 403",
                HOOK_TOKEN_ENV,
            )

    async def teardown(self):
        if self.limit_store is not None:
            await self.limit_store.drain()
        await super().teardown()

    async def on_start(self):
        self.background.start()
        self._history_task = asyncio.ensure_future(self.history.run())

    async def on_stop(self):
        if self._history_task is not None:
            self._history_task.cancel()
            await asyncio.gather(self._history_task, return_exceptions=True)
        if self.background is not None:
            await self.background.stop()

    async def health(self):
        report = await super().health()
        store_ok = await self.limit_store.ping() if self.limit_store else False
        background = self.background
        report.update(
            store="ok" if store_ok else "error",
            last_reconcile=background.last_reconcile if background else None,
            reconcile_error=(background.reconcile_error if background else "") or None,
        )
        if not store_ok:
            report["status"] = "error"
        return report

    # -- decisions (called by the handlers) ------------------------------------------------
    async def persist(self, ops) -> None:
        """Write ``ops``; a failing database answers 503 (the book in memory stays right and
        the reconciliation repairs what could not be written)."""
        try:
            await self.limit_store.write(ops)
        except Exception as e:
            self.log.error("Could not store %d change(s): %s", len(ops), e)
            raise web.HTTPError(503, "The user-limit service's database is unavailable") from None

    async def admit(self, req: policy.Request, options: dict | None) -> Outcome:
        started = time.perf_counter()
        out = self.ledger.admit(req, options)  # atomic: no await before the book is updated
        self.metrics.decision(out.decision, time.perf_counter() - started)
        if out.decision.outcome == policy.ADMIT:
            self.log.info(
                "Admitted user=%s server=%r (%s)", req.user, req.server_name, out.decision.reason
            )
        else:
            self.log.info(
                "%s user=%s server=%r: %s %s position=%s",
                out.decision.outcome,
                req.user,
                req.server_name,
                out.decision.reason,
                out.decision.limit,
                out.decision.position,
            )
        await self.persist(out.ops)
        if out.decision.reason == policy.WAITERS_AHEAD:
            await self.background.fill_free_places()  # an earlier waiter fits: serve it now
        return out

    async def take_seat(self, user: str, admin: bool, existing: bool) -> Outcome:
        started = time.perf_counter()
        out = self.ledger.take_seat(user, admin, existing)
        self.metrics.decision(out.decision, time.perf_counter() - started, kind="seat")
        if not out.decision.admitted:
            self.log.warning("Refused login of user=%s: %s", user, out.decision.limit)
        await self.persist(out.ops)
        return out

    async def release(self, admission_id: str) -> bool:
        ops = self.ledger.release(admission_id)
        if ops is None:
            return False
        self.metrics.releases.inc()
        self.log.info("Released admission %s", admission_id)
        await self.persist(ops)
        await self.background.fill_free_places()
        return True

    async def set_limits(self, patch: dict) -> policy.Limits:
        ops = self.ledger.set_limits(patch)
        self.log.info("Limits changed over REST: %s -> %s", patch, self.ledger.limits.to_dict())
        await self.persist(ops)
        if patch.get("max_users"):
            # seats now matter: learn the hub's users at once, not at the next pass
            self.background.reconcile_soon()
        await self.background.fill_free_places()
        return self.ledger.limits

    def retry_after(self, position: int) -> int:
        return policy.retry_after(position, self.retry_after_per_position)

    async def user_groups(self, user: str) -> tuple[frozenset[str], bool]:
        """A user's hub groups and admin flag, from the book or (cached) from the hub."""
        for a in self.ledger.for_user(user):
            return a.groups, a.admin
        w = self.ledger.queue.get(user)
        if w is not None:
            return w.groups, w.admin
        hit = self._groups_cache.get(user)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1], hit[2]
        try:
            model = await self.hub.get_user(user)
        except HubAPIError as e:
            self.log.warning("Could not look up user=%s in the hub: %s", user, e)
            model = None
        groups = frozenset((model or {}).get("groups") or ())
        admin = bool((model or {}).get("admin"))
        self._groups_cache[user] = (now + 60, groups, admin)
        return groups, admin


main = UserLimitApp.main

if __name__ == "__main__":
    main()
