"""The service's in-memory book of places, waiters and seats.

Every method is synchronous and does not await, so on the service's single event loop each
decision and its bookkeeping happen as one atomic step: two concurrent spawn requests can never
both take the last place. Each change returns the store operations (``store.Op``) that make it
durable; the app writes them (group commit) before it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.services.user_limit.records import Admission, Op, Outcome, Waiter, new_id


class Ledger:
    def __init__(self, limits: policy.Limits, clock: Callable[[], float]):
        self.base_limits = limits
        self.overrides: dict = {}
        self.limits = limits
        self.clock = clock
        self.admissions: dict[str, Admission] = {}
        self.queue: dict[str, Waiter] = {}  # user -> waiter, insertion (= seq) order
        self.seats: dict[str, float] = {}
        self._seq = 0
        self._reset_index()

    # -- incremental index: usage, held servers, reservations (kept in step with admissions) --
    def _reset_index(self) -> None:
        self._total = 0
        self._per_group: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self._held: dict[tuple[str, str], str] = {}  # (user, server) -> admission id
        self._reserved: dict[str, str] = {}  # user -> reserved admission id
        for a in self.admissions.values():
            self._index(a, +1)

    def _index(self, a: Admission, sign: int) -> None:
        self._total += sign
        self._per_user[a.user] = self._per_user.get(a.user, 0) + sign
        if not self._per_user[a.user]:
            del self._per_user[a.user]
        for g in a.groups:
            self._per_group[g] = self._per_group.get(g, 0) + sign
            if not self._per_group[g]:
                del self._per_group[g]
        if a.state == "reserved":
            if sign > 0:
                self._reserved[a.user] = a.id
            else:
                self._reserved.pop(a.user, None)
        else:
            key = (a.user, a.server_name)
            if sign > 0:
                self._held[key] = a.id
            elif self._held.get(key) == a.id:
                del self._held[key]

    def _put(self, a: Admission) -> None:
        old = self.admissions.get(a.id)
        if old is not None:
            self._index(old, -1)
        self.admissions[a.id] = a
        self._index(a, +1)

    def _drop(self, admission_id: str) -> Admission | None:
        a = self.admissions.pop(admission_id, None)
        if a is not None:
            self._index(a, -1)
        return a

    # -- loading ---------------------------------------------------------------------------
    def load(
        self,
        overrides: dict,
        admissions: Iterable[Admission],
        waiters: Iterable[Waiter],
        seats: dict,
    ):
        self.overrides = {k: v for k, v in (overrides or {}).items() if k in policy.LIMIT_FIELDS}
        self.limits = policy.merge_limits(self.base_limits, self.overrides)
        self.admissions = {a.id: a for a in admissions}
        self._reset_index()
        ordered = sorted(waiters, key=lambda w: w.seq)
        self.queue = {w.user: w for w in ordered}
        self._seq = max((w.seq for w in ordered), default=0)
        self.seats = dict(seats)

    # -- views -----------------------------------------------------------------------------
    def places(self) -> list[policy.Place]:
        return [a.place() for a in self.admissions.values()]

    def waiting(self) -> list[policy.Request]:
        return [w.request() for w in self.queue.values()]

    def position(self, user: str) -> int:
        if user not in self.queue:
            return 0
        for i, name in enumerate(self.queue):
            if name == user:
                return i + 1
        return 0  # pragma: no cover

    def for_user(self, user: str) -> list[Admission]:
        return [a for a in self.admissions.values() if a.user == user]

    def usage(self) -> policy.Usage:
        return policy.Usage(self._total, self._per_group, self._per_user)

    def decide(self, req: policy.Request) -> policy.Decision:
        """The policy's decision for ``req`` against the book (no change made)."""
        position = self.position(req.user)

        def ahead():
            for i, w in enumerate(self.queue.values()):
                if position and i >= position - 1:
                    return
                yield w.request()

        return policy.decide(
            self.limits,
            self.usage(),
            req,
            (req.user, req.server_name) in self._held,
            req.user in self._reserved,
            len(self.queue),
            position,
            ahead(),
        )

    # -- spawn admission -------------------------------------------------------------------
    def admit(self, req: policy.Request, options: dict | None = None) -> Outcome:
        """Decide a spawn request and book the result (place, or place in line)."""
        now = self.clock()
        decision = self.decide(req)
        out = Outcome(decision)
        if decision.outcome == policy.ADMIT:
            existing = self._match(req)
            if existing is not None:
                adm = replace(
                    existing,
                    server_name=req.server_name,
                    groups=req.groups,
                    admin=req.admin,
                    state="admitted",
                    expires=None,
                )
            else:
                adm = Admission(
                    new_id(), req.user, req.server_name, req.groups, req.admin, "admitted", now
                )
            self._put(adm)
            out.admission = adm
            out.ops.append(Op("put_admission", adm))
            if req.user in self.queue:
                del self.queue[req.user]
                out.ops.append(Op("del_waiter", req.user))
        elif decision.outcome == policy.QUEUE:
            old = self.queue.get(req.user)
            if old is None:
                self._seq += 1
                w = Waiter(
                    req.user,
                    req.server_name,
                    req.groups,
                    req.admin,
                    self._seq,
                    now,
                    dict(options or {}),
                )
            else:
                # one place per user: keep the place, remember the latest request
                w = replace(
                    old,
                    server_name=req.server_name,
                    groups=req.groups,
                    admin=req.admin,
                    options=dict(options or {}),
                )
            self.queue[req.user] = w
            out.ops.append(Op("put_waiter", w))
        return out

    def _match(self, req: policy.Request) -> Admission | None:
        aid = self._reserved.get(req.user) or self._held.get((req.user, req.server_name))
        return self.admissions.get(aid) if aid else None

    def release(self, admission_id: str) -> list[Op] | None:
        """Free a place; None if there is no such admission."""
        if self._drop(admission_id) is None:
            return None
        return [Op("del_admission", admission_id)]

    def promote(self, offer_timeout: float) -> tuple[list[Admission], list[Op]]:
        """Reserve places for the waiters that fit now; the caller starts their servers."""
        now = self.clock()
        offers, ops = [], []
        for req in policy.promote(self.limits, self.places(), self.waiting()):
            w = self.queue.pop(req.user)
            adm = Admission(
                new_id(),
                w.user,
                w.server_name,
                w.groups,
                w.admin,
                "reserved",
                now,
                now + offer_timeout,
                dict(w.options),
                queued_since=w.enqueued,
            )
            self._put(adm)
            offers.append(adm)
            ops += [Op("del_waiter", w.user), Op("put_admission", adm)]
        return offers, ops

    def expire(self) -> tuple[list[Admission], list[Op]]:
        """Drop reservations whose user's spawn never arrived."""
        now = self.clock()
        gone = [a for a in self.admissions.values() if a.expires is not None and a.expires <= now]
        for a in gone:
            self._drop(a.id)
        return gone, [Op("del_admission", a.id) for a in gone]

    def dequeue(self, user: str) -> list[Op]:
        if self.queue.pop(user, None) is None:
            return []
        return [Op("del_waiter", user)]

    # -- reconciliation with the hub -------------------------------------------------------
    def reconcile(
        self,
        active: Iterable[tuple[str, str, frozenset[str], bool]],
        hub_users: Iterable[str] | None,
        snapshot_started: float,
        grace: float,
    ) -> tuple[dict, list[Op]]:
        """Make the book match the hub's view.

        ``active``: (user, server_name, groups, admin[, spawning]) for each server the hub reports
        active (spawn pending, running or stopping); a spawning server without an admission is not
        booked (its hook call decides it). ``hub_users``: every user the hub knows (for seats),
        or None to leave seats alone. Book entries younger than ``snapshot_started - grace`` are
        kept even when the snapshot does not show them (their spawn may have started after it).
        """
        ops: list[Op] = []
        seen, added = self._book_active(active, ops)
        cutoff = snapshot_started - grace
        removed = 0
        for a in list(self.admissions.values()):
            if a.state == "reserved" or (a.user, a.server_name) in seen or a.created > cutoff:
                continue
            self._drop(a.id)
            ops.append(Op("del_admission", a.id))
            removed += 1
        seats_added, seats_removed = self._match_seats(hub_users, cutoff, ops)
        summary = {
            "added": added,
            "removed": removed,
            "seats_added": seats_added,
            "seats_removed": seats_removed,
        }
        return summary, ops

    def _book_active(self, active, ops: list[Op]) -> tuple[set[tuple[str, str]], int]:
        """Book the active servers the book does not cover; the (user, server) pairs seen and
        how many were booked."""
        seen: set[tuple[str, str]] = set()
        added = 0
        by_key = {
            (a.user, a.server_name): a for a in self.admissions.values() if a.state != "reserved"
        }
        reserved_users = {a.user for a in self.admissions.values() if a.state == "reserved"}
        for user, server_name, groups, admin, *rest in active:
            spawning = bool(rest and rest[0])
            key = (user, server_name)
            seen.add(key)
            a = by_key.get(key)
            if a is None:
                if user in reserved_users:
                    continue  # the reservation covers this spawn until its hook call arrives
                if spawning:
                    # its hook call is on the way (or was let through by fail_open): it is
                    # decided, and counted, when it arrives; counting it here would let it in
                    continue
                a = Admission(
                    new_id(), user, server_name, frozenset(groups), admin, "observed", self.clock()
                )
                self._put(a)
                ops.append(Op("put_admission", a))
                added += 1
            elif a.groups != frozenset(groups) or a.admin != admin:
                a = replace(a, groups=frozenset(groups), admin=admin)
                self._put(a)
                ops.append(Op("put_admission", a))
        return seen, added

    def _match_seats(self, hub_users, cutoff: float, ops: list[Op]) -> tuple[int, int]:
        """Seats for every user the hub knows; free those of users gone before ``cutoff``."""
        if hub_users is None:
            return 0, 0
        added = removed = 0
        users = set(hub_users)
        for u in users - set(self.seats):
            self.seats[u] = self.clock()
            ops.append(Op("put_seat", u, self.seats[u]))
            added += 1
        for u, created in list(self.seats.items()):
            if u not in users and created <= cutoff:
                del self.seats[u]
                ops.append(Op("del_seat", u))
                removed += 1
        return added, removed

    # -- seats -----------------------------------------------------------------------------
    def take_seat(self, user: str, admin: bool, existing: bool = False) -> Outcome:
        """Give ``user`` a seat if one is free; ``existing`` hub users always keep theirs."""
        has = user in self.seats or existing
        decision = policy.decide_seat(self.limits, len(self.seats), user, admin, has)
        out = Outcome(decision)
        if decision.admitted and user not in self.seats:
            self.seats[user] = self.clock()
            out.ops.append(Op("put_seat", user, self.seats[user]))
        return out

    def free_seat(self, user: str) -> list[Op] | None:
        if self.seats.pop(user, None) is None:
            return None
        return [Op("del_seat", user)]

    # -- limits ----------------------------------------------------------------------------
    def set_limits(self, patch: dict) -> list[Op]:
        """Apply a validated patch (``policy.validate_limits_patch``); null clears an override."""
        for key, value in patch.items():
            if value is None:
                self.overrides.pop(key, None)
            else:
                self.overrides[key] = value
        self.limits = policy.merge_limits(self.base_limits, self.overrides)
        return [Op("put_setting", "limits", dict(self.overrides))]
