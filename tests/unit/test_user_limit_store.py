"""The user-limit ledger (atomic bookkeeping) and its SQLite store: round trips and restarts."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limit_oracle import decide_on_lists

from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.services.user_limit.ledger import Ledger
from jupyterhub_lab_ext.services.user_limit.records import Op
from jupyterhub_lab_ext.services.user_limit.store import LimitStore, metadata


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def R(user, server="", groups=(), admin=False):
    return policy.Request(user, server, frozenset(groups), admin)


async def open_store(url: str) -> LimitStore:
    """The tables on a started store, as the service app wires them."""
    base = Store(url, metadata)
    await base.start()
    return LimitStore(base)


async def close_store(s: LimitStore) -> None:
    await s.drain()
    await s.store.close()


@pytest.fixture
async def store(tmp_path):
    s = await open_store(f"sqlite:///{tmp_path}/limits.sqlite")
    try:
        yield s
    finally:
        await close_store(s)


async def reload(tmp_path, limits, clock):
    s = await open_store(f"sqlite:///{tmp_path}/limits.sqlite")
    try:
        saved = await s.load()
    finally:
        await close_store(s)
    ledger = Ledger(limits, clock)
    ledger.load(
        saved["settings"].get("limits", {}), saved["admissions"], saved["waiters"], saved["seats"]
    )
    return ledger


async def test_state_survives_a_restart(store, tmp_path):
    clock = Clock()
    limits = policy.Limits(max_active_servers=2)
    ledger = Ledger(limits, clock)
    outs = [ledger.admit(R(u, groups=["g"]), {"env": u}) for u in ("a", "b", "c", "d")]
    assert [o.decision.outcome for o in outs] == ["admit", "admit", "queue", "queue"]
    for o in outs:
        await store.write(o.ops)
    seat = ledger.take_seat("a", False)
    await store.write(seat.ops)
    await store.write(ledger.set_limits({"max_users": 7}))

    again = await reload(tmp_path, limits, clock)
    assert sorted((a.user, a.state) for a in again.admissions.values()) == [
        ("a", "admitted"),
        ("b", "admitted"),
    ]
    assert list(again.queue) == ["c", "d"]
    assert again.queue["c"].options == {"env": "c"} and again.queue["c"].groups == frozenset({"g"})
    assert again.limits.max_users == 7 and again.limits.max_active_servers == 2
    assert set(again.seats) == {"a"}
    # new waiters keep going to the end after a restart
    out = again.admit(R("e"))
    assert out.decision.position == 3


async def test_release_and_promotion_are_persisted(store, tmp_path):
    clock = Clock()
    limits = policy.Limits(max_active_servers=1)
    ledger = Ledger(limits, clock)
    first = ledger.admit(R("a"))
    second = ledger.admit(R("b"), {"x": 1})
    await store.write(first.ops + second.ops)
    await store.write(ledger.release(first.admission.id))
    offers, ops = ledger.promote(offer_timeout=60)
    await store.write(ops)
    assert [(o.user, o.state, o.options) for o in offers] == [("b", "reserved", {"x": 1})]
    again = await reload(tmp_path, limits, clock)
    assert [(a.user, a.state, a.expires) for a in again.admissions.values()] == [
        ("b", "reserved", 1060.0)
    ]
    assert not again.queue
    # the reserved user's spawn takes the reservation, not a second place
    out = again.admit(R("b"))
    assert out.decision.reason == policy.RESERVED and len(again.admissions) == 1
    assert again.admissions[out.admission.id].state == "admitted"


async def test_group_commit_batches_concurrent_writes(store):
    ledger = Ledger(policy.Limits(max_active_servers=10), Clock())
    outs = [ledger.admit(R(f"u{i}")) for i in range(50)]
    await asyncio.gather(*(store.write(o.ops) for o in outs))
    assert store.commits < 50
    saved = await store.load()
    assert len(saved["admissions"]) == 10 and len(saved["waiters"]) == 40


async def test_failed_write_raises_and_later_writes_work(store):
    with pytest.raises(Exception):  # noqa: B017 - the driver's error type
        await store.write([Op("put_seat", None, 1.0)])  # NOT NULL user
    assert store.failures == 1
    await store.write([Op("put_seat", "ok", 1.0)])
    assert (await store.load())["seats"] == {"ok": 1.0}


def test_reconcile_adds_observed_and_drops_phantoms():
    clock = Clock(1000)
    ledger = Ledger(policy.Limits(max_active_servers=5), clock)
    old = ledger.admit(R("gone")).admission  # created at 1000
    clock.now = 1100
    fresh = ledger.admit(R("new")).admission  # spawn started after the snapshot
    summary, ops = ledger.reconcile(
        [("running", "", frozenset({"g"}), False), ("running", "named", frozenset(), False)],
        ["running", "gone", "new"],
        snapshot_started=1095,
        grace=5,
    )
    users = sorted((a.user, a.server_name, a.state) for a in ledger.admissions.values())
    assert ("gone", "", "admitted") not in users  # phantom dropped
    assert ("new", "", "admitted") in users  # younger than the snapshot: kept
    assert ("running", "", "observed") in users and ("running", "named", "observed") in users
    assert summary["added"] == 2 and summary["removed"] == 1
    assert old.id not in ledger.admissions and fresh.id in ledger.admissions
    assert set(ledger.seats) == {"running", "gone", "new"}
    kinds = sorted(op.kind for op in ops)
    assert kinds.count("put_admission") == 2 and kinds.count("del_admission") == 1


def test_reconcile_does_not_book_spawns_whose_hook_has_not_asked_yet():
    ledger = Ledger(policy.Limits(max_active_servers=1), Clock(1000))
    summary, _ = ledger.reconcile([("early", "", frozenset(), False, True)], ["early"], 990, 5)
    assert summary["added"] == 0 and not ledger.admissions
    # so its hook call is decided on its merits, not waved through as "already admitted"
    ledger.admit(R("first"))
    assert ledger.admit(R("early")).decision.outcome == policy.QUEUE
    # a spawning server that holds an admission keeps it
    held = Ledger(policy.Limits(max_active_servers=1), Clock(1000))
    a = held.admit(R("x")).admission
    held.reconcile([("x", "", frozenset(), False, True)], ["x"], 2000, 5)
    assert a.id in held.admissions


def test_reconcile_keeps_reservations_and_frees_seats_of_deleted_users():
    clock = Clock(1000)
    ledger = Ledger(policy.Limits(max_active_servers=1), clock)
    a = ledger.admit(R("a")).admission
    ledger.admit(R("b"))
    ledger.release(a.id)
    offers, _ = ledger.promote(60)
    ledger.seats = {"old": 10.0, "b": 10.0}
    clock.now = 2000
    # the hub already shows b's spawn pending: the reservation covers it, no second place
    summary, _ = ledger.reconcile([("b", "", frozenset(), False)], ["b"], 1990, 5)
    assert [x.state for x in ledger.admissions.values()] == ["reserved"]
    assert set(ledger.seats) == {"b"} and summary["seats_removed"] == 1
    assert offers[0].id in ledger.admissions


def test_expire_lapses_reservations():
    clock = Clock(0)
    ledger = Ledger(policy.Limits(max_active_servers=1), clock)
    a = ledger.admit(R("a")).admission
    ledger.admit(R("b"))
    ledger.admit(R("c"))
    ledger.release(a.id)
    offers, _ = ledger.promote(30)
    assert [o.user for o in offers] == ["b"]
    clock.now = 29
    assert ledger.expire()[0] == []
    clock.now = 30
    gone, ops = ledger.expire()
    assert [g.user for g in gone] == ["b"] and ops[0].kind == "del_admission"
    offers, _ = ledger.promote(30)
    assert [o.user for o in offers] == ["c"]


def test_existing_hub_user_keeps_seat_when_full():
    ledger = Ledger(policy.Limits(max_users=1), Clock())
    assert ledger.take_seat("first", False).decision.admitted
    assert not ledger.take_seat("second", False).decision.admitted
    assert ledger.take_seat("known", False, existing=True).decision.admitted
    assert set(ledger.seats) == {"first", "known"}


ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from("abcdef"), st.sampled_from(["", "x"]),
                  st.frozensets(st.sampled_from(["g", "h"]), max_size=2)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("promote")),
        st.tuples(st.just("limit"), st.integers(0, 4)),
        st.tuples(st.just("reconcile"), st.sampled_from("abcdef")),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(ops_st)
def test_incremental_book_matches_the_pure_policy(ops):
    """The ledger's fast path (incremental usage and lookups) decides exactly like
    ``decide_on_lists`` over the full lists, whatever happened before."""
    clock = Clock(0)
    ledger = Ledger(policy.Limits(max_active_servers=3, group_quotas={"g": 2}), clock)
    for op in ops:
        clock.now += 1
        if op[0] == "admit":
            req = R(op[1], op[2], op[3])
            expected = decide_on_lists(ledger.limits, ledger.places(), ledger.waiting(), req)
            assert ledger.admit(req).decision == expected
        elif op[0] == "release" and ledger.admissions:
            ids = sorted(ledger.admissions)
            ledger.release(ids[op[1] % len(ids)])
        elif op[0] == "promote":
            ledger.promote(30)
        elif op[0] == "limit":
            ledger.set_limits({"max_active_servers": op[1]})
        elif op[0] == "reconcile":
            ledger.reconcile([(op[1], "", frozenset(), False)], None, clock.now - 1.5, 1)
        assert ledger.usage() == policy.usage(ledger.places())
