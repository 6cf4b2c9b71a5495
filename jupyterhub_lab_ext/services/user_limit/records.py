"""The records of the service's book and the store operations that make them durable.

Plain data, shared by the book (``ledger.py``) and its persistence (``store.py``), which import
this module and not each other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from jupyterhub_lab_ext.services.user_limit import policy


@dataclass(frozen=True)
class Op:
    """One change to persist: ``kind`` is put_/del_ admission, waiter, seat or put_setting."""

    kind: str
    arg: Any
    extra: Any = None


def new_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class Admission:
    """A place in use, with its bookkeeping."""

    id: str
    user: str
    server_name: str = ""
    groups: frozenset[str] = frozenset()
    admin: bool = False
    #: "admitted" (by the hook), "reserved" (offered to the head of the queue), "observed"
    #: (an active server the hub reported that no admission covered)
    state: str = "admitted"
    created: float = 0.0
    #: reservations lapse at this time if the user's spawn has not arrived
    expires: float | None = None
    options: dict = field(default_factory=dict)
    #: when its user joined the queue, for a place offered from the queue (None: admitted at
    #: once; kept in memory only, so unknown after a restart of the service)
    queued_since: float | None = None

    def place(self) -> policy.Place:
        return policy.Place(
            self.user, self.server_name, self.groups, self.admin, self.state == "reserved"
        )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "user": self.user,
            "server_name": self.server_name,
            "groups": sorted(self.groups),
            "admin": self.admin,
            "state": self.state,
            "created": self.created,
            "expires": self.expires,
        }


@dataclass(frozen=True)
class Waiter:
    user: str
    server_name: str = ""
    groups: frozenset[str] = frozenset()
    admin: bool = False
    seq: int = 0
    enqueued: float = 0.0
    options: dict = field(default_factory=dict)

    def request(self) -> policy.Request:
        return policy.Request(self.user, self.server_name, self.groups, self.admin)

    def to_dict(self, position: int) -> dict:
        return {
            "position": position,
            "user": self.user,
            "server_name": self.server_name,
            "groups": sorted(self.groups),
            "enqueued": self.enqueued,
        }


@dataclass
class Outcome:
    decision: policy.Decision
    admission: Admission | None = None
    ops: list[Op] = field(default_factory=list)
