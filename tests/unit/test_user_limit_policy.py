"""Pure admission policy of the user-limit service: table-driven, plus properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limit_oracle import decide_on_lists, queue_position

from jupyterhub_lab_ext.services.user_limit import policy
from jupyterhub_lab_ext.services.user_limit.policy import Limits, Place, Request


def places(*specs):
    """``"alice"``, ``"alice:named"``, ``"bob@students"``, ``"eve!"`` (admin), ``"r~carol"`` (reserved)."""
    out = []
    for spec in specs:
        reserved = spec.startswith("r~")
        spec = spec.removeprefix("r~")
        admin = spec.endswith("!")
        spec = spec.rstrip("!")
        spec, _, groups = spec.partition("@")
        user, _, server = spec.partition(":")
        out.append(
            Place(user, server, frozenset(g for g in groups.split(",") if g), admin, reserved)
        )
    return out


def req(spec):
    p = places(spec)[0]
    return Request(p.user, p.server_name, p.groups, p.admin)


CASES = [
    # id, limits, places, queue, request, (outcome, reason, position)
    ("no-limits", Limits(), [], [], "alice", (policy.ADMIT, policy.OK, 0)),
    ("under-cap", Limits(max_active_servers=2), ["bob"], [], "alice", (policy.ADMIT, policy.OK, 0)),
    (
        "at-cap-queues",
        Limits(max_active_servers=2),
        ["bob", "carol"],
        [],
        "alice",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "queue-goes-to-end",
        Limits(max_active_servers=1),
        ["bob"],
        ["carol", "dan"],
        "alice",
        (policy.QUEUE, policy.GLOBAL_CAP, 3),
    ),
    (
        "keeps-own-place",
        Limits(max_active_servers=1),
        ["bob"],
        ["carol", "alice", "dan"],
        "alice",
        (policy.QUEUE, policy.GLOBAL_CAP, 2),
    ),
    (
        "same-server-again-idempotent",
        Limits(max_active_servers=1),
        ["alice"],
        [],
        "alice",
        (policy.ADMIT, policy.ALREADY, 0),
    ),
    (
        "reservation-is-used",
        Limits(max_active_servers=1),
        ["r~alice"],
        ["bob"],
        "alice",
        (policy.ADMIT, policy.RESERVED, 0),
    ),
    (
        "reservation-counts-for-others",
        Limits(max_active_servers=2),
        ["bob", "r~carol"],
        [],
        "alice",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "admin-exempt",
        Limits(max_active_servers=1),
        ["bob"],
        ["carol"],
        "eve!",
        (policy.ADMIT, policy.EXEMPT, 0),
    ),
    (
        "admin-not-exempt",
        Limits(max_active_servers=1, exempt_admins=False),
        ["bob"],
        [],
        "eve!",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "admin-servers-count",
        Limits(max_active_servers=1),
        ["eve!"],
        [],
        "alice",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "named-server-counts",
        Limits(max_active_servers=2),
        ["alice", "alice:b"],
        [],
        "bob",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "named-server-queues",
        Limits(max_active_servers=1),
        ["alice"],
        [],
        "alice:b",
        (policy.QUEUE, policy.GLOBAL_CAP, 1),
    ),
    (
        "per-user-cap-refuses",
        Limits(max_servers_per_user=2),
        ["alice", "alice:b"],
        [],
        "alice:c",
        (policy.REFUSE, policy.USER_CAP, 0),
    ),
    (
        "per-user-cap-other-user-ok",
        Limits(max_servers_per_user=1),
        ["alice"],
        [],
        "bob",
        (policy.ADMIT, policy.OK, 0),
    ),
    (
        "per-user-cap-before-queue",
        Limits(max_active_servers=1, max_servers_per_user=1),
        ["alice"],
        [],
        "alice:b",
        (policy.REFUSE, policy.USER_CAP, 0),
    ),
    (
        "group-quota-full",
        Limits(group_quotas={"students": 1}),
        ["bob@students"],
        [],
        "alice@students",
        (policy.QUEUE, policy.GROUP_QUOTA, 1),
    ),
    (
        "group-quota-other-group-ok",
        Limits(group_quotas={"students": 1}),
        ["bob@students"],
        [],
        "alice@staff",
        (policy.ADMIT, policy.OK, 0),
    ),
    (
        "group-quota-ungrouped-ok",
        Limits(group_quotas={"students": 1}),
        ["bob@students"],
        [],
        "alice",
        (policy.ADMIT, policy.OK, 0),
    ),
    (
        "group-quota-any-full-group",
        Limits(group_quotas={"a": 5, "b": 1}),
        ["bob@b"],
        [],
        "alice@a,b",
        (policy.QUEUE, policy.GROUP_QUOTA, 1),
    ),
    (
        "group-quota-zero",
        Limits(group_quotas={"guests": 0}),
        [],
        [],
        "alice@guests",
        (policy.QUEUE, policy.GROUP_QUOTA, 1),
    ),
    # fairness: an earlier waiter that fits now is served first
    (
        "waiter-ahead-fits",
        Limits(max_active_servers=2),
        ["bob"],
        ["carol"],
        "alice",
        (policy.QUEUE, policy.WAITERS_AHEAD, 2),
    ),
    # a waiter blocked by its own group quota does not hold back other groups
    (
        "waiter-blocked-by-other-quota",
        Limits(max_active_servers=3, group_quotas={"students": 1}),
        ["bob@students"],
        ["carol@students"],
        "alice@staff",
        (policy.ADMIT, policy.OK, 0),
    ),
    # a queued user whose turn it is (nobody ahead fits) is admitted on retry
    (
        "queued-user-retries-when-free",
        Limits(max_active_servers=2),
        ["bob"],
        ["alice", "dan@x"],
        "alice",
        (policy.ADMIT, policy.OK, 0),
    ),
    (
        "queued-user-behind-fitting-waiter",
        Limits(max_active_servers=2),
        ["bob"],
        ["carol", "alice"],
        "alice",
        (policy.QUEUE, policy.WAITERS_AHEAD, 2),
    ),
]


@pytest.mark.parametrize(
    "limits, placed, queued, request_spec, expected",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(limits, placed, queued, request_spec, expected):
    decision = decide_on_lists(limits, places(*placed), [req(q) for q in queued], req(request_spec))
    assert (decision.outcome, decision.reason, decision.position) == expected


def test_decide_names_the_limit():
    d = decide_on_lists(
        Limits(group_quotas={"students": 3}), places(*["b@students"] * 3), [], req("a@students")
    )
    assert d.limit == "group_quotas[students]=3"
    assert "group students" in policy.describe(d) and "number 1 in line" in policy.describe(d)
    d = decide_on_lists(Limits(max_active_servers=1), places("b"), [], req("a"))
    assert d.limit == "max_active_servers=1"
    assert policy.describe(d).startswith("The hub is full: you are number 1 in line")


PROMOTE_CASES = [
    ("nothing-free", Limits(max_active_servers=1), ["bob"], ["alice", "carol"], []),
    ("one-free-head-first", Limits(max_active_servers=2), ["bob"], ["alice", "carol"], ["alice"]),
    (
        "two-free-in-order",
        Limits(max_active_servers=3),
        ["bob"],
        ["alice", "carol", "dan"],
        ["alice", "carol"],
    ),
    (
        "skips-blocked-group",
        Limits(max_active_servers=3, group_quotas={"s": 1}),
        ["bob@s"],
        ["alice@s", "carol"],
        ["carol"],
    ),
    (
        "reserved-users-skipped",
        Limits(max_active_servers=3),
        ["bob", "r~alice"],
        ["alice", "carol"],
        ["carol"],
    ),
    (
        "quota-shared-by-promoted",
        Limits(group_quotas={"s": 2}),
        ["bob@s"],
        ["alice@s", "carol@s"],
        ["alice"],
    ),
    ("exempt-admin-waiter", Limits(max_active_servers=1), ["bob"], ["eve!"], ["eve"]),
    ("unlimited-promotes-all", Limits(), ["bob"], ["alice", "carol"], ["alice", "carol"]),
]


@pytest.mark.parametrize(
    "limits, placed, queued, expected",
    [c[1:] for c in PROMOTE_CASES],
    ids=[c[0] for c in PROMOTE_CASES],
)
def test_promote(limits, placed, queued, expected):
    got = policy.promote(limits, places(*placed), [req(q) for q in queued])
    assert [w.user for w in got] == expected


SEAT_CASES = [
    ("no-cap", Limits(), 100, False, False, policy.ADMIT),
    ("free-seat", Limits(max_users=3), 2, False, False, policy.ADMIT),
    ("full", Limits(max_users=3), 3, False, False, policy.REFUSE),
    ("has-seat-when-full", Limits(max_users=3), 3, False, True, policy.ADMIT),
    ("admin-exempt-when-full", Limits(max_users=3), 3, True, False, policy.ADMIT),
    ("admin-not-exempt", Limits(max_users=3, exempt_admins=False), 3, True, False, policy.REFUSE),
    ("over-cap-after-lowering", Limits(max_users=1), 5, False, False, policy.REFUSE),
]


@pytest.mark.parametrize(
    "limits, taken, admin, has_seat, outcome",
    [c[1:] for c in SEAT_CASES],
    ids=[c[0] for c in SEAT_CASES],
)
def test_decide_seat(limits, taken, admin, has_seat, outcome):
    d = policy.decide_seat(limits, taken, "newbie", admin, has_seat)
    assert d.outcome == outcome
    if outcome == policy.REFUSE:
        assert d.reason == policy.SEATS and "seats are taken" in policy.describe(d)


PATCH_CASES = [
    ("int", {"max_active_servers": 3}, {"max_active_servers": 3}),
    ("null-clears", {"max_users": None}, {"max_users": None}),
    ("quotas", {"group_quotas": {"a": 1}}, {"group_quotas": {"a": 1}}),
    ("bool", {"exempt_admins": False}, {"exempt_admins": False}),
]


@pytest.mark.parametrize(
    "patch, expected", [c[1:] for c in PATCH_CASES], ids=[c[0] for c in PATCH_CASES]
)
def test_validate_limits_patch_ok(patch, expected):
    assert policy.validate_limits_patch(patch) == expected


BAD_PATCHES = [
    ("not-object", [1], "JSON object"),
    ("empty", {}, "at least one"),
    ("unknown", {"max_servers": 1}, "unknown field"),
    ("negative", {"max_active_servers": -1}, "integer >= 0"),
    ("bool-as-int", {"max_users": True}, "integer >= 0"),
    ("float", {"max_users": 1.5}, "integer >= 0"),
    ("string", {"max_users": "3"}, "integer >= 0"),
    ("quota-not-object", {"group_quotas": [1]}, "object"),
    ("quota-negative", {"group_quotas": {"a": -2}}, "group_quotas['a']"),
    ("quota-empty-name", {"group_quotas": {"": 2}}, "1-255"),
    ("exempt-not-bool", {"exempt_admins": 1}, "true or false"),
]


@pytest.mark.parametrize(
    "patch, message", [c[1:] for c in BAD_PATCHES], ids=[c[0] for c in BAD_PATCHES]
)
def test_validate_limits_patch_bad(patch, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        policy.validate_limits_patch(patch)


def test_merge_limits_overrides_and_nulls():
    base = Limits(max_active_servers=10, max_users=5)
    merged = policy.merge_limits(
        base, {"max_active_servers": 3, "max_users": None, "group_quotas": {"x": 1}}
    )
    assert (
        merged.max_active_servers == 3 and merged.max_users == 5 and merged.group_quotas == {"x": 1}
    )


@pytest.mark.parametrize(
    "position, expected", [(1, 30), (0, 5), (100, 600)], ids=["first", "floor", "ceiling"]
)
def test_retry_after(position, expected):
    assert policy.retry_after(position, 30) == expected


# -- properties ----------------------------------------------------------------------------
users = st.sampled_from([f"u{i}" for i in range(8)])
groups = st.sampled_from(["a", "b"])
requests = st.builds(
    Request,
    users,
    st.sampled_from(["", "x"]),
    st.frozensets(groups, max_size=2),
    st.booleans(),
)
limits_st = st.builds(
    Limits,
    max_active_servers=st.integers(0, 4),
    group_quotas=st.dictionaries(groups, st.integers(0, 3), max_size=2),
    max_servers_per_user=st.integers(0, 2),
    exempt_admins=st.booleans(),
)


def _simulate(limits, reqs):
    """Apply decisions the way the ledger does; return the places."""
    placed: list[Place] = []
    queue: list[Request] = []
    for r in reqs:
        d = decide_on_lists(limits, placed, queue, r)
        if d.admitted:
            if d.reason not in (policy.ALREADY, policy.RESERVED):
                placed.append(Place(r.user, r.server_name, r.groups, r.admin))
            queue = [w for w in queue if w.user != r.user]
        elif d.outcome == policy.QUEUE:
            if all(w.user != r.user for w in queue):
                queue.append(r)
            assert d.position == queue_position(queue, r.user)
    return placed, queue


@settings(max_examples=300, deadline=None)
@given(limits_st, st.lists(requests, max_size=30))
def test_no_over_admission(limits, reqs):
    placed, queue = _simulate(limits, reqs)
    counted = [p for p in placed if not policy.is_exempt(limits, p.admin)]
    # every place given to a non-exempt user was under every limit when it was given
    if limits.max_active_servers:
        assert len(counted) <= limits.max_active_servers
    used = policy.usage(counted)
    for g, quota in limits.group_quotas.items():
        assert used.per_group.get(g, 0) <= quota
    if limits.max_servers_per_user:
        assert all(n <= limits.max_servers_per_user for n in used.per_user.values())
    # one place per user in line
    assert len({w.user for w in queue}) == len(queue)


@settings(max_examples=200, deadline=None)
@given(limits_st, st.lists(requests, max_size=20), st.integers(0, 5))
def test_promote_is_fifo_and_respects_limits(limits, reqs, freed):
    placed, queue = _simulate(limits, reqs)
    placed = placed[freed:]  # some servers stop
    offered = policy.promote(limits, placed, queue)
    # offers come in queue order
    order = [queue_position(queue, w.user) for w in offered]
    assert order == sorted(order)
    # after the offers nobody left in line fits (else they would have been offered too)
    after = placed + [Place(w.user, w.server_name, w.groups, w.admin, True) for w in offered]
    rest = [w for w in queue if w not in offered]
    for w in rest:
        assert policy.blocking_limits(limits, policy.usage(after), w.groups) or (
            limits.max_servers_per_user
            and policy.usage(after).per_user.get(w.user, 0) >= limits.max_servers_per_user
        )
    # a waiter is never overtaken by a later waiter competing for the same global place
    if limits.max_active_servers and not limits.group_quotas:
        positions = {w.user: i for i, w in enumerate(queue)}
        for w in rest:
            for o in offered:
                if not policy.is_exempt(limits, o.admin) and not (
                    limits.max_servers_per_user
                    and policy.usage(placed).per_user.get(w.user, 0) >= limits.max_servers_per_user
                ):
                    assert positions[o.user] < positions[w.user]
