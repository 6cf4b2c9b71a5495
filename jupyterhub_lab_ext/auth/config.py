"""Configuration of the userlist authenticator (the traits of ``UserlistAuthenticatorMixin``).

Kept apart from the behaviour in :mod:`.authenticator` so each module stays small. Set these
as ``c.UserlistOAuthenticator.<name>`` (or on the GitHub/Google classes, or on
``c.UserlistAuthenticatorMixin`` for all of them).
"""

from __future__ import annotations

from traitlets import (
    Any,
    Bool,
    Callable,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    Set,
    Unicode,
    default,
    validate,
)
from traitlets.config import LoggingConfigurable

from jupyterhub_lab_ext.accounts import logindefs
from jupyterhub_lab_ext.auth import naming


class UserlistAuthConfig(LoggingConfigurable):
    """Traits shared by every userlist authenticator class."""

    userlist_file = Unicode(
        "",
        help="""
        Path of the userlist file: who may log in, who is admin, which hub groups they are in.

        One user a line, ``IDENTITY [admin] [group:NAME ...]``; ``#`` starts a comment; blank
        lines are fine. IDENTITY is the provider login (GitHub) or email (Google, most OIDC
        providers), matched case-insensitively. Example::

            # teachers
            alice@example.org admin group:teachers
            bob@example.org group:physics

        The file is re-read when it changes (no restart): additions can log in at once;
        within ``auth_refresh_age`` seconds every token and cookie of a removed user is
        refused (see :attr:`on_removal`) and a removed ``admin`` loses admin rights, at the
        hub, their servers and this package's services. If an edit breaks the file, the error
        is logged with ``file:line`` and the last good version stays in force. Check a file with
        ``jupyterhub-lab-ext userlist check FILE``. A file that every local user could
        rewrite (world-writable, or in a world-writable directory) is refused: keep it in a
        root-owned directory such as ``/etc/jupyterhub``. Required.
        """,
    ).tag(config=True, allow_config=True)

    userlist_poll_interval = Float(
        10.0,
        help="""
        Seconds between two background passes: check :attr:`userlist_file` for changes, then
        apply it to the hub's database (revoke the tokens and cookies of users without a line,
        set the admin flag and groups of listed users; see :attr:`on_removal`), so edits take
        effect even when the user makes no request. The pass runs at least every
        ``auth_refresh_age / 2`` seconds whatever this says. Logins and requests always check
        the file themselves. 0: only ``auth_refresh_age`` sets the pace.
        """,
    ).tag(config=True)

    sync_admin_page_changes = Bool(
        True,
        help="""
        Write users an admin adds on the hub's admin page (or with the REST API) into
        :attr:`userlist_file`, and remove the lines of users an admin deletes there.

        Edits are atomic (temporary file + rename) and keep comments and the order of lines.
        With False, the file is the only source and admin-page additions cannot log in.
        """,
    ).tag(config=True)

    username_prefix = Unicode(
        "",
        help="""
        Prefix of every system username, e.g. ``"jh-"`` so that hub users can never clash with
        accounts an admin creates by hand (``alice`` -> ``jh-alice``). Must match
        ``[a-z_][a-z0-9_-]*``. Changing it later gives existing users new accounts.
        """,
    ).tag(config=True)

    domain_rules = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""
        How the domain of an email identity appears in the system username.

        By default the domain is kept, encoded (``alice@gmail.com`` -> ``alice-gmail-com``),
        so that identities from different domains never share an account. For your own
        domains, strip it (value ``""``) or replace it by a short tag::

            c.UserlistOAuthenticator.domain_rules = {
                "example.org": "",              # alice@example.org -> alice
                "students.example.org": "stu",  # bob@students.example.org -> bob-stu
            }
        """,
    ).tag(config=True)

    @validate("domain_rules")
    def _validate_domain_rules(self, proposal):
        return naming.validate_domain_rules(proposal.value)

    @validate("home_mode")
    def _validate_home_mode(self, proposal):
        if not 0 <= proposal.value <= 0o777 or (proposal.value & 0o700) != 0o700:
            raise ValueError(f"home_mode {proposal.value:#o}: expected e.g. 0o700 or 0o750")
        return proposal.value

    @validate("username_prefix")
    def _validate_prefix(self, proposal):
        return naming.validate_prefix(proposal.value)

    reserved_usernames = Set(
        Unicode(),
        help="""
        Extra system usernames never handed out to hub users, on top of the built-in list
        (``root``, ``daemon``, ``nobody``, ...) and every account with a uid below
        :attr:`uid_min`. A listed identity mapping to one of them is a userlist error and its
        login is refused.
        """,
    ).tag(config=True)

    uid_min = Integer(
        help="""
        Lowest uid of a normal user; accounts below it are system accounts whose names are
        never handed out. Default: ``UID_MIN`` of ``/etc/login.defs`` (usually 1000).
        """,
    ).tag(config=True)

    @default("uid_min")
    def _default_uid_min(self):
        return logindefs.uid_min()

    system_names_loader = Callable(
        help="""
        Advanced/testing: ``loader(uid_min) -> set of names`` of existing system accounts.
        Default reads the passwd database once.
        """,
    ).tag(config=True)

    @default("system_names_loader")
    def _default_system_names_loader(self):
        return lambda uid_min: naming.load_system_names(uid_min=uid_min)

    require_verified_email = Bool(
        True,
        help="""
        Refuse login (403, with an explanation) when the identity is an email and the provider
        says it is not verified (``email_verified: false``, Google's ``verified_email``; a string
        such as ``"false"`` counts as false too; an absent claim is not a refusal).
        Keep this on when the userlist is keyed by email: anyone can otherwise create a
        provider account claiming a listed address.
        """,
    ).tag(config=True)

    create_system_users = Bool(
        True,
        help="""
        Create a system user, its group and its home directory at first login (and check it
        before each spawn). The work runs in subprocesses and threads, never blocking the hub.
        Set False when accounts come from elsewhere (LDAP/SSSD) or the spawner needs none.
        """,
    ).tag(config=True)

    allow_existing_system_users = Bool(
        False,
        help="""
        Allow a hub user to be mapped onto a system account that already exists and was not
        created by jupyterhub-lab-ext (e.g. a staff member's login on the machine). Off by
        default: such logins are refused with a message, so an identity can never take over
        an existing account. Accounts below :attr:`uid_min` are refused regardless.
        """,
    ).tag(config=True)

    home_root = Unicode(
        "/home",
        help="""
        Directory under which homes are created (``home_root/<username>``), e.g. an NFS mount
        such as ``/mnt/nfs/home``. Override :meth:`home_for` for other layouts. It and its
        parents must be owned by root and not writable by group or others (for the home root
        itself not even with the sticky bit: anyone could create a future user's home first).
        """,
    ).tag(config=True)

    home_mode = Integer(
        0o700,
        help="""
        Permission bits of a new home directory: ``0o700`` (private, default) or e.g.
        ``0o750`` to let the user's group read it. Applied when the home is created.
        """,
    ).tag(config=True)

    home_template = Unicode(
        "",
        help="""
        Directory of files (e.g. course notebooks) copied into a new home at first login,
        owned by the user. Symlinks leaving the template are never followed, user files are
        never overwritten. Push later additions to existing homes with
        ``jupyterhub-lab-ext homes sync-template``. Empty: nothing is copied.
        """,
    ).tag(config=True)

    template_readonly = Bool(
        False,
        help="""
        Make the template files copied into homes read-only (users duplicate a notebook to
        edit it), so later template updates can replace unmodified originals.
        """,
    ).tag(config=True)

    system_group = Unicode(
        "",
        help="""
        Primary group of created users (created if missing), e.g. ``"jupyterusers"``.
        Empty: a personal group named like the user.
        """,
    ).tag(config=True)

    system_gid = Integer(
        None,
        allow_none=True,
        help="GID of :attr:`system_group` if it has to be created (None: the system picks).",
    ).tag(config=True)

    supplementary_groups = List(
        Unicode(),
        help="Extra groups created users join, e.g. ``['audio']`` (must already be allowed).",
    ).tag(config=True)

    user_shell = Unicode("/bin/bash", help="Login shell of created users.").tag(config=True)

    system_users_state_dir = Unicode(
        "/var/lib/jupyterhub-lab-ext",
        help="""
        Root-owned directory where jupyterhub-lab-ext records which accounts it created (so
        it never touches accounts it did not create).
        """,
    ).tag(config=True)

    on_removal = Enum(
        ["revoke", "stop", "lock"],
        default_value="revoke",
        help="""
        What happens when a user's line disappears from the userlist (or the admin deletes the
        user on the admin page). Every value revokes all of the user's credentials within
        ``auth_refresh_age`` seconds: their API tokens, the OAuth tokens behind their cookies
        at single-user servers and services, their servers' own hub tokens, and the hub login
        cookie; the login is refused. Then:

        - ``"revoke"`` (default): running servers keep running, unreachable with the user's
          credentials, until an admin or the idle culler stops them;
        - ``"stop"``: the user's servers are also stopped (at the next background pass);
        - ``"lock"``: the servers are stopped and the system account is locked (password
          locked, account expired). Re-adding the line unlocks it at the next login.

        Homes are never deleted; see :attr:`archive_removed_homes`.
        """,
    ).tag(config=True)

    archive_removed_homes = Unicode(
        "",
        help="""
        Directory where the home of a removed user is archived as
        ``<username>-<UTC time>.tar.gz`` (mode 0600) after its servers stopped. Only with
        :attr:`on_removal` ``"stop"`` or ``"lock"``. The home itself stays. Empty: no archive.
        """,
    ).tag(config=True)

    system_users = Any(
        help="Advanced/testing: the SystemUsers object used (default built from the traits above)."
    )
