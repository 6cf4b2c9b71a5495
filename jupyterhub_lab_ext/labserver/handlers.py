"""The server extension's endpoints, under ``{base_url}jupyterhub-lab-ext/``.

- ``GET status``: what the status item shows (:func:`.status.compose`); not counted as activity,
  so an open JupyterLab tab that only polls it stays idle for the culler.
- ``POST keep``: "Keep my server": tells the hub right away that this server is in use (which
  pushes the cull back by one timeout) and answers the new status.

Both need the server's own login (the user's JupyterLab session: JupyterHub's OAuth cookie and
the xsrf token JupyterLab sends), as every other API of the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone

from jupyter_server.base.handlers import APIHandler
from tornado import web

from jupyterhub_lab_ext.labserver.client import CachedView, default_fetch, post_activity, user_path
from jupyterhub_lab_ext.labserver.status import compose
from jupyterhub_lab_ext.util import lab_status as names

#: seconds between the item's refreshes, and how long the services' answers are cached
DEFAULT_REFRESH = 30.0
#: the shortest refresh a spawner may ask for
MIN_REFRESH = 5.0
#: the services' answers are kept this many refresh periods (the countdown is computed here from
#: the cached cull time, so it stays exact; "Keep my server" asks afresh at once). With the default
#: refresh, each service sees one request per user per 90 s and the hub, through the services'
#: token checks, two: both under one per 30 s.
SERVICE_TTL_PERIODS = 3


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def refresh_seconds(environ: Mapping[str, str]) -> float:
    try:
        value = float(environ.get(names.ENV_REFRESH, DEFAULT_REFRESH))
    except ValueError:
        return DEFAULT_REFRESH
    return max(MIN_REFRESH, value)


class LabStatus:
    """This server's user, its env, and the cached views of the two services."""

    def __init__(self, environ: Mapping[str, str], *, fetch=default_fetch, clock=utcnow):
        self.env = environ.get(names.ENV_NAME) or None
        self.user = environ.get("JUPYTERHUB_USER", "")
        self.server_name = environ.get("JUPYTERHUB_SERVER_NAME", "")
        self.api_url = environ.get("JUPYTERHUB_API_URL", "")
        self.token = environ.get("JUPYTERHUB_API_TOKEN", "")
        self.refresh = refresh_seconds(environ)
        self.clock = clock
        self.fetch = fetch
        in_hub = bool(self.user and self.token)

        def view(var: str) -> CachedView:
            base = environ.get(var, "") if in_hub else ""
            url = user_path(base, self.user, self.server_name) if base else ""
            return CachedView(url, self.token, ttl=self.refresh * SERVICE_TTL_PERIODS, fetch=fetch)

        self.culler = view(names.ENV_CULLER_URL)
        self.limits = view(names.ENV_USER_LIMIT_URL)

    @classmethod
    def from_environ(cls) -> LabStatus:
        return cls(os.environ)

    async def status(self) -> dict:
        culler, limits = await self.culler.get(), await self.limits.get()
        doc = compose(self.env, culler, limits, server_name=self.server_name, now=self.clock())
        doc["refresh_seconds"] = self.refresh
        doc["can_keep"] = self.can_keep
        return doc

    @property
    def can_keep(self) -> bool:
        return bool(self.api_url and self.token and self.user)

    async def keep(self) -> int:
        """Report activity to the hub now; the culler's next answer is asked afresh."""
        code = await post_activity(
            self.api_url, self.token, self.user, self.server_name, self.clock(), self.fetch
        )
        self.culler.forget()
        return code


class _Base(APIHandler):
    @property
    def lab_status(self) -> LabStatus:
        return self.settings[names.SETTINGS_KEY]


class StatusHandler(_Base):
    _track_activity = False  # polling is not using the server

    @web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.lab_status.status()))


class KeepHandler(_Base):
    @web.authenticated
    async def post(self):
        if not self.lab_status.can_keep:
            raise web.HTTPError(409, "This server was not started by a JupyterHub")
        code = await self.lab_status.keep()
        if code not in (200, 204):
            self.log.warning("Keep my server: the hub answered %s to the activity report", code)
            raise web.HTTPError(502, "The hub did not take the activity report")
        self.settings["api_last_activity"] = self.lab_status.clock()
        self.finish(json.dumps(await self.lab_status.status()))
