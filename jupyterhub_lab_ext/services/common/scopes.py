"""What a credential may do at one of the package's services: a pure decision over its scopes.

The scopes are those of the credential itself, as the hub reports them for that token
(``GET /hub/api/user`` with the token: the token's own scopes, already narrowed to what its owner
may still do). Who owns the token, and whether the owner is a hub admin, does not count.

- **read** (every request to the service): ``access:services!service=<name>``, or the unfiltered
  ``access:services``.
- **change** (passes, exemptions, limits): read, and the service's admin scope
  ``custom:<name>:admin`` or the hub-level scope :data:`IMPLYING_SCOPE` (``admin:servers``).
  ``admin:servers`` implies the service admin scopes because whoever holds it may already start and
  stop every server on the hub directly, which is more than a culling pass, an exemption or a cap
  can do. The built-in ``admin`` role holds it, so a hub admin's full token and browser login pass.
  Only the unfiltered forms count: ``admin:servers!user=bob`` does not imply anything here.
"""

from __future__ import annotations

from collections.abc import Iterable

from jupyterhub.services.auth import check_scopes

#: The hub-level scope that implies every service's ``custom:<name>:admin``.
IMPLYING_SCOPE = "admin:servers"


def read_scope(service: str) -> str:
    """The scope a credential needs to use the service at all."""
    return f"access:services!service={service}"


def admin_scope(service: str) -> str:
    """The service's own admin scope (declare it in ``c.JupyterHub.custom_scopes``)."""
    return f"custom:{service}:admin"


def can_read(scopes: Iterable[str], service: str) -> bool:
    """True when ``scopes`` include access to ``service`` (filtered for it, or unfiltered)."""
    return bool(check_scopes({read_scope(service)}, set(scopes)))


def can_change(scopes: Iterable[str], service: str, custom_scope: str | None = None) -> bool:
    """True when ``scopes`` allow changes at ``service``: read access and an admin scope.

    ``custom_scope`` overrides the admin scope's name (default ``custom:<service>:admin``).
    Filtered forms never count (there is no filter that narrows a service-wide change).
    """
    have = set(scopes)
    wanted = custom_scope or admin_scope(service)
    return can_read(have, service) and (wanted in have or IMPLYING_SCOPE in have)
