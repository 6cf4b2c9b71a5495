"""Handlers every service has: health, Prometheus metrics, the OpenAPI document, an index."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler


class HealthHandler(ServiceHandler):
    """``GET health``: 200 ``{"status": "ok", ...}`` while healthy, 503 otherwise. No auth."""

    public = True

    async def get(self):
        report = await self.service.health()
        self.write_json(report, 200 if report.get("status") == "ok" else 503)

    head = get


class MetricsHandler(ServiceHandler):
    """``GET metrics``: Prometheus text format; needs read access unless metrics are public."""

    @property
    def public(self):
        return not self.service.authenticate_metrics

    async def get(self):
        if self.service.authenticate_metrics:
            self.require_read()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.service.registry))


class OpenAPIHandler(ServiceHandler):
    """``GET api/openapi.yaml``: the API document shipped in the package. No auth."""

    public = True

    def get(self):
        doc = self.settings["openapi_document"]
        if doc is None:
            raise web.HTTPError(404, "This service ships no OpenAPI document")
        self.set_header("Content-Type", "application/yaml; charset=utf-8")
        self.finish(doc)


class IndexHandler(ServiceHandler):
    """``GET {prefix}``: who you are, what this service is and its endpoints (read access).

    A browser (``Accept: text/html``) is sent on to the service's page, if it has one: the hub's
    Services menu links here."""

    async def get(self):
        self.require_read()
        page = self.service.dashboard_path
        if page and "text/html" in self.request.headers.get("Accept", ""):
            self.redirect(self.service.service_prefix + page)
            return
        self.write_json(
            {
                "service": self.service_name,
                "version": self.service.version,
                "you": {
                    "name": self.current_user.get("name"),
                    "kind": self.current_user.get("kind"),
                },
                "endpoints": self.settings["endpoints"],
            }
        )
