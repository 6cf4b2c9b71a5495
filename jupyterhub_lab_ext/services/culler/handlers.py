"""REST API of the idle culler (mounted under the service prefix; see ``openapi.yaml``).

Every request needs ``access:services!service=<name>`` on its token; passes and exemption
changes also need the culler's admin scope (``LabIdleCuller.admin_scope``) or ``admin:servers``
on the token (see :mod:`..common.scopes`).
"""

from __future__ import annotations

from datetime import timezone

from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler
from jupyterhub_lab_ext.services.culler.policy import parse_date

MAX_NAME = 255
MAX_REASON = 1024
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def _check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME:
        raise web.HTTPError(400, f"User name must be 1-{MAX_NAME} characters")
    return name


def status(app, culler, timer, options) -> dict:
    """``GET api/status`` of the culler ``app``: its ``options``, the last pass, the next."""
    last = culler.last_report
    config = {name: getattr(app, name) for name in options}
    config = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}
    next_pass = timer.next_pass_at if timer else None
    return {
        "service": app.service_name,
        "version": app.version,
        "config": {**config, "webhook": bool(app.webhook_url)},
        "last_pass": None
        if last is None
        else {**last.summary(), "errors": last.lists["errors"], "stuck": last.lists["stuck"]},
        "pass_running": culler.running is not None,
        "next_pass": next_pass.isoformat() if next_pass else None,
    }


class StatusHandler(ServiceHandler):
    async def get(self):
        self.require_read()
        self.write_json(self.service.status())


class PassesHandler(ServiceHandler):
    async def post(self):
        self.require_admin(self.service.admin_scope)
        raw = self.get_query_argument("dry_run", "0").strip().lower()
        if raw in TRUE:
            dry_run = True
        elif raw in FALSE:
            dry_run = False
        else:
            raise web.HTTPError(400, "dry_run must be 1/0 (or true/false)")
        dry_run = dry_run or self.service.dry_run
        trigger = f"api:{self.current_user.get('name', '?')}"
        report = await self.service.culler.run_pass(dry_run=dry_run, trigger=trigger)
        self.write_json(report.as_dict())


class ExemptionHandler(ServiceHandler):
    async def put(self, name):
        self.require_admin(self.service.admin_scope)
        name = _check_name(name)
        # no body: an open-ended exemption; otherwise it must be a JSON object
        body = self.get_json_body() if self.body.strip() else {}
        if not isinstance(body, dict):
            raise web.HTTPError(
                400, 'Body must be a JSON object like {"until": ..., "reason": ...}'
            )
        unknown = set(body) - {"until", "reason"}
        if unknown:
            raise web.HTTPError(400, f"Unknown fields: {', '.join(sorted(map(str, unknown)))}")
        now = self.service.culler.clock()
        until = body.get("until")
        if until is not None:
            if not isinstance(until, str):
                raise web.HTTPError(400, "until must be an ISO 8601 date-time string or null")
            text = until
            try:
                until = parse_date(text) if text.strip() else None
            except (ValueError, OverflowError):
                until = None
            if until is None:
                raise web.HTTPError(400, f"until is not an ISO 8601 date-time: {text[:64]!r}")
            if until <= now:
                raise web.HTTPError(400, "until is in the past")
            until = until.astimezone(timezone.utc)
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise web.HTTPError(400, f"reason must be a string of at most {MAX_REASON} characters")
        ex, created = await self.service.culler.store.put_exemption(
            name, until, reason, self.current_user.get("name", ""), now
        )
        self.log.info("Exemption for user=%s until %s set by %s", name, until, ex.created_by)
        self.write_json(ex.as_dict(), 201 if created else 200)

    async def delete(self, name):
        self.require_admin(self.service.admin_scope)
        if not await self.service.culler.store.delete_exemption(_check_name(name)):
            raise web.HTTPError(404, f"No exemption for {name}")
        self.log.info("Exemption for user=%s removed by %s", name, self.current_user.get("name"))
        self.set_status(204)
        self.finish()
