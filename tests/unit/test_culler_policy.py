"""Pure culling policy: table-driven, with an injected ``now``."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyterhub_lab_ext.services.culler import policy as P

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
H = 3600


def ago(seconds):
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def server(idle=0, age=None, ready=True, pending=None):
    return {
        "ready": ready,
        "pending": pending,
        "last_activity": None if idle is None else ago(idle),
        "started": ago(age if age is not None else (idle or 0) + 60),
    }


DEFAULT = P.Timeout(600, "default")
EXEMPT = P.Timeout(None, "exemption")


@pytest.mark.parametrize(
    "pol, name, srv, timeout, kw, action, reason",
    [
        (P.Policy(), "", server(idle=599), DEFAULT, {}, P.KEEP, P.ACTIVE),
        (P.Policy(), "", server(idle=600), DEFAULT, {}, P.CULL, P.IDLE),
        (P.Policy(), "", server(idle=None, age=700), DEFAULT, {}, P.CULL, P.IDLE),
        (P.Policy(), "", server(idle=9 * H), EXEMPT, {}, P.KEEP, P.EXEMPT),
        (P.Policy(), "", server(idle=9 * H, ready=False), DEFAULT, {}, P.SKIP, P.NOT_READY),
        (P.Policy(cull_default_servers=False), "", server(idle=H), DEFAULT, {}, P.KEEP, P.DISABLED),
        (
            P.Policy(cull_named_servers=False),
            "gpu",
            server(idle=H),
            DEFAULT,
            {},
            P.KEEP,
            P.DISABLED,
        ),
        (P.Policy(cull_named_servers=False), "", server(idle=H), DEFAULT, {}, P.CULL, P.IDLE),
        (P.Policy(max_age=2 * H), "", server(idle=0, age=2 * H), DEFAULT, {}, P.CULL, P.MAX_AGE),
        (P.Policy(max_age=2 * H), "", server(idle=0, age=H), DEFAULT, {}, P.KEEP, P.ACTIVE),
        (P.Policy(max_age=60), "", server(idle=0, age=H), EXEMPT, {}, P.KEEP, P.EXEMPT),
        # pending spawns: skipped, unless stuck for longer than pending_timeout
        (
            P.Policy(),
            "",
            server(idle=H, age=H, ready=False, pending="spawn"),
            DEFAULT,
            {},
            P.SKIP,
            P.PENDING,
        ),
        (
            P.Policy(pending_timeout=300),
            "",
            server(idle=0, age=299, ready=False, pending="spawn"),
            DEFAULT,
            {},
            P.SKIP,
            P.PENDING,
        ),
        (
            P.Policy(pending_timeout=300),
            "",
            server(idle=0, age=300, ready=False, pending="spawn"),
            DEFAULT,
            {},
            P.CULL,
            P.STUCK_SPAWN,
        ),
        (
            P.Policy(pending_timeout=300),
            "",
            server(idle=0, age=900, ready=False, pending="spawn"),
            EXEMPT,
            {},
            P.SKIP,
            P.PENDING,
        ),
        # pending stops are never DELETEd again; past pending_timeout they are reported as stuck
        (P.Policy(), "", server(idle=H, pending="stop"), DEFAULT, {}, P.SKIP, P.STOPPING),
        (
            P.Policy(pending_timeout=300),
            "",
            server(idle=H, pending="stop"),
            DEFAULT,
            {"pending_since": NOW - timedelta(seconds=301)},
            P.SKIP,
            P.STUCK_STOP,
        ),
        (
            P.Policy(pending_timeout=300),
            "",
            server(idle=H, pending="stop"),
            DEFAULT,
            {"pending_since": NOW - timedelta(seconds=10)},
            P.SKIP,
            P.STOPPING,
        ),
        # kernel-aware: ask first, keep while busy, ceiling wins
        (P.Policy(kernel_aware=True), "", server(idle=H), DEFAULT, {}, P.CULL, P.IDLE),
        (
            P.Policy(kernel_aware=True),
            "",
            server(idle=H),
            DEFAULT,
            {"kernels_busy": True},
            P.KEEP,
            P.KERNEL_BUSY,
        ),
        (
            P.Policy(kernel_aware=True),
            "",
            server(idle=H),
            DEFAULT,
            {"kernels_busy": False},
            P.CULL,
            P.IDLE,
        ),
        (
            P.Policy(kernel_aware=True, kernel_busy_ceiling=2 * H),
            "",
            server(idle=2 * H),
            DEFAULT,
            {"kernels_busy": True},
            P.CULL,
            P.IDLE,
        ),
        (
            P.Policy(kernel_aware=True),
            "",
            server(idle=60),
            DEFAULT,
            {"kernels_busy": True},
            P.KEEP,
            P.ACTIVE,
        ),
        # warnings: warn first, cull only a full warning period after the warning
        (P.Policy(warning_period=300), "", server(idle=299), DEFAULT, {}, P.KEEP, P.ACTIVE),
        (P.Policy(warning_period=300), "", server(idle=300), DEFAULT, {}, P.WARN, P.IDLE),
        (P.Policy(warning_period=300), "", server(idle=5 * H), DEFAULT, {}, P.WARN, P.IDLE),
        (
            P.Policy(warning_period=300),
            "",
            server(idle=700),
            DEFAULT,
            {"warned_at": NOW - timedelta(seconds=100)},
            P.KEEP,
            P.WARNED,
        ),
        (
            P.Policy(warning_period=300),
            "",
            server(idle=700),
            DEFAULT,
            {"warned_at": NOW - timedelta(seconds=300)},
            P.CULL,
            P.IDLE,
        ),
        (
            # activity after the warning: the warning is void, the idle clock restarted
            P.Policy(warning_period=300),
            "",
            server(idle=10),
            DEFAULT,
            {"warned_at": NOW - timedelta(seconds=400)},
            P.KEEP,
            P.ACTIVE,
        ),
    ],
    ids=[
        "just-below-timeout",
        "at-timeout",
        "no-activity-falls-back-to-started",
        "exempt",
        "not-ready",
        "default-servers-off",
        "named-servers-off",
        "named-off-default-still-culled",
        "max-age-reached",
        "max-age-not-reached",
        "max-age-does-not-beat-exemption",
        "pending-spawn-skipped",
        "pending-spawn-young",
        "pending-spawn-stuck",
        "pending-spawn-stuck-but-exempt",
        "stopping-never-deleted-again",
        "stuck-stop-reported",
        "young-stop",
        "kernel-check-requested",
        "kernel-busy-keeps",
        "kernel-idle-culls",
        "kernel-busy-ceiling",
        "kernel-aware-but-active",
        "before-warning-window",
        "warn-in-window",
        "warn-before-overdue-cull",
        "warned-recently-wait",
        "warned-long-enough-cull",
        "activity-after-warning",
    ],
)
def test_decide_server(pol, name, srv, timeout, kw, action, reason):
    d = P.decide_server(pol, "alice", name, srv, timeout, NOW, **kw)
    assert (d.action, d.reason) == (action, reason)


def test_kernel_check_flag_only_when_unknown():
    pol = P.Policy(kernel_aware=True)
    assert P.decide_server(pol, "a", "", server(idle=H), DEFAULT, NOW).check_kernels
    d = P.decide_server(pol, "a", "", server(idle=H), DEFAULT, NOW, kernels_busy=False)
    assert not d.check_kernels


def test_warn_gives_a_full_grace_period():
    """A warning always comes at least warning_period before the cull, even when late."""
    pol = P.Policy(warning_period=300)
    d = P.decide_server(pol, "a", "", server(idle=5 * H), DEFAULT, NOW)
    assert d.cull_at == NOW + timedelta(seconds=300)
    d = P.decide_server(pol, "a", "", server(idle=400), DEFAULT, NOW)  # nominal cull in 200 s
    assert d.cull_at == NOW + timedelta(seconds=300)
    d = P.decide_server(pol, "a", "", server(idle=300), DEFAULT, NOW)  # exactly on time
    assert d.cull_at == NOW + timedelta(seconds=300)


def test_cull_at_is_last_activity_plus_timeout():
    d = P.decide_server(P.Policy(), "a", "", server(idle=100), DEFAULT, NOW)
    assert d.cull_at == NOW + timedelta(seconds=500)
    assert d.as_dict()["cull_at"] == d.cull_at.isoformat()


GROUPS = P.Policy(
    timeout=600,
    group_timeouts={"teachers": 8 * H, "students": H, "lab": 0},
    user_timeouts={"vip": 24 * H, "zero": 0},
    exempt_groups=frozenset({"staff"}),
    exempt_users=frozenset({"root-ish"}),
)


@pytest.mark.parametrize(
    "user, groups, kw, seconds, source",
    [
        ("alice", [], {}, 600, "default"),
        ("alice", ["students"], {}, H, "group:students"),
        ("alice", ["students", "teachers"], {}, 8 * H, "group:teachers"),
        ("alice", ["students", "lab"], {}, None, "group:lab"),
        ("alice", ["students", "staff"], {}, None, "group:staff"),
        ("alice", ["unknown"], {}, 600, "default"),
        ("vip", ["students"], {}, 24 * H, "user"),
        ("zero", [], {}, None, "user"),
        ("root-ish", ["students"], {}, None, "user"),
        ("vip", [], {"exemption_until": NOW + timedelta(hours=1)}, None, "exemption"),
        (
            "alice",
            ["students"],
            {"exemption_until": NOW - timedelta(seconds=1)},
            H,
            "group:students",
        ),
        ("alice", [], {"exempt_forever": True}, None, "exemption"),
    ],
    ids=[
        "default",
        "group",
        "longest-group-wins",
        "zero-group-exempts",
        "exempt-group",
        "unknown-group",
        "user-beats-group",
        "zero-user-exempts",
        "exempt-user",
        "exemption-beats-all",
        "expired-exemption-ignored",
        "exemption-without-end",
    ],
)
def test_effective_timeout(user, groups, kw, seconds, source):
    t = P.effective_timeout(GROUPS, user, groups, NOW, **kw)
    assert (t.seconds, t.source) == (seconds, source)


def user_model(name="bob", idle=None, created=None, admin=False, servers=None):
    return {
        "name": name,
        "admin": admin,
        "created": ago(created if created is not None else 100 * H),
        "last_activity": None if idle is None else ago(idle),
        "servers": servers or {},
    }


@pytest.mark.parametrize(
    "pol, user, kw, action, reason",
    [
        (P.Policy(), user_model(idle=10 * H), {}, P.KEEP, P.DISABLED),
        (P.Policy(cull_users=True), user_model(idle=599), {}, P.KEEP, P.ACTIVE),
        (P.Policy(cull_users=True), user_model(idle=600), {}, P.CULL, P.IDLE),
        (P.Policy(cull_users=True), user_model(idle=None, created=700), {}, P.CULL, P.IDLE),
        (
            P.Policy(cull_users=True),
            user_model(idle=10 * H),
            {"servers_alive": True},
            P.KEEP,
            P.HAS_SERVERS,
        ),
        (
            P.Policy(cull_users=True),
            user_model(idle=10 * H, servers={"": {"ready": True}}),
            {},
            P.KEEP,
            P.HAS_SERVERS,
        ),
        (
            P.Policy(cull_users=True, cull_admin_users=False),
            user_model(idle=10 * H, admin=True),
            {},
            P.KEEP,
            P.ADMIN,
        ),
        (P.Policy(cull_users=True), user_model(idle=10 * H, admin=True), {}, P.CULL, P.IDLE),
        (
            P.Policy(cull_users=True, user_delete_timeout=90 * 24 * H),
            user_model(idle=10 * H),
            {},
            P.KEEP,
            P.ACTIVE,
        ),
        (
            P.Policy(cull_users=True, max_age=50 * H),
            user_model(idle=0, created=60 * H),
            {},
            P.CULL,
            P.MAX_AGE,
        ),
    ],
    ids=[
        "off",
        "recent",
        "idle",
        "never-active-uses-created",
        "server-still-stopping",
        "has-running-server",
        "admin-kept",
        "admin-culled-by-default",
        "separate-user-delete-timeout",
        "max-age",
    ],
)
def test_decide_user(pol, user, kw, action, reason):
    d = P.decide_user(pol, user, P.Timeout(600, "default"), NOW, **kw)
    assert (d.action, d.reason) == (action, reason)


def test_decide_user_exempt():
    d = P.decide_user(P.Policy(cull_users=True), user_model(idle=10 * H), EXEMPT, NOW)
    assert (d.action, d.reason) == (P.KEEP, P.EXEMPT)


@pytest.mark.parametrize(
    "kernels, busy",
    [
        ([], False),
        ([{"execution_state": "idle"}], False),
        ([{"execution_state": "idle"}, {"execution_state": "busy"}], True),
        ([{"execution_state": "starting"}], True),
        ({"message": "not a list"}, False),
        (None, False),
        (["junk"], False),
    ],
    ids=["none", "idle", "one-busy", "starting", "dict", "null", "junk"],
)
def test_kernels_busy(kernels, busy):
    assert P.kernels_busy(kernels) is busy


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-03-01T12:00:00Z", NOW),
        ("2026-03-01T12:00:00.000000Z", NOW),
        ("2026-03-01T13:00:00+01:00", NOW),
        ("2026-03-01T12:00:00", NOW),
        (None, None),
        ("", None),
    ],
)
def test_parse_date(text, expected):
    assert P.parse_date(text) == expected


@given(
    idle=st.integers(min_value=0, max_value=10**7),
    timeout=st.integers(min_value=1, max_value=10**6),
    warn=st.integers(min_value=0, max_value=10**5),
)
def test_never_culls_before_timeout(idle, timeout, warn):
    """Property: no idle cull (without max_age) while idle < timeout, whatever the warning setup."""
    pol = P.Policy(timeout=timeout, warning_period=warn)
    d = P.decide_server(pol, "a", "", server(idle=idle), P.Timeout(timeout, "default"), NOW)
    if idle < timeout:
        assert d.action != P.CULL
    if d.action == P.CULL:
        assert d.cull_at <= NOW


def test_kernel_ceiling_counts_from_first_busy_observation():
    """Our own kernel check may refresh last_activity; the ceiling must still be reached."""
    pol = P.Policy(kernel_aware=True, kernel_busy_ceiling=2 * H)
    since = NOW - timedelta(seconds=2 * H)
    d = P.decide_server(pol, "a", "", server(idle=H), DEFAULT, NOW, busy_since=since)
    assert (d.action, d.check_kernels) == (P.CULL, False)
    d = P.decide_server(
        pol,
        "a",
        "",
        server(idle=H),
        DEFAULT,
        NOW,
        busy_since=NOW - timedelta(seconds=H),
        kernels_busy=True,
    )
    assert (d.action, d.reason) == (P.KEEP, P.KERNEL_BUSY)
    assert d.cull_at == NOW + timedelta(seconds=H)
