"""OAuth login restricted by a hot-reloaded userlist, with system users and homes.

:class:`UserlistAuthenticatorMixin` works on any oauthenticator class; three ready classes
are registered as JupyterHub entry points: ``userlist`` (:class:`UserlistOAuthenticator`,
generic OAuth2/OIDC), ``userlist-github`` and ``userlist-google``.

Glue only: parsing lives in :mod:`.userlist`, names in :mod:`.naming`, provider identities in
:mod:`.identities`, configuration in :mod:`.config`, the pages of refused users in
:mod:`.refusal`, accounts and homes in :mod:`.provisioning` (over
:mod:`jupyterhub_lab_ext.accounts`), removal actions in :mod:`.removal`, applying the list to the
hub's database (tokens, cookies, admin flag, groups) in :mod:`.access`, background work in
:mod:`.background`. Each of those objects gets what it needs in its constructor.

Override points for subclasses (documented in docs/authenticator.md, "Subclassing"):
:meth:`~UserlistAuthenticatorMixin.identity_from_userinfo`,
:meth:`~UserlistAuthenticatorMixin.username_for_identity`,
:meth:`~UserlistAuthenticatorMixin.home_for`,
:meth:`~UserlistAuthenticatorMixin.account_spec_for`,
:meth:`~UserlistAuthenticatorMixin.groups_for`,
:meth:`~UserlistAuthenticatorMixin.on_user_removed`.
"""

from __future__ import annotations

import inspect
import os

from jupyterhub import orm
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.google import GoogleOAuthenticator
from traitlets import default

from jupyterhub_lab_ext.accounts.spec import AccountSpec
from jupyterhub_lab_ext.accounts.system_users import SystemUsers
from jupyterhub_lab_ext.auth import naming, refusal
from jupyterhub_lab_ext.auth.access import (
    HubAccess,
    Wanted,
    check_interval,
    server_args,
    server_cache_max_age,
)
from jupyterhub_lab_ext.auth.admin_page import AdminPageEdits
from jupyterhub_lab_ext.auth.background import BackgroundTasks
from jupyterhub_lab_ext.auth.config import UserlistAuthConfig
from jupyterhub_lab_ext.auth.identities import IdentityMemo, claims_unverified
from jupyterhub_lab_ext.auth.oidc_discovery import OIDCDiscoveryMixin
from jupyterhub_lab_ext.auth.provisioning import Provisioner
from jupyterhub_lab_ext.auth.removal import RemovalActions, ServerStopper
from jupyterhub_lab_ext.auth.userlist import (
    Userlist,
    UserlistEntry,
    UserlistFile,
    UserlistLoadError,
    identity_key,
)
from jupyterhub_lab_ext.auth.watch import UserlistWatch

__all__ = [
    "UserlistAuthenticatorMixin",
    "UserlistOAuthenticator",
    "UserlistGitHubOAuthenticator",
    "UserlistGoogleOAuthenticator",
]


