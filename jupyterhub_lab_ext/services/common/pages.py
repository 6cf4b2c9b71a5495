"""HTML pages of the services (the admin dashboards) and the static files they load.

A page is a :class:`PageHandler`: an authenticated :class:`~.auth.ServiceHandler` (a browser
without the service's OAuth cookie is sent through the hub's login) that renders a Jinja
template from ``share/jupyterhub-lab-ext/templates`` with autoescaping. Pages carry no inline
script and no inline style: what a page's JavaScript needs (the service prefix, the XSRF token,
whether the viewer may change things) travels in ``data-`` attributes of ``<body>``, and the
answer forbids everything else with a Content-Security-Policy (:data:`CSP`). The page's
JavaScript calls the service's REST API with the same OAuth cookie and the XSRF token, so every
change is checked there with the API's own scope rules.

:class:`StaticHandler` serves the files of ``share/jupyterhub-lab-ext/static`` (CSS and vanilla
JavaScript shipped in the package; nothing is loaded from outside the machine) without
authentication: they hold no data. Only the files in that directory are served, by name.
"""

from __future__ import annotations

import os

from jinja2 import Environment, FileSystemLoader, select_autoescape
from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler
from jupyterhub_lab_ext.util.data import share_dir, templates_dir

#: scripts, styles, images and API calls from this origin only; no inline script or style
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: the route of the static files, relative to the service prefix
STATIC_ROUTE = r"static/([^/]+)"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def static_dir() -> str:
    return str(share_dir() / "static")


def hub_base_url() -> str:
    """The hub's base URL as browsers see it (``$JUPYTERHUB_BASE_URL``, set for services)."""
    base = os.environ.get("JUPYTERHUB_BASE_URL", "/").strip("/")
    return f"/{base}/" if base else "/"


class PageHandler(ServiceHandler):
    """An HTML page for people with read access; subclasses set ``template`` and ``script``."""

    #: template file name in the templates directory
    template = ""
    #: the page's own script in the static directory (after ``dashboard.js``)
    script = ""
    title = ""

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def can_change(self) -> bool:
        """Whether the viewer's credential may use the page's change controls."""
        return self.is_admin(getattr(self.service, "admin_scope", None))

    def page_data(self) -> dict[str, str]:
        """Extra ``data-`` attributes for ``<body>`` (strings; escaped by the template)."""
        return {}

    async def get(self):
        self.require_read()
        xsrf = self.xsrf_token if self.hub_auth is not None else b""
        env = Environment(
            loader=FileSystemLoader(str(templates_dir())), autoescape=select_autoescape()
        )
        prefix = self.service.service_prefix
        html = env.get_template(self.template).render(
            title=self.title,
            service=self.service_name,
            version=self.service.version,
            user=(self.current_user or {}).get("name", ""),
            can_change=self.can_change(),
            static=f"{prefix}static/",
            script=self.script,
            hub_home=hub_base_url() + "hub/home",
            data={
                "prefix": prefix,
                "xsrf": xsrf.decode("ascii") if isinstance(xsrf, bytes) else str(xsrf),
                "can-change": "1" if self.can_change() else "0",
                **self.page_data(),
            },
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(html)


class StaticHandler(ServiceHandler):
    """``GET static/{name}``: one of the shipped CSS/JavaScript files (no authentication)."""

    public = True

    def get(self, name):
        # the name is URL-decoded: only a plain name listed in the directory is served
        try:
            shipped = name in os.listdir(static_dir())
        except OSError:
            shipped = False
        if not shipped or name.startswith(".") or os.path.splitext(name)[1] not in _TYPES:
            raise web.HTTPError(404, "No such file")
        with open(os.path.join(static_dir(), name), "rb") as f:
            content = f.read()
        self.set_header("Content-Type", _TYPES[os.path.splitext(name)[1]])
        self.set_header("Cache-Control", "no-cache")  # revalidated with the ETag
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(content)
