"""Persistence of the user-limit service: limit overrides, admissions, the queue and seats.

SQLAlchemy Core tables (``metadata``) on the :class:`~jupyterhub_lab_ext.services.common.store.Store`
the service app creates for them, as the culler's store does (SQLite file by default, PostgreSQL
supported). The service decides in memory (``ledger.py``) and makes each change durable with
:meth:`LimitStore.write` before it answers; concurrent writes are grouped into one transaction
(group commit), so a burst of decisions costs a few commits, not one each.
"""

from __future__ import annotations

import asyncio
import json
import logging

import sqlalchemy as sa

from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.user_limit.records import Admission, Op, Waiter

log = logging.getLogger(__name__)

metadata = sa.MetaData()

settings_table = sa.Table(
    "user_limit_settings",
    metadata,
    sa.Column("key", sa.Unicode(64), primary_key=True),
    sa.Column("value", sa.UnicodeText, nullable=False),
)

admissions_table = sa.Table(
    "user_limit_admissions",
    metadata,
    sa.Column("id", sa.Unicode(64), primary_key=True),
    sa.Column("user", sa.Unicode(255), nullable=False, index=True),
    sa.Column("server_name", sa.Unicode(255), nullable=False, default=""),
    sa.Column("groups", sa.UnicodeText, nullable=False, default="[]"),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("state", sa.Unicode(16), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("options", sa.UnicodeText, nullable=False, default="{}"),
)

queue_table = sa.Table(
    "user_limit_queue",
    metadata,
    sa.Column("user", sa.Unicode(255), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),
    sa.Column("server_name", sa.Unicode(255), nullable=False, default=""),
    sa.Column("groups", sa.UnicodeText, nullable=False, default="[]"),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("enqueued", sa.Float, nullable=False),
    sa.Column("options", sa.UnicodeText, nullable=False, default="{}"),
)

seats_table = sa.Table(
    "user_limit_seats",
    metadata,
    sa.Column("user", sa.Unicode(255), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
)


def _admission_row(a) -> dict:
    return {
        "id": a.id,
        "user": a.user,
        "server_name": a.server_name,
        "groups": json.dumps(sorted(a.groups)),
        "admin": a.admin,
        "state": a.state,
        "created": a.created,
        "expires": a.expires,
        "options": json.dumps(a.options),
    }


def _waiter_row(w) -> dict:
    return {
        "user": w.user,
        "seq": w.seq,
        "server_name": w.server_name,
        "groups": json.dumps(sorted(w.groups)),
        "admin": w.admin,
        "enqueued": w.enqueued,
        "options": json.dumps(w.options),
    }


_KINDS = {
    # kind: (table, key column, key of the op, row builder or None for deletes)
    "put_admission": (admissions_table, "id", lambda op: op.arg.id, lambda op: _admission_row(op.arg)),
    "del_admission": (admissions_table, "id", lambda op: op.arg, None),
    "put_waiter": (queue_table, "user", lambda op: op.arg.user, lambda op: _waiter_row(op.arg)),
    "del_waiter": (queue_table, "user", lambda op: op.arg, None),
    "put_seat": (seats_table, "user", lambda op: op.arg, lambda op: {"user": op.arg, "created": op.extra}),
    "del_seat": (seats_table, "user", lambda op: op.arg, None),
    "put_setting": (
        settings_table, "key", lambda op: op.arg, lambda op: {"key": op.arg, "value": json.dumps(op.extra)}
    ),
}  # fmt: skip


def apply_batch(conn: sa.Connection, ops: list[Op]) -> None:
    """Apply ``ops`` in order, as a few set-wise statements: per table, the last operation on
    each key wins; touched keys are deleted, then the surviving rows inserted in one go."""
    final: dict[sa.Table, tuple[str, dict]] = {}
    for op in ops:
        try:
            table, column, key, row = _KINDS[op.kind]
        except KeyError:
            raise ValueError(f"unknown store operation {op.kind!r}") from None
        _, rows = final.setdefault(table, (column, {}))
        rows[key(op)] = row(op) if row else None
    for table, (column, rows) in final.items():
        keys = list(rows)
        for i in range(0, len(keys), 500):
            conn.execute(sa.delete(table).where(table.c[column].in_(keys[i : i + 500])))
        inserts = [r for r in rows.values() if r is not None]
        if inserts:
            conn.execute(sa.insert(table), inserts)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL journal with ``synchronous=NORMAL``: a commit survives the service being killed (the
    data is in the OS) without an fsync per commit; only a power cut may lose the last ones,
    which the reconciliation with the hub rebuilds."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class LimitStore:
    """The service's tables on ``store`` (made from :data:`metadata`) plus a group-commit writer."""

    def __init__(self, store: Store):
        self.store = store
        if store.engine.dialect.name == "sqlite":
            sa.event.listen(store.engine, "connect", _sqlite_pragmas)
            # connections the pool opened before (to create the tables) lack the pragmas
            store.engine.dispose()
        self._pending: list[tuple[list[Op], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self.commits = 0
        self.failures = 0

    async def drain(self) -> None:
        """Wait for the writes under way (the owner of ``store`` closes it afterwards)."""
        if self._flusher is not None:
            try:
                await self._flusher
            except Exception:
                log.exception("Last store write failed")

    async def load(self) -> dict:
        """Everything needed to rebuild the ledger after a restart."""

        def read(conn):
            settings = {r.key: json.loads(r.value) for r in conn.execute(sa.select(settings_table))}
            admissions = [
                Admission(
                    r.id,
                    r.user,
                    r.server_name,
                    frozenset(json.loads(r.groups)),
                    bool(r.admin),
                    r.state,
                    r.created,
                    r.expires,
                    json.loads(r.options or "{}"),
                )
                for r in conn.execute(sa.select(admissions_table))
            ]
            waiters = [
                Waiter(
                    r.user,
                    r.server_name,
                    frozenset(json.loads(r.groups)),
                    bool(r.admin),
                    r.seq,
                    r.enqueued,
                    json.loads(r.options or "{}"),
                )
                for r in conn.execute(sa.select(queue_table).order_by(queue_table.c.seq))
            ]
            seats = {r.user: r.created for r in conn.execute(sa.select(seats_table))}
            return {
                "settings": settings,
                "admissions": admissions,
                "waiters": waiters,
                "seats": seats,
            }

        return await self.store.run(read)

    async def ping(self) -> bool:
        try:
            await self.store.run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
            return True
        except Exception as e:
            log.warning("Store check failed: %s", type(e).__name__)
            return False

    async def write(self, ops: list[Op]) -> None:
        """Persist ``ops`` (in order, after every earlier write); raises if the commit failed."""
        if not ops:
            return
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((list(ops), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await fut

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            all_ops = [op for ops, _ in batch for op in ops]

            try:
                await self.store.run(lambda conn, ops=all_ops: apply_batch(conn, ops))
            except Exception as e:
                self.failures += 1
                log.error("Store write of %d change(s) failed: %s", len(all_ops), e)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                        fut.exception()
            else:
                self.commits += 1
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
