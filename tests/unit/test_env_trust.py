"""The trust rule for shared envs: the pure decision per directory, the walk up to ``/`` (with a fake
``lstat``), and discovery over real trees whose modes and owners the tests set as root."""

from __future__ import annotations

import os
import pwd
import stat

import pytest
from test_conda_envs import make_prefix

from jupyterhub_lab_ext.kernels import env_skips
from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig, scan
from jupyterhub_lab_ext.kernels.env_trust import TrustCheck, problem, resolve_owners

NOBODY = pwd.getpwnam("nobody").pw_uid
DIR, LINK, FILE = stat.S_IFDIR, stat.S_IFLNK, stat.S_IFREG


def fake_stat(kind=DIR, mode=0o755, uid=0):
    # os.stat_result takes (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime)
    return os.stat_result((kind | mode, 1, 1, 1, uid, 0, 0, 0, 0, 0))


def describe(uid):
    return f"uid {uid}"


@pytest.mark.parametrize(
    "st, trusted, expected",
    [
        pytest.param(fake_stat(), (), None, id="root-755"),
        pytest.param(fake_stat(mode=0o700), (), None, id="root-700"),
        pytest.param(
            fake_stat(mode=0o1777), (), "/d is writable by others (mode 1777)", id="sticky-1777"
        ),
        pytest.param(
            fake_stat(mode=0o777), (), "/d is writable by others (mode 0777)", id="world-777"
        ),
        pytest.param(
            fake_stat(mode=0o775), (), "/d is writable by its group (mode 0775)", id="group-775"
        ),
        pytest.param(
            fake_stat(mode=0o2775),
            (),
            "/d is writable by its group (mode 2775)",
            id="setgid-group-2775",
        ),
        pytest.param(
            fake_stat(uid=1001),
            (),
            "/d is owned by uid 1001, not by root or a trusted owner",
            id="non-root-owner",
        ),
        pytest.param(fake_stat(uid=1001), (1001,), None, id="trusted-owner"),
        pytest.param(
            fake_stat(uid=1001, mode=0o775),
            (1001,),
            "/d is writable by its group (mode 0775)",
            id="trusted-owner-group-writable",
        ),
        pytest.param(fake_stat(kind=LINK, mode=0o777), (), "/d is a symbolic link", id="symlink"),
        pytest.param(fake_stat(kind=FILE), (), "/d is not a directory", id="file"),
        pytest.param(None, (), "/d cannot be read", id="missing"),
    ],
)
def test_problem_of_one_directory(st, trusted, expected):
    assert problem("/d", st, frozenset(trusted), describe) == expected


def chain_check(stats: dict[str, os.stat_result], trusted=()):
    looked_up = []

    def lstat(path):
        looked_up.append(path)
        return stats.get(path, fake_stat())

    return TrustCheck(frozenset(trusted), lstat=lstat), looked_up


@pytest.mark.parametrize(
    "stats, trusted, expected",
    [
        pytest.param({}, (), None, id="all-safe"),
        pytest.param(
            {"/srv": fake_stat(mode=0o775)},
            (),
            "/srv is writable by its group (mode 0775)",
            id="group-writable-parent",
        ),
        pytest.param(
            {"/srv/envs": fake_stat(uid=NOBODY)}, (), "/srv/envs is owned by", id="non-root-owner"
        ),
        pytest.param({"/srv/envs": fake_stat(uid=NOBODY)}, (NOBODY,), None, id="trusted-owner"),
        pytest.param(
            {"/srv": fake_stat(kind=LINK, mode=0o777)},
            (),
            "/srv is a symbolic link",
            id="symlinked-component",
        ),
        pytest.param(
            {"/srv/envs": fake_stat(mode=0o1777), "/srv/envs/geo": fake_stat(uid=NOBODY)},
            (),
            "/srv/envs is writable by others (mode 1777)",
            id="topmost-problem-first",
        ),
        pytest.param({"/": fake_stat(mode=0o777)}, (), "/ is writable by others", id="root-dir"),
    ],
)
def test_every_directory_up_to_the_root_counts(stats, trusted, expected):
    check, _ = chain_check(stats, trusted)
    found = check.reason("/srv/envs/geo")
    assert (found is None) if expected is None else found.startswith(expected)


