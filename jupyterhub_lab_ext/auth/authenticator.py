"""The userlist authenticator: OAuth login restricted by a hot-reloaded userlist, with system
users and homes.

:class:`UserlistAuthenticator` is the feature, composed with an oauthenticator class; three such
classes are JupyterHub entry points: ``userlist`` (:class:`UserlistOAuthenticator`, generic
OAuth2/OIDC), ``userlist-github`` and ``userlist-google``. This module holds the options, the
override points and the JupyterHub hooks; the work is done by objects given what they need
(see the package docstring of :mod:`jupyterhub_lab_ext.auth`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable

from jupyterhub import orm
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.google import GoogleOAuthenticator
from traitlets import Bool, Dict, Enum, Float, Integer, List, Set, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from jupyterhub_lab_ext.accounts import logindefs
from jupyterhub_lab_ext.accounts.spec import AccountSpec
from jupyterhub_lab_ext.accounts.system_users import SystemUsers
from jupyterhub_lab_ext.auth import access, login, naming, refusal
from jupyterhub_lab_ext.auth import options as opt
from jupyterhub_lab_ext.auth.access import HubAccess, Wanted
from jupyterhub_lab_ext.auth.admin_page import AdminPageEdits
from jupyterhub_lab_ext.auth.background import BackgroundTasks
from jupyterhub_lab_ext.auth.identities import IdentityMemo
from jupyterhub_lab_ext.auth.oidc_discovery import OIDCDiscovery
from jupyterhub_lab_ext.auth.provisioning import Provisioner
from jupyterhub_lab_ext.auth.removal import RemovalActions, ServerStopper
from jupyterhub_lab_ext.auth.userlist import Userlist, UserlistEntry
from jupyterhub_lab_ext.auth.userlist_file import UserlistFile, UserlistLoadError
from jupyterhub_lab_ext.auth.watch import UserlistWatch

__all__ = [
    "UserlistAuthenticator",
    "UserlistOAuthenticator",
    "UserlistGitHubOAuthenticator",
    "UserlistGoogleOAuthenticator",
]


def _passwd_system_names(uid_min: int) -> frozenset[str]:
    return naming.load_system_names(uid_min=uid_min)


class UserlistAuthenticator(LoggingConfigurable):
    """Userlist allow/admin/groups, idempotent POSIX names and system users.

    The options below are set as ``c.UserlistAuthenticator.<name>`` and apply to every login
    class built on it (or on one class, e.g. ``c.UserlistGitHubOAuthenticator.<name>``).

    A mixin for oauthenticator classes: put it first, e.g.
    ``class UserlistGitLabOAuthenticator(UserlistAuthenticator, GitLabOAuthenticator)``. Override
    points for subclasses: :meth:`identity_from_userinfo`, :meth:`username_for_identity`,
    :meth:`home_for`, :meth:`account_spec_for`, :meth:`groups_for`, :meth:`on_user_removed`.

    Test seams are constructor arguments, not options: ``system_users`` (a
    :class:`~jupyterhub_lab_ext.accounts.system_users.SystemUsers` or a stand-in) and
    ``system_names_loader`` (``uid_min -> names of system accounts``; default: the passwd
    database).
    """

    userlist_file = Unicode("", help=opt.USERLIST_FILE).tag(config=True, allow_config=True)
    userlist_poll_interval = Float(10.0, min=0, help=opt.USERLIST_POLL_INTERVAL).tag(config=True)
    sync_admin_page_changes = Bool(True, help=opt.SYNC_ADMIN_PAGE_CHANGES).tag(config=True)
    username_prefix = Unicode("", help=opt.USERNAME_PREFIX).tag(config=True)

    @validate("username_prefix")
    def _validate_prefix(self, proposal):
        return opt.checked(naming.validate_prefix, proposal)

    domain_rules = Dict(Unicode(), key_trait=Unicode(), help=opt.DOMAIN_RULES).tag(config=True)

    @validate("domain_rules")
    def _validate_domain_rules(self, proposal):
        return opt.checked(naming.validate_domain_rules, proposal)

    reserved_usernames = Set(Unicode(), help=opt.RESERVED_USERNAMES).tag(config=True)
    uid_min = Integer(min=1, help=opt.UID_MIN).tag(config=True)

    @default("uid_min")
    def _default_uid_min(self):
        return logindefs.uid_min()

    require_verified_email = Bool(True, help=opt.REQUIRE_VERIFIED_EMAIL).tag(config=True)
    create_system_users = Bool(True, help=opt.CREATE_SYSTEM_USERS).tag(config=True)
    allow_existing_system_users = Bool(False, help=opt.ALLOW_EXISTING_SYSTEM_USERS).tag(config=True)
    home_root = Unicode("/home", help=opt.HOME_ROOT).tag(config=True)
    home_mode = Integer(0o700, help=opt.HOME_MODE).tag(config=True)

    @validate("home_mode")
    def _validate_home_mode(self, proposal):
        return opt.checked(opt.check_home_mode, proposal)

    home_template = Unicode("", help=opt.HOME_TEMPLATE).tag(config=True)
    template_readonly = Bool(False, help=opt.TEMPLATE_READONLY).tag(config=True)
    system_group = Unicode("", help=opt.SYSTEM_GROUP).tag(config=True)
    system_gid = Integer(None, allow_none=True, min=1, help=opt.SYSTEM_GID).tag(config=True)
    supplementary_groups = List(Unicode(), help=opt.SUPPLEMENTARY_GROUPS).tag(config=True)
    user_shell = Unicode("/bin/bash", help=opt.USER_SHELL).tag(config=True)

    system_users_state_dir = Unicode(
        "/var/lib/jupyterhub-lab-ext", help=opt.SYSTEM_USERS_STATE_DIR
    ).tag(config=True)

    on_removal = Enum(["revoke", "stop", "lock"], "revoke", help=opt.ON_REMOVAL).tag(config=True)
    removed_homes_archive_dir = Unicode("", help=opt.REMOVED_HOMES_ARCHIVE_DIR).tag(config=True)

    # The bound within which a userlist edit reaches every credential (see .access);
    # JupyterHub's refresh costs us one stat(), so a short default is cheap.
    @default("auth_refresh_age")
    def _default_auth_refresh_age(self):
        return 60

    # group:NAME in the file -> hub groups (JupyterHub's manage_groups semantics)
    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    def __init__(
        self,
        *,
        system_users: SystemUsers | None = None,
        system_names_loader: Callable[[int], Iterable[str]] = _passwd_system_names,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not self.userlist_file:
            raise ValueError(f"{type(self).__name__}.userlist_file must be set")
        if self.allow_all:
            self.log.warning("allow_all is True: the userlist %s is bypassed!", self.userlist_file)
        self._normalize = naming.make_normalizer(
            prefix=self.username_prefix, domain_rules=self.domain_rules
        )
        system_names = frozenset(system_names_loader(self.uid_min))
        self._reserved = system_names | frozenset(self.reserved_usernames)
        if system_users is None:
            system_users = SystemUsers(
                log=self.log,
                state_dir=self.system_users_state_dir,
                allow_existing=self.allow_existing_system_users,
                uid_min=self.uid_min,
            )
        self.system_users = system_users
        self._build_parts()
        try:
            self.userlist.current()
        except UserlistLoadError as e:
            self.log.error("%s", e)
        self._start_polling()

    def _build_parts(self) -> None:
        """The objects that do the work, each given what it needs."""
        log = self.log
        file = UserlistFile(
            self.userlist_file,
            username_for=self.username_for_identity,
            reserved=self.reserved_reason,
            log=log,
        )
        self.userlist = UserlistWatch(file, allow_all=self.allow_all, on_change=self._on_change)
        self.identities = IdentityMemo()
        self.admin_page = AdminPageEdits(
            self.userlist, self.identities, enabled=self.sync_admin_page_changes, log=log
        )
        self.background = BackgroundTasks(log)
        su = self.system_users if self.create_system_users else None
        self.provisioner = Provisioner(
            su,
            spec_for=self.account_spec_for,
            home_template=self.home_template,
            template_readonly=self.template_readonly,
            log=log,
        )
        self.servers = ServerStopper(self.parent, is_listed=self.userlist.listed, log=log)
        self.removal = RemovalActions(
            mode=self.on_removal,
            archive_dir=self.removed_homes_archive_dir,
            servers=self.servers,
            system_users=su,
            log=log,
        )
        stop = self._stop_in_background if self.on_removal != "revoke" else None
        self.access = HubAccess(
            self.parent,
            current_list=self.userlist.in_force,
            wanted=self.wanted_access,
            stop=stop,
            log=log,
        )

    def _stop_in_background(self, username: str) -> None:
        self.background.spawn(self.servers.stop(username, only_unlisted=True))

    def _start_polling(self) -> None:
        interval = access.check_interval(self.userlist_poll_interval, self.auth_refresh_age)
        self.background.start_polling(self.poll_userlist, interval)

    # ---- override points -------------------------------------------------------------------

    def identity_from_userinfo(self, user_info: dict) -> str:
        """The identity matched against the userlist (a login or an email).

        Default: the provider's ``username_claim`` (``login`` for GitHub, ``email`` for Google,
        ``username`` or your setting for generic OIDC).
        """
        return super().user_info_to_username(user_info)

    def username_for_identity(self, identity: str) -> str:
        """Map an identity to its POSIX username (must be idempotent); see :mod:`.naming`."""
        return self._normalize(identity)

    def home_for(self, username: str) -> str:
        """Home directory path of ``username``; default ``home_root/username``."""
        return os.path.join(self.home_root, username)

    def account_spec_for(self, username: str) -> AccountSpec:
        """The :class:`~jupyterhub_lab_ext.accounts.spec.AccountSpec` for ``username``."""
        return AccountSpec(
            name=username,
            home=self.home_for(username),
            home_mode=self.home_mode,
            gid=self.system_gid,
            group=self.system_group or None,
            supplementary_groups=tuple(self.supplementary_groups),
            shell=self.user_shell,
            comment="jupyterhub-lab-ext user",
        )

    def groups_for(self, entry: UserlistEntry) -> list[str]:
        """Hub groups of a listed user; default: the ``group:NAME`` tokens of its line."""
        return list(entry.groups)

    async def on_user_removed(self, username: str, entry: UserlistEntry | None) -> None:
        """Called once when ``username`` leaves the userlist (file edit or admin page delete).

        Default: apply :attr:`on_removal` (stop servers, lock the account) and
        :attr:`removed_homes_archive_dir`. Tokens and cookies are revoked by the hub pass
        (:mod:`.access`) whatever this does.
        """
        await self.removal.apply(username)

    # ---- userlist ---------------------------------------------------------------------------

    def reserved_reason(self, username: str) -> str | None:
        """Why ``username`` must never be handed out (reserved/system account), else None."""
        return naming.reserved_reason(username, self._reserved)

    def _on_change(self, old: Userlist, new: Userlist) -> None:
        self.background.spawn(self.access.sync())  # tokens, cookies, admin flags: right away
        for name in sorted(old.usernames - new.usernames):
            self.provisioner.forget(name)
            self.log.info("user=%s removed from the userlist: access revoked", name)
            self.background.spawn(self.on_user_removed(name, old.get(name)))
        for name in sorted(new.usernames - old.usernames):
            self.log.info("user=%s added to the userlist", name)

    def userlist_entry(self, username: str) -> UserlistEntry | None:
        """The hot-reloaded entry of ``username`` (None if not listed or no list loaded)."""
        return self.userlist.entry(username)

    async def poll_userlist(self) -> None:
        """Re-check the file, then apply the list to the hub's users (see :mod:`.access`).

        Runs every ``min(userlist_poll_interval, auth_refresh_age / 2)`` seconds. A changed
        file is re-read in a worker thread, then changes are acted on here.
        """
        if await self.userlist.refresh():
            await self.access.sync()

    def wanted_access(self, username: str, userlist: Userlist | None = None) -> Wanted:
        """What the userlist (``userlist``, default the current one) grants ``username``."""
        entry = self.userlist.entry(username) if userlist is None else userlist.get(username)
        groups = self.groups_for(entry) if entry is not None and self.manage_groups else None
        return access.wanted(
            username, entry, groups, admin_users=self.admin_users, admin_groups=self.admin_groups
        )

    # ---- JupyterHub / oauthenticator hooks --------------------------------------------------

    def user_info_to_username(self, user_info):
        identity = login.provider_identity(lambda: self.identity_from_userinfo(user_info), self.log)
        # oauthenticator normalizes this right away: that call must not feed the admin-page
        # memo, or anyone could plant an identity for a name an admin is about to add
        self.identities.from_provider(identity)
        return identity

    def normalize_username(self, username):
        try:
            name = self.username_for_identity(username)
        except naming.NamingError as e:
            self.log.warning("identity %r has no system username: %s", username, e)
            return username.strip().lower()  # rejected by validate_username
        self.identities.normalized(username, name)
        return name

    def validate_username(self, username):
        return naming.is_valid_posix_name(username) and super().validate_username(username)

    def check_blocked_users(self, username, authentication=None):
        login.check_not_reserved(username, self.reserved_reason(username), self.log)
        return super().check_blocked_users(username, authentication)

    async def update_auth_model(self, auth_model):
        auth_model = await super().update_auth_model(auth_model)
        user_info = auth_model["auth_state"][self.user_auth_state_key]
        identity = self.identity_from_userinfo(user_info)
        login.check_verified(
            identity, user_info, required=self.require_verified_email, log=self.log
        )
        auth_model["admin"] = self.wanted_access(auth_model["name"]).admin
        return auth_model

    async def get_user_groups(self, auth_state):
        identity = self.identity_from_userinfo(auth_state[self.user_auth_state_key])
        try:
            name = self.username_for_identity(identity)  # provider data: no admin-page memo
        except naming.NamingError:
            return set()
        entry = self.userlist_entry(name)
        return set(self.groups_for(entry)) if entry else set()

    async def check_allowed(self, username, auth_model):
        try:
            entry = self.userlist.current().get(username)
        except UserlistLoadError as e:
            self.log.error("user=%s refused: %s", username, e)
            raise refusal.list_unavailable() from None
        identity = username
        if auth_model and auth_model.get("auth_state"):
            user_info = auth_model["auth_state"][self.user_auth_state_key]
            identity = self.identity_from_userinfo(user_info)
        login.check_listed(username, identity, entry, self.log)
        await self.provisioner.ensure(username, during_login=True)
        return True

    async def refresh_user(self, user, handler=None, **kwargs):
        want = self.wanted_access(user.name)
        if not want.listed:
            self.log.info("user=%s not in the userlist any more: login required", user.name)
            return False
        result = await super().refresh_user(user, handler, **kwargs)
        if result is False:
            return False
        model = {} if result is True else dict(result)
        model["admin"] = want.admin
        if want.groups is not None:
            model["groups"] = sorted(want.groups)
        return model

    async def add_user(self, user):
        """Called at login, for admin-page adds and for every database user at hub start."""
        if not self.validate_username(user.name):
            raise ValueError(f"Invalid username: {user.name}")
        self._start_polling()
        listed = self.userlist.listed(user.name)
        if isinstance(user, orm.User):  # hub start: cheap, no subprocess (accounts: at login)
            if not listed:
                self.log.warning(
                    "user=%s is in the hub database but not in the userlist: refused at login",
                    user.name,
                )
            return
        why = self.reserved_reason(user.name)
        if why:
            raise ValueError(why)
        admin = bool(getattr(user, "admin", False))
        if listed or await self.admin_page.add(user.name, admin=admin):
            await self.provisioner.ensure(user.name)

    async def delete_user(self, user):
        """Admin-page delete: remove the user's line (if configured), then removal actions."""
        super().delete_user(user)
        if await self.admin_page.remove(user.name):
            await self.poll_userlist()

    async def pre_spawn_start(self, user, spawner):
        if not self.wanted_access(user.name).listed and self.userlist.in_force() is not None:
            # not even an admin starts a server for a removed user (nor unlocks their account)
            self.log.warning("user=%s is not in the userlist: server not started", user.name)
            raise refusal.no_server(user.name)
        result = super().pre_spawn_start(user, spawner)
        if inspect.isawaitable(result):
            await result
        # the server re-asks the hub about a cookie or token at least this often, so that
        # revoked credentials stop working there within auth_refresh_age
        max_age = access.server_cache_max_age(self.auth_refresh_age)
        spawner.args = access.server_args(spawner.args, max_age)
        await self.provisioner.ensure(user.name)


class UserlistOAuthenticator(UserlistAuthenticator, OIDCDiscovery, GenericOAuthenticator):
    """Generic OAuth2/OIDC login restricted by the userlist (entry point ``userlist``).

    With ``oidc_issuer`` set, the provider's endpoints come from its discovery document
    (:mod:`.oidc_discovery`).
    """


class UserlistGitHubOAuthenticator(UserlistAuthenticator, GitHubOAuthenticator):
    """GitHub login restricted by a userlist of GitHub logins (entry point ``userlist-github``)."""


class UserlistGoogleOAuthenticator(UserlistAuthenticator, GoogleOAuthenticator):
    """Google login restricted by a userlist of emails (entry point ``userlist-google``).

    Domains are never stripped by ``strip_domain`` here: use :attr:`domain_rules`.
    """

    @default("strip_domain")
    def _default_strip_domain(self):
        return False
