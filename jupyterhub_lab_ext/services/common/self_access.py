"""Who may read a service's "self view" of one user: that user's own single-user server.

A pure decision over the credential the service identified (the hub's answer for the token:
its owner's name and the token's own scopes). The self view (``GET api/users/<name>`` at the
culler and at the user-limit service) answers without the service's read scope when

- the credential is a token of the user ``<name>`` itself (never another user's, never a
  service's), and
- it holds ``users:activity`` for that user (``users:activity!user=<name>`` or unfiltered).

Every single-user server's ``$JUPYTERHUB_API_TOKEN`` has exactly that (JupyterHub adds it to
every server token so the server can report activity), and a token that may report the user's
activity can postpone the user's cull anyway, so reading when the cull is due grants nothing
new. The service's read scope (``access:services!service=<name>``), which also shows other
users and the service's state, is not needed and not granted to servers. Anyone else still
needs the read scope, as before.
"""

from __future__ import annotations

from jupyterhub.services.auth import check_scopes

#: the scope that lets a credential read its own user's self view
SELF_SCOPE = "users:activity"


def may_read_self(credential: dict | None, name: str) -> bool:
    """True when ``credential`` (the hub's model of a token) is ``name``'s own, with activity."""
    if not credential or credential.get("kind", "user") != "user":
        return False
    if not name or credential.get("name") != name:
        return False
    needed = {f"{SELF_SCOPE}!user={name}"}
    return bool(check_scopes(needed, set(credential.get("scopes") or ())))
