"""``GET api/users/{name}`` of the culler, readable by the user's own server ("self view").

The user view of :meth:`..engine.Culler.user_view`, plus what a person needs to read it:
``warning_seconds`` (the culler's warning time) and ``cull_every_seconds`` (how often it looks).
The service's read scope lets a credential read any user; without it, the user's own server
token may read that user only (:mod:`..common.self_access`).
"""

from __future__ import annotations

from tornado import web

from jupyterhub_lab_ext.services.common.auth import ServiceHandler
from jupyterhub_lab_ext.services.common.self_access import may_read_self
from jupyterhub_lab_ext.services.culler.handlers import MAX_NAME


class SelfUserHandler(ServiceHandler):
    """The culler's view of one user, for the service's readers and for the user's own server."""

    def authorize(self) -> None:
        name = self.path_args[0] if self.path_args else ""
        if self.request.method == "GET" and may_read_self(self.current_user, name):
            return  # the user's own server: this user only, nothing else at this service
        super().authorize()

    async def get(self, name):
        if not name or len(name) > MAX_NAME:
            raise web.HTTPError(400, f"User name must be 1-{MAX_NAME} characters")
        view = await self.service.culler.user_view(name)
        if view is None:
            raise web.HTTPError(404, f"No such hub user: {name}")
        view["warning_seconds"] = self.service.warning_period
        view["cull_every_seconds"] = self.service.cull_every
        self.write_json(view)
