"""The options of :class:`~.authenticator.UserlistAuthenticator`: what each one does, for the
admin, and which values it accepts.

The help texts are what the configuration reference (docs/reference/config.md, generated from the
classes) and ``jupyterhub --help-all`` show: one constant per option, named like it. The checks
are called by the ``@validate`` methods next to the declarations (type, default, bounds) in the
class, so a bad value in ``jupyterhub_config.py`` stops the hub with a :class:`TraitError`.
"""

from __future__ import annotations

from collections.abc import Callable

from traitlets import TraitError


def checked(check: Callable, proposal):
    """``check(proposal.value)``; its ValueError becomes a TraitError naming the option."""
    try:
        return check(proposal.value)
    except ValueError as e:
        raise TraitError(f"{proposal.trait.name}: {e}") from None


def check_home_mode(mode: int) -> int:
    """A home mode gives the owner rwx and has no special bits (``0o700``, ``0o750``...)."""
    if not 0 <= mode <= 0o777 or (mode & 0o700) != 0o700:
        raise ValueError(f"{mode:#o}: expected e.g. 0o700 or 0o750")
    return mode


# ---- help texts ------------------------------------------------------------------------------

USERLIST_FILE = """
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
"""

USERLIST_POLL_INTERVAL = """
Seconds between two background passes: check :attr:`userlist_file` for changes, then
apply it to the hub's database (revoke the tokens and cookies of users without a line,
set the admin flag and groups of listed users; see :attr:`on_removal`), so edits take
effect even when the user makes no request. The pass runs at least every
``auth_refresh_age / 2`` seconds whatever this says. Logins and requests always check
the file themselves. 0: only ``auth_refresh_age`` sets the pace.
"""

SYNC_ADMIN_PAGE_CHANGES = """
Write users an admin adds on the hub's admin page (or with the REST API) into
:attr:`userlist_file`, and remove the lines of users an admin deletes there.

Edits are atomic (temporary file + rename) and keep comments and the order of lines.
With False, the file is the only source and admin-page additions cannot log in.
"""

USERNAME_PREFIX = """
Prefix of every system username, e.g. ``"jh-"`` so that hub users can never clash with
accounts an admin creates by hand (``alice`` -> ``jh-alice``). Must match
``[a-z_][a-z0-9_-]*``. Changing it later gives existing users new accounts.
"""

DOMAIN_RULES = """
How the domain of an email identity appears in the system username.

By default the domain is kept, encoded (``alice@gmail.com`` -> ``alice-gmail-com``),
so that identities from different domains never share an account. For your own
domains, strip it (value ``""``) or replace it by a short tag::

    c.UserlistAuthenticator.domain_rules = {
        "example.org": "",              # alice@example.org -> alice
        "students.example.org": "stu",  # bob@students.example.org -> bob-stu
    }
"""

RESERVED_USERNAMES = """
Extra system usernames never handed out to hub users, on top of the built-in list
(``root``, ``daemon``, ``nobody``, ...) and every account with a uid below
:attr:`uid_min`. A listed identity mapping to one of them is a userlist error and its
login is refused.
"""

UID_MIN = """
Lowest uid of a normal user; accounts below it are system accounts whose names are
never handed out. Default: ``UID_MIN`` of ``/etc/login.defs`` (usually 1000).
"""

REQUIRE_VERIFIED_EMAIL = """
Refuse login (403, with an explanation) when the identity is an email and the provider
says it is not verified (``email_verified: false``, Google's ``verified_email``; a string
such as ``"false"`` counts as false too; an absent claim is not a refusal).
Keep this on when the userlist is keyed by email: anyone can otherwise create a
provider account claiming a listed address.
"""

CREATE_SYSTEM_USERS = """
Create a system user, its group and its home directory at first login (and check it
before each spawn). The work runs in subprocesses and threads, never blocking the hub.
Set False when accounts come from elsewhere (LDAP/SSSD) or the spawner needs none.
"""

ALLOW_EXISTING_SYSTEM_USERS = """
Allow a hub user to be mapped onto a system account that already exists and was not
created by jupyterhub-lab-ext (e.g. a staff member's login on the machine). Off by
default: such logins are refused with a message, so an identity can never take over
an existing account. Accounts below :attr:`uid_min` are refused regardless.
"""

HOME_ROOT = """
Directory under which homes are created (``home_root/<username>``), e.g. an NFS mount
such as ``/mnt/nfs/home``. Override :meth:`home_for` for other layouts. It and its
parents must be owned by root and not writable by group or others (for the home root
itself not even with the sticky bit: anyone could create a future user's home first).
"""

HOME_MODE = """
Permission bits of a new home directory: ``0o700`` (private, default) or e.g.
``0o750`` to let the user's group read it. Applied when the home is created.
"""

HOME_TEMPLATE = """
Directory of files (e.g. course notebooks) copied into a new home at first login,
owned by the user. Symlinks leaving the template are never followed, user files are
never overwritten. Push later additions to existing homes with
``jupyterhub-lab-ext homes sync-template``. Empty: nothing is copied.
"""

TEMPLATE_READONLY = """
Make the template files copied into homes read-only (users duplicate a notebook to
edit it), so later template updates can replace unmodified originals.
"""

SYSTEM_GROUP = """
Primary group of created users (created if missing), e.g. ``"jupyterusers"``.
Empty: a personal group named like the user.
"""

SYSTEM_GID = """
GID of :attr:`system_group` if it has to be created (None: the system picks).
"""

SUPPLEMENTARY_GROUPS = """
Extra groups created users join, e.g. ``['audio']`` (must already be allowed).
"""

USER_SHELL = """
Login shell of created users.
"""

SYSTEM_USERS_STATE_DIR = """
Root-owned directory where jupyterhub-lab-ext records which accounts it created (so
it never touches accounts it did not create).
"""

ON_REMOVAL = """
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

Homes are never deleted; see :attr:`removed_homes_archive_dir`.
"""

REMOVED_HOMES_ARCHIVE_DIR = """
Directory where the home of a removed user is archived as
``<username>-<UTC time>.tar.gz`` (mode 0600) after its servers stopped. Only with
:attr:`on_removal` ``"stop"`` or ``"lock"``. The home itself stays. Empty: no archive.
"""
