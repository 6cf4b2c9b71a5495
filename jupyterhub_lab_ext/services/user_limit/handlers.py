"""REST handlers and the queue page of the user-limit service.

Every request needs ``access:services!service=<name>`` on its token; ``PUT api/limits`` also
needs the service's admin scope or ``admin:servers`` on the token (see :mod:`..common.scopes`);
``POST``/``DELETE api/admissions`` need the hub-side hook's shared secret and nothing else. See ``openapi.yaml`` for the documents.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler
from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.util.data import templates_dir

OUTCOME_WORDS = {policy.ADMIT: "admitted", policy.QUEUE: "queued", policy.REFUSE: "refused"}
MAX_NAME = 255


class LimitHandler(ServiceHandler):
    """Adds the hook credential to the common authentication."""

    @property
    def app(self):
        return self.service

    def _bearer(self) -> str:
        header = self.request.headers.get("Authorization", "")
        parts = header.split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
            return parts[1].strip()
        return ""

    def is_hook(self) -> bool:
        secret = self.app.hook_token
        given = self._bearer()
        return bool(secret and given) and hmac.compare_digest(given.encode(), secret.encode())

    async def authenticate(self):
        if self.is_hook():
            return {"kind": "hook", "name": "admission-hook", "scopes": []}
        return await super().authenticate()

    def require_read(self) -> None:
        if (self.current_user or {}).get("kind") == "hook":
            return
        super().require_read()

    def require_hook(self) -> None:
        if (self.current_user or {}).get("kind") != "hook":
            raise web.HTTPError(403, "Only the hub-side admission hook may call this endpoint")

    def check_xsrf_cookie(self):
        if self.is_hook():
            return None
        return super().check_xsrf_cookie()


def _decision_doc(app, decision: policy.Decision) -> dict:
    doc = {
        "outcome": OUTCOME_WORDS[decision.outcome],
        "admitted": decision.admitted,
        "reason": decision.reason,
        "limit": decision.limit or None,
        "position": decision.position or None,
        "retry_after": app.retry_after(decision.position)
        if decision.outcome == policy.QUEUE
        else None,
        "message": policy.describe(decision),
    }
    return doc


def _str_field(
    body: dict, key: str, default: str | None = None, *, allow_empty: bool = True
) -> str:
    value = body.get(key, default)
    if value is None:
        raise web.HTTPError(400, f"'{key}' is required")
    if not isinstance(value, str) or len(value) > MAX_NAME or (not allow_empty and not value):
        raise web.HTTPError(
            400, f"'{key}' must be a string of {0 if allow_empty else 1}-{MAX_NAME} characters"
        )
    if "/" in value and key == "server_name":
        raise web.HTTPError(400, "'server_name' may not contain '/'")
    return value


class StatusHandler(LimitHandler):
    """``GET api/status``: limits, usage overall and per group, queue length."""

    async def get(self):
        self.require_read()
        ledger = self.app.ledger
        used = ledger.usage()
        limits = ledger.limits
        self.write_json(
            {
                "limits": limits.to_dict(),
                "overrides": dict(ledger.overrides),
                "usage": {
                    "active_servers": used.total,
                    "reserved": sum(1 for a in ledger.admissions.values() if a.state == "reserved"),
                    "groups": {g: used.per_group.get(g, 0) for g in sorted(limits.group_quotas)},
                    "seats": len(ledger.seats),
                },
                "queue_length": len(ledger.queue),
                "full": bool(policy.blocking_limits(limits, used, ())),
                "last_reconcile": self.app.background.last_reconcile,
            }
        )


class UserHandler(LimitHandler):
    """``GET api/users/{name}[?server=NAME]``: may this user spawn now, place in line, limits."""

    async def get(self, name):
        self.require_read()
        if len(name) > MAX_NAME:
            raise web.HTTPError(400, "user name too long")
        server_name = self.get_argument("server", "")
        if len(server_name) > MAX_NAME or "/" in server_name:
            raise web.HTTPError(400, "invalid server name")
        app = self.app
        ledger = app.ledger
        groups, admin = await app.user_groups(name)
        req = policy.Request(name, server_name, groups, admin)
        decision = ledger.decide(req)
        admissions = ledger.for_user(name)
        waiter = ledger.queue.get(name)
        position = ledger.position(name)
        if any(a.state in ("admitted", "observed") for a in admissions):
            state = "active"
        elif any(a.state == "reserved" for a in admissions):
            state = "starting"
        elif waiter is not None:
            state = "queued"
        else:
            state = "idle"
        applying = (
            [f"max_active_servers={ledger.limits.max_active_servers}"]
            if ledger.limits.max_active_servers
            else []
        )
        applying += [
            f"group_quotas[{g}]={ledger.limits.group_quotas[g]}"
            for g in sorted(groups)
            if g in ledger.limits.group_quotas
        ]
        if ledger.limits.max_servers_per_user:
            applying.append(f"max_servers_per_user={ledger.limits.max_servers_per_user}")
        exempt = policy.is_exempt(ledger.limits, admin)
        self.write_json(
            {
                "user": name,
                "state": state,
                "can_spawn": decision.admitted,
                "decision": _decision_doc(app, decision),
                "position": position or None,
                "queue_length": len(ledger.queue),
                "queued": waiter.to_dict(position) if waiter else None,
                "admissions": [a.to_dict() for a in admissions],
                "seat": name in ledger.seats,
                "exempt": exempt,
                "groups": sorted(groups),
                "limits": [] if exempt else applying,
            }
        )


class AdmissionsHandler(LimitHandler):
    """``POST api/admissions``: the hook asks whether a spawn (or a login) may go ahead."""

    def authorize(self) -> None:
        self.require_hook()  # before the body is read

    async def post(self):
        self.require_hook()
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "Request body must be a JSON object")
        kind = body.get("kind", "server")
        if kind not in ("server", "seat"):
            raise web.HTTPError(400, "'kind' must be 'server' or 'seat'")
        user = _str_field(body, "user", allow_empty=False)
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise web.HTTPError(400, "'admin' must be true or false")
        if kind == "seat":
            existing = body.get("existing", False)
            if not isinstance(existing, bool):
                raise web.HTTPError(400, "'existing' must be true or false")
            out = await self.app.take_seat(user, admin, existing)
            doc = _decision_doc(self.app, out.decision)
            doc.update(id=None, kind="seat")
            self.write_json(doc)
            return
        server_name = _str_field(body, "server_name", "")
        groups = body.get("groups", [])
        if not isinstance(groups, list) or not all(
            isinstance(g, str) and 0 < len(g) <= MAX_NAME for g in groups
        ):
            raise web.HTTPError(400, "'groups' must be a list of group names")
        options = body.get("user_options", {})
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise web.HTTPError(400, "'user_options' must be an object")
        req = policy.Request(user, server_name, frozenset(groups), admin)
        out = await self.app.admit(req, options)
        doc = _decision_doc(self.app, out.decision)
        doc.update(id=out.admission.id if out.admission else None, kind="server")
        self.write_json(doc)


class AdmissionHandler(LimitHandler):
    """``DELETE api/admissions/{id}``: the hook frees a place (server stopped or spawn failed)."""

    def authorize(self) -> None:
        self.require_hook()

    async def delete(self, admission_id):
        self.require_hook()
        if not await self.app.release(admission_id):
            raise web.HTTPError(404, "No such admission")
        self.set_status(204)
        self.finish()


class QueueHandler(LimitHandler):
    """``GET api/queue``: the waiters in order, and the places reserved for them."""

    async def get(self):
        self.require_read()
        ledger = self.app.ledger
        entries = [w.to_dict(i + 1) for i, w in enumerate(ledger.queue.values())]
        reserved = [a.to_dict() for a in ledger.admissions.values() if a.state == "reserved"]
        self.write_json({"length": len(entries), "entries": entries, "reserved": reserved})


class LimitsHandler(LimitHandler):
    """``PUT api/limits``: change limits at runtime (persisted); ``null`` restores the config."""

    async def put(self):
        self.require_admin(self.app.admin_scope)
        body = self.get_json_body()
        try:
            patch = policy.validate_limits_patch(body)
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        limits = await self.app.set_limits(patch)
        self.write_json({"limits": limits.to_dict(), "overrides": dict(self.app.ledger.overrides)})


class QueuePageHandler(LimitHandler):
    """``GET queue``: the page a queued person sees; polls ``api/users/{me}`` and moves on."""

    async def get(self):
        self.require_read()
        me = self.current_user or {}
        if me.get("kind") != "user":
            raise web.HTTPError(403, "The queue page is for hub users")
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        env = Environment(
            loader=FileSystemLoader(str(templates_dir())), autoescape=select_autoescape()
        )
        template = env.get_template("queue.html")
        base_url = self.app.hub_prefix
        name = me["name"]
        server_name = self.get_argument("server", "")
        if len(server_name) > MAX_NAME or "/" in server_name:
            raise web.HTTPError(400, "invalid server name")
        # without the hub's OAuth client there is no cookie login, hence no xsrf token to carry
        xsrf = self.xsrf_token if self.hub_auth is not None else b""
        html = template.render(
            user=name,
            # cookie-authenticated fetch() calls must carry the hub's xsrf token
            xsrf_token=xsrf.decode("ascii") if isinstance(xsrf, bytes) else str(xsrf),
            server_name=server_name,
            status_url=self.app.service_prefix + "api/users/" + quote(name, safe=""),
            pending_url=base_url + "hub/spawn-pending/" + quote(name, safe=""),
            home_url=base_url + "hub/home",
            spawn_url=base_url + "hub/spawn/" + quote(name, safe=""),
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(html)