class UserlistAuthenticatorMixin(UserlistAuthConfig):
    """Userlist allow/admin/groups, idempotent POSIX names and system users for any
    oauthenticator class: ``class MyAuth(UserlistAuthenticatorMixin, SomeOAuthenticator)``.
    """

    # The bound within which a userlist edit reaches every credential (see .access);
    # JupyterHub's refresh costs us one stat(), so a short default is cheap.
    @default("auth_refresh_age")
    def _default_auth_refresh_age(self):
        return 60

    # group:NAME in the file -> hub groups (JupyterHub's manage_groups semantics)
    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.userlist_file:
            raise ValueError(f"{type(self).__name__}.userlist_file must be set")
        if self.allow_all:
            self.log.warning("allow_all is True: the userlist %s is bypassed!", self.userlist_file)
        if self.archive_removed_homes and self.on_removal == "revoke":
            self.log.warning("archive_removed_homes needs on_removal 'stop' or 'lock': ignored")
        self._normalize = naming.make_normalizer(
            prefix=self.username_prefix, domain_rules=self.domain_rules
        )
        self._system_names: frozenset[str] | None = None
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
        self.admin_page = AdminPageEdits(self.userlist, self.identities, log)
        self.background = BackgroundTasks(log)
        su = self.system_users if self.create_system_users else None
        self.provisioner = None
        if su is not None:
            self.provisioner = Provisioner(
                su,
                spec_for=self.account_spec_for,
                home_template=self.home_template,
                template_readonly=self.template_readonly,
                log=log,
            )
        self.servers = ServerStopper(self.parent, is_listed=self._is_listed, log=log)
        self.removal = RemovalActions(
            mode=self.on_removal,
            archive_dir=self.archive_removed_homes,
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
        interval = check_interval(self.userlist_poll_interval, self.auth_refresh_age)
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
        :attr:`archive_removed_homes`. Tokens and cookies are revoked by the hub pass
        (:mod:`.access`) whatever this does.
        """
        await self.removal.apply(username)

    # ---- userlist ---------------------------------------------------------------------------

    def reserved_reason(self, username: str) -> str | None:
        """Why ``username`` must never be handed out (reserved/system account), else None."""
        if self._system_names is None:  # read once: passwd database + reserved_usernames
            loaded = self.system_names_loader(self.uid_min)
            self._system_names = frozenset(loaded) | frozenset(self.reserved_usernames)
        return naming.reserved_reason(username, self._system_names)

    def _on_change(self, old: Userlist, new: Userlist) -> None:
        self.background.spawn(self.access.sync())  # tokens, cookies, admin flags: right away
        for name in sorted(old.usernames - new.usernames):
            if self.provisioner is not None:
                self.provisioner.forget(name)
            self.log.info("user=%s removed from the userlist: access revoked", name)
            self.background.spawn(self.on_user_removed(name, old.get(name)))
        for name in sorted(new.usernames - old.usernames):
            self.log.info("user=%s added to the userlist", name)

    def userlist_entry(self, username: str) -> UserlistEntry | None:
        """The hot-reloaded entry of ``username`` (None if not listed or no list loaded)."""
        return self.userlist.entry(username)

    def _is_listed(self, username: str) -> bool:
        return self.userlist.entry(username) is not None

    async def poll_userlist(self) -> None:
        """Re-check the file, then apply the list to the hub's users (see :mod:`.access`).

        Runs every ``min(userlist_poll_interval, auth_refresh_age / 2)`` seconds. A changed
        file is re-read in a worker thread, then changes are acted on here.
        """
        if await self.userlist.refresh():
            await self.access.sync()

    def wanted_access(self, username: str, userlist: Userlist | None = None) -> Wanted:
        """What the userlist (``userlist``, default the current one) grants ``username``."""
        if userlist is None:
            entry = self.userlist_entry(username)
        else:
            entry = userlist.get(username)
        if entry is None:
            return Wanted(listed=False, admin=self._admin_for(username, None))
        groups = frozenset(self.groups_for(entry)) if self.manage_groups else None
        return Wanted(listed=True, admin=self._admin_for(username, entry), groups=groups)

    def _admin_for(self, username: str, entry: UserlistEntry | None) -> bool:
        """``admin`` on the line, ``admin_users``, or a file group listed in ``admin_groups``."""
        if entry is None:
            return username in self.admin_users
        in_admin_group = self.manage_groups and bool(
            set(self.groups_for(entry)) & self.admin_groups
        )
        return entry.admin or username in self.admin_users or in_admin_group

    # ---- JupyterHub / oauthenticator hooks --------------------------------------------------

    def user_info_to_username(self, user_info):
        try:
            identity = self.identity_from_userinfo(user_info)
        except ValueError as e:  # oauthenticator: the username claim is missing or empty
            self.log.error("login refused: %s", e)
            identity = None
        if not isinstance(identity, str) or not identity:
            # provider data of another type (a number, a list) must not become a 500
            raise refusal.no_identity()
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
        why = self.reserved_reason(username)
        if why:
            self.log.warning("user=%s refused: %s", username, why)
            raise refusal.reserved(why)
        return super().check_blocked_users(username, authentication)

    async def update_auth_model(self, auth_model):
        auth_model = await super().update_auth_model(auth_model)
        user_info = auth_model["auth_state"][self.user_auth_state_key]
        identity = self.identity_from_userinfo(user_info)
        if self.require_verified_email and "@" in identity and claims_unverified(user_info):
            self.log.warning("refusing %r: email address not verified by the provider", identity)
            raise refusal.unverified_email(identity)
        entry = self.userlist_entry(auth_model["name"])
        auth_model["admin"] = self._admin_for(auth_model["name"], entry)
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
        if entry is None:
            self.log.warning("user=%s refused: %r is not in the userlist", username, identity)
            raise refusal.not_listed(identity)
        if identity_key(entry.identity) != identity_key(identity):
            self.log.warning(
                "user=%s refused: identity %r is not %r (line %d)",
                username,
                identity,
                entry.identity,
                entry.lineno,
            )
            raise refusal.not_listed(identity)
        await self._provision(username, during_login=True)
        return True

    async def refresh_user(self, user, handler=None, **kwargs):
        entry = self.userlist_entry(user.name)
        if entry is None:
            self.log.info("user=%s not in the userlist any more: login required", user.name)
            return False
        result = await super().refresh_user(user, handler, **kwargs)
        if result is False:
            return False
        model = {} if result is True else dict(result)
        model["admin"] = self._admin_for(user.name, entry)
        if self.manage_groups:
            model["groups"] = sorted(self.groups_for(entry))
        return model

    async def add_user(self, user):
        """Called at login, for admin-page adds and for every database user at hub start."""
        if not self.validate_username(user.name):
            raise ValueError(f"Invalid username: {user.name}")
        self._start_polling()
        if isinstance(user, orm.User):
            # hub start: cheap, no subprocess; accounts are ensured at login / before spawn
            if self.userlist_entry(user.name) is None:
                self.log.warning(
                    "user=%s is in the hub database but not in the userlist: refused at login",
                    user.name,
                )
            return
        why = self.reserved_reason(user.name)
        if why:
            raise ValueError(why)
        if self.userlist_entry(user.name) is None:
            if not self.sync_admin_page_changes:
                self.log.warning(
                    "user=%s added on the admin page but not in the userlist: cannot log in",
                    user.name,
                )
                return
            await self.admin_page.add(user.name, admin=bool(getattr(user, "admin", False)))
        await self._provision(user.name)

    async def delete_user(self, user):
        """Admin-page delete: remove the user's line (if configured), then removal actions."""
        super().delete_user(user)
        if self.sync_admin_page_changes and await self.admin_page.remove(user.name):
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
        spawner.args = server_args(spawner.args, server_cache_max_age(self.auth_refresh_age))
        await self._provision(user.name)

    # ---- system users -----------------------------------------------------------------------

    @default("system_users")
    def _default_system_users(self):
        return SystemUsers(
            log=self.log,
            state_dir=self.system_users_state_dir,
            allow_existing=self.allow_existing_system_users,
            uid_min=self.uid_min,
        )

    async def _provision(self, username: str, *, during_login: bool = False) -> None:
        """Ensure account + home once per process per user (see :mod:`.provisioning`)."""
        if self.provisioner is not None:
            await self.provisioner.ensure(username, during_login=during_login)


class UserlistOAuthenticator(UserlistAuthenticatorMixin, OIDCDiscoveryMixin, GenericOAuthenticator):
    """Generic OAuth2/OIDC login restricted by the userlist (entry point ``userlist``).

    With ``oidc_issuer`` set, the provider's endpoints come from its discovery document
    (:mod:`.oidc_discovery`).
    """


class UserlistGitHubOAuthenticator(UserlistAuthenticatorMixin, GitHubOAuthenticator):
    """GitHub login restricted by a userlist of GitHub logins (entry point ``userlist-github``)."""


class UserlistGoogleOAuthenticator(UserlistAuthenticatorMixin, GoogleOAuthenticator):
    """Google login restricted by a userlist of emails (entry point ``userlist-google``).

    Domains are never stripped by ``strip_domain`` here: use :attr:`domain_rules`.
    """

    @default("strip_domain")
    def _default_strip_domain(self):
        return False
