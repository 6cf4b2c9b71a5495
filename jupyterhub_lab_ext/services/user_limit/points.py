"""Where the hub asks the user-limit service: two traits of ``Spawner`` that ``User.spawn()`` calls.

JupyterHub has no plugin hook before ``User.spawn()``; inside it, two callable traits run early:

- ``Spawner.server_token_scopes`` (:class:`EarlyPoint`): after the hub made the server row and
  before it makes the server's API token. The spawn's options are not known yet, so the service
  decides here whatever the options cannot change (an admission, a refusal, a place in line when
  the service does not start queued servers) and leaves a spawn that it would queue with its
  options to the next point. A refusal here undoes only the server row.
- ``Spawner.oauth_client_allowed_scopes`` (:class:`AdmissionPoint`): after the API token and the
  options, before the server's OAuth client. It decides what the early point left open; a
  refusal undoes the token and the server row.

Both return what the admin configured for the trait (a list, or their own callable's answer).
See ``docs/user-limit.md`` ("Where the hub asks") for what this relies on in JupyterHub.
"""

from __future__ import annotations

from collections.abc import Callable

from jupyterhub import orm
from jupyterhub.utils import maybe_future

#: the stages at which the hook decides a spawn, in the order the hub reaches them
EARLY = "server_token_scopes"
LATE = "oauth_client_allowed_scopes"
FALLBACK = "pre_spawn_hook"


def keep_server_row(spawner, row, server) -> None:
    """Link the spawn's server ``row`` to the spawner again if a rollback unlinked it.

    ``User.spawn()`` commits the row, then links it (``spawner.server = ...``) without a commit
    just before the early point; while the hook waits for the service there, another request of
    the hub may finish with uncommitted changes in the shared session, and JupyterHub's
    ``BaseHandler.finish`` rolls them back: the link is gone, the row stays. ``server`` is the
    spawner's ``Server`` as the early point found it."""
    orm_spawner = getattr(spawner, "orm_spawner", None)
    if row is not None and orm_spawner is not None and orm_spawner.server is not row:
        spawner.server = server


def undo_server_row(spawner) -> None:
    """Undo what ``User.spawn()`` made before the early point: the server row (one commit)."""
    spawner.server = None  # deletes the server row
    spawner.db.commit()


def undo_spawn(spawner) -> None:
    """Undo what ``User.spawn()`` made before the admission point, as ``User.stop()`` would: the
    server's API token and its server row (no OAuth client exists yet, nothing was started)."""
    db = spawner.db
    token = orm.APIToken.find(db, spawner.api_token) if spawner.api_token else None
    if token is not None:
        db.delete(token)
    spawner.server = None  # deletes the server row
    spawner.handler = None  # User.spawn() clears it only on its own error path
    db.commit()


class EarlyPoint:
    """The value of ``c.Spawner.server_token_scopes``: decides a spawn before its API token.

    :param decide: ``await decide(spawner)`` asks the service and raises to refuse or queue
        (:meth:`~jupyterhub_lab_ext.services.user_limit.hook.UserLimitHook.decide_early`).
    :param scopes: the admin's scopes for the server's token (empty: the hub's ``server`` role),
        or ``theirs``, their own callable.
    """

    def __init__(self, decide: Callable, scopes=(), theirs: Callable | None = None):
        self.decide = decide
        self.scopes = list(scopes)
        self.theirs = theirs

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    async def __call__(self, spawner) -> list:
        row = getattr(getattr(spawner, "orm_spawner", None), "server", None)
        server = getattr(spawner, "server", None)
        await self.decide(spawner)  # links the row again itself before it undoes a refusal
        scopes = list(self.scopes)
        if self.theirs is not None:
            scopes = list(await maybe_future(self.theirs(spawner)))
        keep_server_row(spawner, row, server)
        return scopes


class AdmissionPoint(list):
    """The value of ``c.Spawner.oauth_client_allowed_scopes``: decides what the early point left
    open (a spawn the service would queue with its options).

    JupyterHub calls the trait's value (when callable) with the spawner just before it creates the
    server's OAuth client; this one first asks the service (``decide``), then returns the scopes
    the admin configured (``scopes``, or the result of their own callable ``theirs``). It is a
    list of those scopes too, because JupyterHub also writes the trait's value into the server's
    environment as JSON (``$JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES``), and it is always true,
    because JupyterHub calls it only when it is.
    """

    def __init__(self, decide: Callable, scopes=(), theirs: Callable | None = None):
        super().__init__(scopes)
        self.decide = decide
        self.theirs = theirs

    def __bool__(self) -> bool:
        return True

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    async def __call__(self, spawner) -> list:
        await self.decide(spawner)
        if self.theirs is not None:
            return list(await maybe_future(self.theirs(spawner)))
        return list(self)
