"""The checks of one login, each raising the page a refused user reads (:mod:`.refusal`).

Small functions over plain values, called by the authenticator's JupyterHub hooks; the log line
for the admin says why, the page says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from jupyterhub_lab_ext.auth import refusal
from jupyterhub_lab_ext.auth.identities import claims_unverified
from jupyterhub_lab_ext.auth.userlist import UserlistEntry, identity_key

Log = logging.Logger | logging.LoggerAdapter


def provider_identity(read: Callable[[], object], log: Log) -> str:
    """The identity ``read()`` returns from the provider's user info, or a 403.

    ``read`` raising ValueError (oauthenticator: the claim is missing or empty) or returning
    anything but a non-empty string (a number, a list) is a refusal, never a 500.
    """
    try:
        identity = read()
    except ValueError as e:
        log.error("login refused: %s", e)
        identity = None
    if not isinstance(identity, str) or not identity:
        raise refusal.no_identity()
    return identity


def check_not_reserved(username: str, why: str | None, log: Log) -> None:
    """Refuse ``username`` when ``why`` (a reserved-name reason) is set."""
    if why:
        log.warning("user=%s refused: %s", username, why)
        raise refusal.reserved(why)


def check_verified(identity: str, user_info: Mapping, *, required: bool, log: Log) -> None:
    """Refuse an email identity the provider says is not verified (when ``required``)."""
    if required and "@" in identity and claims_unverified(user_info):
        log.warning("refusing %r: email address not verified by the provider", identity)
        raise refusal.unverified_email(identity)


def check_listed(username: str, identity: str, entry: UserlistEntry | None, log: Log) -> None:
    """Refuse unless ``entry`` (the line of ``username``) is there and names ``identity``.

    Names are not injective (``a.b`` and ``a_b`` are both user ``a_b``): the identity itself
    must match the line, case-insensitively.
    """
    if entry is None:
        log.warning("user=%s refused: %r is not in the userlist", username, identity)
        raise refusal.not_listed(identity)
    if identity_key(entry.identity) != identity_key(identity):
        log.warning(
            "user=%s refused: identity %r is not %r (line %d)",
            username,
            identity,
            entry.identity,
            entry.lineno,
        )
        raise refusal.not_listed(identity)
