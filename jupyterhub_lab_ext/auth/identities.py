"""Pure rules about the identity a provider sends (a login or an email).

- :func:`claims_unverified`: whether the provider says an email address is not verified;
- :class:`IdentityMemo`: the identity an admin typed on the admin page, for the username
  JupyterHub made of it, so the userlist gets the identity and not the derived name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

#: the claims providers use to say whether an email address is verified (OIDC, Google v2)
VERIFIED_CLAIMS = ("email_verified", "verified_email")


def _unverified(value) -> bool:
    if value is None or value is True:
        return False
    return not (isinstance(value, str) and value.strip().lower() == "true")


def claims_unverified(user_info: Mapping) -> bool:
    """True when a verification claim is present and not a plain yes.

    Some providers send the claim as a string (``"false"``); anything but ``True``/``"true"``
    counts as not verified. An absent claim (None) says nothing and is not a refusal.
    """
    return any(_unverified(user_info.get(k)) for k in VERIFIED_CLAIMS)


class IdentityMemo:
    """Remember, for a short while, which identity a normalized username came from.

    JupyterHub's admin page sends the typed identity (``Frank@Example.org``) through
    ``normalize_username`` and then calls ``add_user`` with the result (``frank``); the memo
    lets ``add_user`` write the identity into the userlist. Identities that came from a
    provider login (:meth:`from_provider`) are never memorized: anyone could otherwise plant
    an identity for a name an admin is about to add. Both tables are bounded by ``size``.
    """

    def __init__(
        self, *, size: int = 1024, ttl: float = 120.0, clock: Callable[[], float] = time.monotonic
    ):
        self.size, self.ttl, self.clock = size, ttl, clock
        self._recent: dict[str, tuple[str, float]] = {}
        self._provider: dict[str, None] = {}

    def from_provider(self, identity: str) -> None:
        """``identity`` came from a login: its next :meth:`normalized` is not memorized."""
        self._bounded_set(self._provider, identity, None)

    def normalized(self, identity: str, name: str) -> None:
        """``identity`` was normalized to ``name``."""
        from_provider = self._provider.pop(identity, 0) is None
        if name != identity and not from_provider:
            self._bounded_set(self._recent, name, (identity, self.clock()))

    def identity_for(self, name: str) -> str:
        """The identity ``name`` was made from within ``ttl`` seconds (used once), else ``name``."""
        hit = self._recent.pop(name, None)
        if hit and self.clock() - hit[1] < self.ttl:
            return hit[0]
        return name

    def _bounded_set(self, table: dict, key: str, value) -> None:
        table[key] = value
        if len(table) > self.size:
            table.pop(next(iter(table)))
