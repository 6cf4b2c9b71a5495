"""What a refused user reads: the HTTP errors of refused logins and spawns.

Each page shows ``status : <standard reason>`` and then one of the messages below, written for
the person at the browser: what happened and whom to ask. Details (file lines, commands, stderr)
go to the hub log, never into these pages.
"""

from __future__ import annotations

import http.client

from tornado.web import HTTPError

_ASK_ADMIN_LOG = "The administrator can see why in the hub log."


def refusal(status: int, message: str) -> HTTPError:
    """An HTTPError whose page shows ``status : <standard reason>`` and then ``message``."""
    return HTTPError(status, message, reason=http.client.responses[status])


def no_identity() -> HTTPError:
    """The provider sent no usable login or email (missing, empty, or not a string)."""
    return refusal(
        403,
        "Login refused: the identity provider did not send a usable login or email for you. "
        + _ASK_ADMIN_LOG,
    )


def reserved(why: str) -> HTTPError:
    """The name is a reserved or system account name (``why`` says which)."""
    return refusal(403, f"Login refused: {why}.")


def unverified_email(identity: str) -> HTTPError:
    return refusal(
        403,
        f"Login refused: your email address {identity} is not verified by the identity "
        "provider. Verify it there, then log in again.",
    )


def list_unavailable() -> HTTPError:
    """No userlist has ever loaded: nobody can be checked, so nobody gets in."""
    return refusal(
        403, "Login is unavailable: the hub's user list could not be loaded. " + _ASK_ADMIN_LOG
    )


def not_listed(identity: str) -> HTTPError:
    return refusal(
        403,
        f"Login refused: {identity} is not on this hub's user list. "
        "Ask the hub administrator to add you.",
    )


def no_server(username: str) -> HTTPError:
    """A spawn for a user without a line (not even an admin starts one)."""
    return refusal(403, f"{username} is not on this hub's user list: no server can be started.")


def existing_account(username: str) -> HTTPError:
    return refusal(
        403,
        f"Login refused: the system account name {username!r} belongs to an existing account "
        "that this hub did not create. Ask the hub administrator.",
    )


def account_failed() -> HTTPError:
    return refusal(
        500,
        "Your system account could not be created; the administrator can see why in the hub log.",
    )
