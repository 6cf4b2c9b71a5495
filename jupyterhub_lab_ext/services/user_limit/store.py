"""Persistence of the user-limit service: limit overrides, admissions, the queue and seats.

SQLAlchemy Core on the shared :class:`~jupyterhub_lab_ext.services.common.store.Store` (SQLite
file by default, PostgreSQL supported). The service decides in memory (``ledger.py``) and makes
each change durable with :meth:`LimitStore.write` before it answers; concurrent writes are
grouped into one transaction (group commit), so a burst of decisions costs a few commits, not
one each.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..common.store import Store

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


@dataclass(frozen=True)
class Op:
    """One change to persist: ``kind`` is put_/del_ admission, waiter, seat or put_setting."""

    kind: str
    arg: Any
    extra: Any = None


def _apply(conn: sa.Connection, op: Op) -> None:
    kind, arg = op.kind, op.arg
    if kind == "put_admission":
        conn.execute(sa.delete(admissions_table).where(admissions_table.c.id == arg.id))
        conn.execute(
            sa.insert(admissions_table).values(
                id=arg.id,
                user=arg.user,
                server_name=arg.server_name,
                groups=json.dumps(sorted(arg.groups)),
                admin=arg.admin,
                state=arg.state,
                created=arg.created,
                expires=arg.expires,
                options=json.dumps(arg.options),
            )
        )
    elif kind == "del_admission":
        conn.execute(sa.delete(admissions_table).where(admissions_table.c.id == arg))
    elif kind == "put_waiter":
        conn.execute(sa.delete(queue_table).where(queue_table.c.user == arg.user))
        conn.execute(
            sa.insert(queue_table).values(
                user=arg.user,
                seq=arg.seq,
                server_name=arg.server_name,
                groups=json.dumps(sorted(arg.groups)),
                admin=arg.admin,
                enqueued=arg.enqueued,
                options=json.dumps(arg.options),
            )
        )
    elif kind == "del_waiter":
        conn.execute(sa.delete(queue_table).where(queue_table.c.user == arg))
    elif kind == "put_seat":
        conn.execute(sa.delete(seats_table).where(seats_table.c.user == arg))
        conn.execute(sa.insert(seats_table).values(user=arg, created=op.extra))
    elif kind == "del_seat":
        conn.execute(sa.delete(seats_table).where(seats_table.c.user == arg))
    elif kind == "put_setting":
        conn.execute(sa.delete(settings_table).where(settings_table.c.key == arg))
        conn.execute(sa.insert(settings_table).values(key=arg, value=json.dumps(op.extra)))
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown store operation {kind!r}")


class LimitStore:
    """The service's tables plus a group-commit writer."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.store = Store(url, metadata, **engine_kwargs)
        self._pending: list[tuple[list[Op], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self.commits = 0
        self.failures = 0

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        if self._flusher is not None:
            try:
                await self._flusher
            except Exception:
                log.exception("Last store write failed")
        await self.store.close()

    async def load(self) -> dict:
        """Everything needed to rebuild the ledger after a restart."""
        from .ledger import Admission, Waiter  # local: ledger imports Op from here

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

            def work(conn, all_ops=all_ops):
                for op in all_ops:
                    _apply(conn, op)

            try:
                await self.store.run(work)
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
