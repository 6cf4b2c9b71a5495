"""The services' SQLite files are private: 0600 files, a 0700 directory, no shared directory."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from jupyterhub_lab_ext.services.common.statefiles import (
    StateDirError,
    directory_problem,
    prepare_sqlite_file,
    sqlite_path,
)
from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.culler.app import LabIdleCuller
from jupyterhub_lab_ext.services.culler.store import exemptions, metadata
from jupyterhub_lab_ext.services.user_limit.app import UserLimitApp
from jupyterhub_lab_ext.services.user_limit.records import Op
from jupyterhub_lab_ext.services.user_limit.store import LimitStore
from jupyterhub_lab_ext.services.user_limit.store import metadata as limit_metadata


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask():
    """Umask 000: what a careless init script or container may give the services."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite:///state.sqlite", "CWD/state.sqlite"),
        ("sqlite:////var/lib/svc/state.sqlite", "/var/lib/svc/state.sqlite"),
        ("sqlite+pysqlite:///sub/x.db", "CWD/sub/x.db"),
        ("sqlite:///file:/var/lib/svc/x.db?uri=true", "/var/lib/svc/x.db"),
        ("sqlite:///file:/x.db?mode=memory&uri=true", None),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql://u:p@db.example/svc", None),
        ("postgresql+psycopg://u@/svc?host=/run/postgresql", None),
    ],
)
def test_sqlite_path(url, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    want = None if expected is None else Path(expected.replace("CWD", str(tmp_path)))
    assert sqlite_path(url) == want


@pytest.mark.parametrize(
    "st_mode, uid, expected",
    [
        (0o40700, 1000, None),
        (0o40755, 0, None),
        (0o40750, 1000, None),
        (0o40775, 1000, "writable by group (mode 0775)"),
        (0o40757, 1000, "writable by others (mode 0757)"),
        (0o41777, 0, "writable by group and others (mode 1777)"),
        (0o40700, 2000, "owned by uid 2000, neither this service's account (uid 1000) nor root"),
    ],
)
def test_directory_problem(st_mode, uid, expected):
    problem = directory_problem(st_mode, uid, 1000)
    assert problem == (None if expected is None else f"it is {expected}")


def test_creates_directory_0700_and_file_0600_whatever_the_umask(tmp_path, open_umask):
    db = tmp_path / "new" / "state" / "svc.sqlite"
    notes = prepare_sqlite_file(db)
    assert mode(db.parent) == 0o700
    assert mode(db) == 0o600 and db.stat().st_size == 0
    assert notes == [(logging.INFO, f"Created state directory {db.parent} (mode 0700)")]
    assert prepare_sqlite_file(db) == []  # nothing left to do


@pytest.mark.parametrize("dir_mode", [0o777, 0o1777, 0o770, 0o730, 0o702])
def test_refuses_a_directory_others_may_write(tmp_path, dir_mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(dir_mode)
    with pytest.raises(StateDirError) as info:
        prepare_sqlite_file(shared / "svc.sqlite")
    message = str(info.value)
    assert f"Refusing to keep svc.sqlite in {shared}: it is writable by" in message
    assert f"(mode {dir_mode:04o})" in message
    assert not (shared / "svc.sqlite").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_refuses_a_directory_of_another_account(tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 4242, 4242)
    with pytest.raises(StateDirError, match="owned by uid 4242, neither this service's account"):
        prepare_sqlite_file(other / "svc.sqlite")
    assert not (other / "svc.sqlite").exists()


def test_tightens_files_an_older_version_left_open(tmp_path):
    db = tmp_path / "svc.sqlite"
    for path in (db, tmp_path / "svc.sqlite-wal", tmp_path / "svc.sqlite-shm"):
        path.write_bytes(b"")
        path.chmod(0o644)
    (tmp_path / "unrelated").write_bytes(b"")
    (tmp_path / "unrelated").chmod(0o644)
    notes = prepare_sqlite_file(db)
    assert [mode(p) for p in (db, f"{db}-wal", f"{db}-shm")] == [0o600] * 3
    assert mode(tmp_path / "unrelated") == 0o644
    assert (logging.WARNING, f"Made {db} private (mode 0644 -> 0600)") in notes
    assert len(notes) == 3


async def test_store_files_and_rollback_journal_are_0600(tmp_path, open_umask):
    """The culler's store (rollback journal): the journal that exists during a write is 0600."""
    store = Store(f"sqlite:///{tmp_path}/state/culler.sqlite", metadata)
    await store.start()
    db = tmp_path / "state" / "culler.sqlite"
    seen = {}

    def write(conn):
        conn.execute(
            sa.insert(exemptions).values(
                name="alice", reason="r", created_by="admin", created=sa.func.now()
            )
        )
        journal = Path(f"{db}-journal")
        seen["journal"] = mode(journal) if journal.exists() else None

    try:
        await store.run(write)
    finally:
        await store.close()
    assert seen["journal"] == 0o600
    assert mode(tmp_path / "state") == 0o700 and mode(db) == 0o600


async def test_limit_store_wal_files_are_0600(tmp_path, open_umask):
    """The user-limit's store (WAL): database, -wal and -shm are 0600 even with umask 000."""
    base = Store(f"sqlite:///{tmp_path}/user-limit.sqlite", limit_metadata)
    await base.start()
    store = LimitStore(base)
    try:
        await store.write([Op("put_seat", "alice", 1.0)])
        files = sorted(tmp_path.glob("user-limit.sqlite*"))
        assert {f.name for f in files} >= {
            "user-limit.sqlite",
            "user-limit.sqlite-wal",
            "user-limit.sqlite-shm",
        }
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await store.drain()
        await base.close()


async def test_store_refuses_a_world_writable_directory(tmp_path):
    tmp_path.chmod(0o1777)
    store = Store(f"sqlite:///{tmp_path}/c.sqlite", metadata)
    try:
        with pytest.raises(StateDirError, match="writable by group and others"):
            await store.start()
    finally:
        await store.close()
        tmp_path.chmod(0o700)
    assert not (tmp_path / "c.sqlite").exists()


async def test_in_memory_store_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store("sqlite://", metadata)
    await store.start()
    await store.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("app_class", [LabIdleCuller, UserLimitApp])
async def test_service_refuses_to_start_in_a_shared_directory(app_class, tmp_path, monkeypatch):
    for var in list(os.environ):
        if var.startswith("JUPYTERHUB_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    app = app_class()
    app.initialize(["--url=http://127.0.0.1:9/hub/api", f"--db-url=sqlite:///{shared}/s.sqlite"])
    app.api_token = "t" * 32
    try:
        with pytest.raises(StateDirError) as info:
            await app.setup()  # what ServiceApp.start logs as CRITICAL before exiting 1
    finally:
        await app.teardown()
    assert f"Refusing to keep s.sqlite in {shared}: it is writable by group and others" in str(
        info.value
    )
    assert not (shared / "s.sqlite").exists()
