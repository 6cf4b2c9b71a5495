"""Apply the userlist to the hub's database: removed users lose every credential, the admin flag
and groups follow the file.

JupyterHub asks the authenticator about a user (``refresh_user``) only when that user makes a
request, and it cannot end access on token requests ("stale auth info. Cannot refresh on API
requests"). So the userlist authenticator applies the list to the hub itself, on the hub's event
loop: right after the file changes and then every :func:`check_interval` seconds.

For a hub user without a line in the list (whatever ``on_removal`` says):

- every API token of the user is deleted: the ones they made, the OAuth tokens behind the
  cookies of their single-user servers and of hub services, and the token of their own running
  servers; pending OAuth codes too;
- the hub's login cookie is ended (the user's ``cookie_id`` is replaced);
- with ``on_removal`` ``"stop"`` or ``"lock"``, their servers are stopped.

For a listed user: the hub's admin flag (and with it the ``admin`` role) and, with
``manage_groups``, the hub groups are set to what the line says.

Single-user servers and services ask the hub about a cookie or token and keep the answer for a
while; :func:`server_cache_max_age` bounds that for the servers the hub starts, so the whole of it
fits in ``auth_refresh_age``.

:func:`plan_access` is the pure policy; :class:`HubAccess` reads and writes the hub's database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyterhub import orm, roles
from jupyterhub.utils import new_token

from jupyterhub_lab_ext.auth.userlist import Userlist, UserlistEntry

CACHE_FLAG = "--HubOAuth.cache_max_age"
#: JupyterHub's own default of ``HubOAuth.cache_max_age`` (seconds)
HUBOAUTH_DEFAULT_CACHE = 300


# ---- timing --------------------------------------------------------------------------------


def check_interval(poll_interval: float, auth_refresh_age: float) -> float:
    """Seconds between two passes over the hub's users: ``userlist_poll_interval``, and at
    most half of ``auth_refresh_age``. 0 (no background pass) only when both are 0."""
    candidates = [v for v in (poll_interval, auth_refresh_age / 2) if v > 0]
    return min(candidates) if candidates else 0.0


def server_cache_max_age(auth_refresh_age: float) -> int | None:
    """``HubOAuth.cache_max_age`` for single-user servers: half of ``auth_refresh_age`` (at
    least 1 s, at most JupyterHub's default); None when ``auth_refresh_age`` is 0 (no bound)."""
    if auth_refresh_age <= 0:
        return None
    return max(1, min(HUBOAUTH_DEFAULT_CACHE, int(auth_refresh_age // 2)))


def server_args(args: Sequence[str], max_age: int | None) -> list[str]:
    """``args`` of a single-user server with the cache bound added (kept if already set)."""
    args = list(args)
    if max_age is None or any(a == CACHE_FLAG or a.startswith(CACHE_FLAG + "=") for a in args):
        return args
    return [*args, f"{CACHE_FLAG}={max_age}"]


# ---- policy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubUser:
    """What the hub's database says about one user."""

    name: str
    admin: bool
    groups: frozenset[str] = frozenset()
    has_tokens: bool = False
    has_servers: bool = False


@dataclass(frozen=True)
class Wanted:
    """What the userlist says about one user (``groups`` None: groups are not managed)."""

    listed: bool
    admin: bool = False
    groups: frozenset[str] | None = None


@dataclass
class AccessPlan:
    """The changes one pass makes."""

    revoke: list[str] = field(default_factory=list)  # delete tokens, end the login cookie
    stop: list[str] = field(default_factory=list)  # stop every server
    admin: dict[str, bool] = field(default_factory=dict)  # new admin flag
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # new hub groups

    def __bool__(self) -> bool:
        return bool(self.revoke or self.stop or self.admin or self.groups)


def wanted(
    username: str,
    entry: UserlistEntry | None,
    groups: Iterable[str] | None,
    *,
    admin_users: Collection[str],
    admin_groups: Collection[str],
) -> Wanted:
    """What the userlist grants ``username``, whose line is ``entry`` (None: no line).

    ``groups``: the hub groups of the line, None when groups are not managed. Admin: ``admin``
    on the line, a name in ``admin_users``, or one of ``groups`` in ``admin_groups``; without
    a line only ``admin_users`` counts.
    """
    if entry is None:
        return Wanted(listed=False, admin=username in admin_users)
    groups = None if groups is None else frozenset(groups)
    in_admin_group = groups is not None and not groups.isdisjoint(admin_groups)
    admin = entry.admin or username in admin_users or in_admin_group
    return Wanted(listed=True, admin=admin, groups=groups)


def plan_access(
    users: Iterable[HubUser],
    wanted: Callable[[str], Wanted],
    *,
    stop_servers: bool,
    ended: frozenset[str] | set[str] = frozenset(),
) -> AccessPlan:
    """The changes that make the hub match the userlist.

    ``ended``: unlisted users whose login cookie this process already ended; they are revoked
    again only when they hold tokens (say an admin made one since).
    """
    plan = AccessPlan()
    for user in users:
        want = wanted(user.name)
        if not want.listed:
            if user.has_tokens or user.name not in ended:
                plan.revoke.append(user.name)
            if stop_servers and user.has_servers:
                plan.stop.append(user.name)
            if user.admin and not want.admin:
                plan.admin[user.name] = False
            continue
        if user.admin != want.admin:
            plan.admin[user.name] = want.admin
        if want.groups is not None and user.groups != want.groups:
            plan.groups[user.name] = want.groups
    return plan


# ---- the hub's database --------------------------------------------------------------------


class HubAccess:
    """Applies :func:`plan_access` to the database of the JupyterHub ``app``.

    :param current_list: ``() -> Userlist | None``: the list in force, or None while users
        without a line are not refused (``allow_all``, or no list ever loaded).
    :param wanted: ``(username, userlist) -> Wanted``.
    :param stop: called with each removed user whose servers must stop (it should start the
        stop in the background); None when servers are left running (``on_removal`` revoke).
    """

    def __init__(
        self,
        app: Any,
        *,
        current_list: Callable[[], Userlist | None],
        wanted: Callable[[str, Userlist], Wanted],
        stop: Callable[[str], object] | None,
        log: logging.Logger | logging.LoggerAdapter,
    ):
        self.app = app
        self.current_list = current_list
        self.wanted = wanted
        self.stop = stop
        self.log = log
        self._ended: set[str] = set()
        self._lock = asyncio.Lock()

    def _hub(self):
        """The JupyterHub app, once it has started (None in other processes and before)."""
        app = self.app
        if getattr(app, "db", None) is None or getattr(app, "users", None) is None:
            return None
        started = getattr(app, "_start_future", None)
        if started is not None and not started.done():
            return None
        return app

    async def sync(self) -> AccessPlan | None:
        """One pass: read the hub's users, apply the list. None when it cannot run now (no hub
        yet, ``allow_all``, or no userlist ever loaded)."""
        app = self._hub()
        if app is None or self.current_list() is None:
            return None
        async with self._lock:
            userlist = self.current_list()  # once loaded, a good list is always kept

            def wanted(name: str) -> Wanted:
                return self.wanted(name, userlist)

            plan = plan_access(
                read_hub_users(app.db),
                wanted,
                stop_servers=self.stop is not None,
                ended=self._ended,
            )
            if plan:
                self._apply(app, plan)
            self._ended = {name for name in self._ended if not wanted(name).listed}
        for name in plan.stop:  # in the background: a slow stop must not hold up revocations
            self.stop(name)
        return plan

    def _apply(self, app, plan: AccessPlan) -> None:
        db = app.db
        try:
            for name in plan.revoke:
                user = orm.User.find(db, name)
                if user is None:
                    continue
                tokens = db.query(orm.APIToken).filter(orm.APIToken.user_id == user.id).all()
                codes = db.query(orm.OAuthCode).filter(orm.OAuthCode.user_id == user.id).all()
                for row in (*tokens, *codes):
                    db.delete(row)
                user.cookie_id = new_token()
                self._ended.add(name)
                log = self.log.info if tokens or codes else self.log.debug
                log("user=%s is not in the userlist: %d tokens revoked", name, len(tokens))
            for name, admin in plan.admin.items():
                user = orm.User.find(db, name)
                if user is not None:
                    user.admin = admin
                    roles.assign_default_roles(db, entity=user)
                    self.log.info("user=%s admin=%s, as the userlist says", name, admin)
            for name, groups in plan.groups.items():
                app.users[name].sync_groups(sorted(groups))
            db.commit()
        except Exception:
            db.rollback()
            raise


def read_hub_users(db) -> list[HubUser]:
    """Every user in the hub's database with what :func:`plan_access` needs (four queries)."""
    with_tokens = {
        uid for (uid,) in db.query(orm.APIToken.user_id).filter(orm.APIToken.user_id.isnot(None))
    } | {
        uid for (uid,) in db.query(orm.OAuthCode.user_id).filter(orm.OAuthCode.user_id.isnot(None))
    }
    with_servers = {
        uid for (uid,) in db.query(orm.Spawner.user_id).filter(orm.Spawner.server_id.isnot(None))
    }
    groups: dict[int, set[str]] = {}
    for uid, group in db.query(orm.User.id, orm.Group.name).join(orm.User.groups):
        groups.setdefault(uid, set()).add(group)
    return [
        HubUser(
            name=name,
            admin=bool(admin),
            groups=frozenset(groups.get(uid, ())),
            has_tokens=uid in with_tokens,
            has_servers=uid in with_servers,
        )
        for uid, name, admin in db.query(orm.User.id, orm.User.name, orm.User.admin)
    ]