def test_ancestors_are_looked_up_once_per_check():
    check, looked_up = chain_check({})
    assert check.reason("/srv/envs/a") is None and check.reason("/srv/envs/b") is None
    assert sorted(looked_up) == ["/", "/srv", "/srv/envs", "/srv/envs/a", "/srv/envs/b"]


def test_trusted_owners_by_name_or_uid_and_unknown_names_trust_nobody():
    assert resolve_owners(["nobody", "4242", "no-such-user-jhle"]) == frozenset({NOBODY, 4242})


# ---- discovery over real trees (as root: chmod and chown) -----------------------------------


@pytest.fixture
def roots(trusted_tmp_path):
    safe = trusted_tmp_path / "safe"
    make_prefix(safe / "ok")
    return trusted_tmp_path, safe


def shared_scan(*dirs, owners=()):
    config = DiscoveryConfig(shared_env_dirs=tuple(str(d) for d in dirs), shared_env_owners=owners)
    found = scan(config, None)
    return [e.name for e in found.envs], {s.path: (s.kind, s.reason) for s in found.skipped}


def test_planted_env_in_a_world_writable_sticky_dir_is_refused(roots):
    base, safe = roots
    open_dir = base / "open"
    planted = make_prefix(open_dir / "aaa")
    os.chown(planted, NOBODY, -1)
    open_dir.chmod(0o1777)
    names, skips = shared_scan(open_dir, safe)
    assert names == ["shared/ok"]
    why = f"unsafe shared location: {open_dir} is writable by others (mode 1777)"
    assert skips == {planted: (env_skips.UNSAFE_SHARED, why)}


def test_group_writable_parent_refuses_every_env_below(roots):
    base, safe = roots
    safe.chmod(0o775)
    names, skips = shared_scan(safe)
    assert names == []
    assert skips[str(safe / "ok")][1].endswith(f"{safe} is writable by its group (mode 0775)")


def test_env_owned_by_a_user_is_refused_unless_a_trusted_owner(roots):
    base, safe = roots
    os.chown(safe / "ok", NOBODY, -1)
    names, skips = shared_scan(safe)
    assert names == [] and "owned by nobody" in skips[str(safe / "ok")][1]
    assert shared_scan(safe, owners=("nobody",)) == (["shared/ok"], {})


def test_shared_dir_through_a_symlink_is_judged_where_it_leads(roots):
    base, safe = roots
    user_dir = base / "users-dir"
    make_prefix(user_dir / "envs" / "x")
    os.chown(user_dir, NOBODY, -1)
    link = base / "conda-envs"
    os.symlink(user_dir / "envs", link)
    names, skips = shared_scan(link)
    assert names == []
    kind, reason = skips[str(user_dir / "envs" / "x")]
    assert kind == env_skips.UNSAFE_SHARED and f"{user_dir} is owned by nobody" in reason
    os.chown(user_dir, 0, -1)  # the same link into a root-owned tree is fine
    assert shared_scan(link)[0] == ["shared/x"]


def test_fixing_the_mode_takes_effect_at_the_next_scan(roots):
    base, safe = roots
    safe.chmod(0o777)
    assert shared_scan(safe)[0] == []
    safe.chmod(0o755)
    assert shared_scan(safe)[0] == ["shared/ok"]


def test_in_an_unsafe_dir_only_envs_are_refused_as_unsafe(roots):
    base, safe = roots
    (safe / "plain").mkdir()
    safe.chmod(0o1777)
    names, skips = shared_scan(safe)
    assert names == []
    assert skips[str(safe / "ok")][0] == env_skips.UNSAFE_SHARED
    assert skips[str(safe / "plain")][0] == env_skips.NOT_AN_ENV
