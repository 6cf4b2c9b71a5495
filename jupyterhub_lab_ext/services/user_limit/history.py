"""Usage over time for the user-limit dashboard: samples of the book, kept for a day.

:class:`HistorySampler` writes one row every ``interval`` seconds (active servers, places held
for the queue, queue length, seats) into the service's store and deletes rows older than
``retention``; so the table holds at most ``retention / interval`` rows (1440 for a minute and
a day). :func:`downsample` (pure) turns the rows into chart points.

The table lives in the service's store (``user_limit.store.metadata``: created with the others).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.user_limit.store import metadata

log = logging.getLogger(__name__)

#: what a sample counts, in column order
FIELDS = ("active", "reserved", "queued", "seats")

samples = sa.Table(
    "user_limit_samples",
    metadata,
    sa.Column("ts", sa.Float, primary_key=True),  # seconds since the epoch
    *(sa.Column(name, sa.Integer, nullable=False, default=0) for name in FIELDS),
)


@dataclass(frozen=True)
class Point:
    """One chart point: the highest value of each field seen in ``[start, start + step)``;
    None where no sample fell in it (the service was not running)."""

    start: float
    active: int | None
    reserved: int | None
    queued: int | None
    seats: int | None

    def as_dict(self) -> dict:
        return {"start": self.start, **{name: getattr(self, name) for name in FIELDS}}


def downsample(rows: Iterable[Mapping], start: float, end: float, step: float) -> list[Point]:
    """Buckets of ``step`` seconds from ``start`` up to ``end``, each with the maximum of each
    field over the samples in it, so a short peak (a full hub for a minute) is never averaged
    away. Samples outside ``[start, end)`` are ignored."""
    if step <= 0 or end <= start:
        return []
    count = int((end - start + step - 1e-9) // step)
    highs: list[list[int] | None] = [None] * count
    for row in rows:
        index = int((row["ts"] - start) // step)
        if not 0 <= index < count or row["ts"] >= end:
            continue
        values = [int(row[name]) for name in FIELDS]
        current = highs[index]
        highs[index] = (
            values if current is None else [max(a, b) for a, b in zip(current, values, strict=True)]
        )
    return [
        Point(start + i * step, *(h if h is not None else [None] * len(FIELDS)))
        for i, h in enumerate(highs)
    ]


class HistorySampler:
    """Samples ``read()`` (a dict with :data:`FIELDS`) into ``store`` every ``interval`` s."""

    def __init__(
        self,
        store: Store,
        read: Callable[[], Mapping[str, int]],
        *,
        interval: float = 60.0,
        retention: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.read = read
        self.interval = interval
        self.retention = retention
        self.clock = clock

    async def sample(self) -> dict:
        """Write one sample now (and forget those past the retention); return it."""
        now = self.clock()
        counts = self.read()
        row = {"ts": now, **{name: int(counts[name]) for name in FIELDS}}
        horizon = now - self.retention

        def work(c):
            c.execute(samples.delete().where(sa.or_(samples.c.ts < horizon, samples.c.ts == now)))
            c.execute(samples.insert().values(**row))

        await self.store.run(work)
        return row

    async def run(self) -> None:
        """Sample forever (cancel to stop); a failed write is logged and retried next time."""
        while True:
            try:
                await self.sample()
            except Exception as e:
                log.warning("Could not record a usage sample: %s", e)
            await asyncio.sleep(self.interval)

    async def since(self, start: float) -> list[dict]:
        query = sa.select(samples).where(samples.c.ts >= start).order_by(samples.c.ts)
        return await self.store.run(lambda c: [dict(r) for r in c.execute(query).mappings()])
