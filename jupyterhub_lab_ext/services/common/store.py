"""SQLAlchemy 2 helper for the services' small persistent state.

SQLite file by default; ``postgresql://`` URLs use psycopg 3. All database work runs on one
worker thread (``Store.run``), never on the event loop, which also serialises SQLite writers.
A SQLite file is private to the service's account (see :mod:`.statefiles`): created 0600 in a
directory that nobody else may write, or the store refuses to start.

Example::

    metadata = sa.MetaData()
    things = sa.Table("things", metadata, sa.Column("name", sa.Unicode(255), primary_key=True))
    store = Store("sqlite:///culler.sqlite", metadata)
    await store.start()                      # create_all
    rows = await store.run(lambda conn: conn.execute(sa.select(things)).all())
    await store.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from jupyterhub_lab_ext.services.common.statefiles import prepare_sqlite_file, sqlite_path

log = logging.getLogger(__name__)
T = TypeVar("T")


def normalize_db_url(url: str) -> str:
    """Map ``postgresql://`` / ``postgres://`` to the psycopg 3 driver; leave others alone."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def redact_db_url(url: str) -> str:
    """The URL with its password hidden, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable db url>"


def make_engine(url: str, **kwargs) -> Engine:
    url = normalize_db_url(url)
    u = make_url(url)
    if u.drivername.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


class Store:
    """An engine, a metadata to create, and one worker thread that runs all DB work."""

    def __init__(
        self,
        url: str,
        metadata: sa.MetaData,
        *,
        log: logging.Logger | logging.LoggerAdapter = log,
        **engine_kwargs,
    ):
        self.url = url
        self.metadata = metadata
        self.log = log
        self.engine = make_engine(url, **engine_kwargs)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jhle-store"
        )
        self._closed = False

    async def start(self) -> None:
        """Create missing tables (and a SQLite file, privately); raises
        :class:`~.statefiles.StateDirError` for a state directory others may write."""
        path = sqlite_path(self.url)
        if path is not None:
            for level, note in await self._call(prepare_sqlite_file, path):
                self.log.log(level, "%s", note)
        await self._call(self.metadata.create_all, self.engine)
        self.log.info("Store ready at %s", redact_db_url(self.url))

    async def _call(self, fn: Callable[..., T], *args) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in a transaction on the worker thread; return its result."""

        def work():
            with self.engine.begin() as conn:
                return fn(conn)

        return await self._call(work)

    async def close(self) -> None:
        """Dispose of the engine and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._call(self.engine.dispose)
        self._executor.shutdown(wait=True)
