"""The culler's store (exemptions, warnings) on SQLite, and the shared store helpers."""

from datetime import datetime, timedelta, timezone

import pytest

from jupyterhub_lab_ext.services.common.store import Store, normalize_db_url, redact_db_url
from jupyterhub_lab_ext.services.culler.store import CullerStore, metadata

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://u:p@127.0.0.1/db", "postgresql+psycopg://u:p@127.0.0.1/db"),
        ("postgres://u@127.0.0.1:5433/db", "postgresql+psycopg://u@127.0.0.1:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///culler.sqlite", "sqlite:///culler.sqlite"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_normalize_db_url(url, expected):
    assert normalize_db_url(url) == expected


def test_redact_db_url():
    assert "s3cret" not in redact_db_url("postgresql://u:s3cret@h/db")
    assert redact_db_url("not a url at all ::") == "<unparsable db url>"


@pytest.fixture
async def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/c.sqlite", metadata)
    await s.start()
    try:
        yield CullerStore(s)
    finally:
        await s.close()


async def test_exemption_crud(store):
    assert await store.list_exemptions() == {}
    ex, created = await store.put_exemption("alice", NOW + timedelta(days=1), "exam", "boss", NOW)
    assert created and ex.active(NOW) and not ex.active(NOW + timedelta(days=2))
    ex, created = await store.put_exemption("alice", None, "forever", "ops", NOW)
    assert not created
    got = await store.get_exemption("alice")
    assert (got.until, got.reason, got.created_by) == (None, "forever", "ops")
    assert got.created == NOW and got.created.tzinfo is not None
    assert got.as_dict()["until"] is None
    assert await store.delete_exemption("alice") is True
    assert await store.delete_exemption("alice") is False
    assert await store.get_exemption("alice") is None


async def test_purge_expired(store):
    await store.put_exemption("old", NOW - timedelta(seconds=1), "", "x", NOW)
    await store.put_exemption("later", NOW + timedelta(hours=1), "", "x", NOW)
    await store.put_exemption("open", None, "", "x", NOW)
    assert await store.purge_expired(NOW) == 1
    assert set(await store.list_exemptions()) == {"later", "open"}


async def test_warnings_roundtrip(store):
    await store.save_warnings({("a", ""): NOW, ("b", "gpu"): NOW}, set())
    assert await store.load_warnings() == {("a", ""): NOW, ("b", "gpu"): NOW}
    later = NOW + timedelta(minutes=5)
    await store.save_warnings({("a", ""): later}, {("b", "gpu")})
    assert await store.load_warnings() == {("a", ""): later}
    await store.save_warnings({}, set())  # nothing to do
    assert await store.load_warnings() == {("a", ""): later}


async def test_data_survives_a_new_store(tmp_path):
    url = f"sqlite:///{tmp_path}/c.sqlite"
    s1 = Store(url, metadata)
    await s1.start()
    await CullerStore(s1).put_exemption("alice", None, "r", "x", NOW)
    await s1.close()
    await s1.close()  # idempotent
    s2 = Store(url, metadata)
    await s2.start()
    assert set(await CullerStore(s2).list_exemptions()) == {"alice"}
    await s2.close()
