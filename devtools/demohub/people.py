"""The demo's people: their identities at the local provider, the first userlist, and who of
them may log in (read back from the userlist file the hub uses, so a live edit shows up too)."""

from __future__ import annotations

from dataclasses import dataclass

from jupyterhub_lab_ext.auth.userlist import identity_key

#: provider login -> claims the local OIDC provider sends (any password is accepted)
IDENTITIES: dict[str, dict] = {
    "alice": {"email": "alice@example.org", "email_verified": True, "groups": ["staff"]},
    "bob": {"email": "bob@example.org", "email_verified": True, "groups": ["students"]},
    "carol": {"email": "carol@example.org", "email_verified": True, "groups": ["students"]},
    # not in the userlist: refused
    "eve": {"email": "eve@example.org", "email_verified": True},
    # listed by email, but the provider says the address is not verified: refused
    "mallory": {
        "preferred_username": "mallory@example.org",
        "email": "mallory@example.org",
        "email_verified": False,
    },
}

#: the login that owns a personal environment made by the demo
ENV_OWNER = "alice"

USERLIST = """\
# Demo userlist: IDENTITY [admin] [group:NAME ...]. Edits apply while the hub runs.
alice admin group:staff
bob group:students
carol group:students
# eve is not listed: she is refused until an admin adds her here or on the admin page.
mallory@example.org
"""


@dataclass(frozen=True)
class Verdict:
    """What happens when ``login`` signs in at the demo provider."""

    login: str
    identity: str
    admitted: bool
    why: str  # "admin", "group students", "not in the userlist", ...


def identity_of(login: str) -> str:
    """The identity the hub matches against the userlist (the ``preferred_username`` claim)."""
    return IDENTITIES.get(login, {}).get("preferred_username", login)


def verdicts(userlist) -> list[Verdict]:
    """Who may log in, for a parsed :class:`jupyterhub_lab_ext.auth.userlist.Userlist`: every listed
    identity (the provider accepts any login) and every demo identity, in that order."""
    out: list[Verdict] = []
    seen: set[str] = set()
    logins = {identity_key(identity_of(login)): login for login in IDENTITIES}
    for entry in userlist.entries:
        login = logins.get(identity_key(entry.identity), entry.identity)
        claims = IDENTITIES.get(login, {})
        seen.add(login)
        if claims.get("email_verified") is False and "@" in entry.identity:
            out.append(
                Verdict(login, entry.identity, False, "the provider says the email is not verified")
            )
            continue
        facts = (["admin"] if entry.admin else []) + [f"group {g}" for g in entry.groups]
        out.append(Verdict(login, entry.identity, True, ", ".join(facts)))
    for login in IDENTITIES:
        if login not in seen:
            out.append(Verdict(login, identity_of(login), False, "not in the userlist"))
    return out
