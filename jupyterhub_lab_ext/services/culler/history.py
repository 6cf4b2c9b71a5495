"""The culler's pass history: one row per pass, kept for :data:`RETENTION`, for the dashboard.

The table lives in the culler's store (``culler.store.metadata``: created with the other
tables). :class:`PassHistory` records a finished pass and reads the recent ones;
:func:`hourly` (pure) turns pass rows into culls per hour for the dashboard's chart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from jupyterhub_lab_ext.services.common.store import Store
from jupyterhub_lab_ext.services.culler.report import PassReport
from jupyterhub_lab_ext.services.culler.store import metadata

#: how long pass rows are kept (older ones are deleted when a pass is recorded)
RETENTION = timedelta(days=7)
#: culled servers named per pass row (the counts stay exact)
NAMES_PER_PASS = 50
#: counts of a report kept per pass
COUNTED = ("culled", "stopping", "warned", "users_deleted", "stuck", "errors")

passes = sa.Table(
    "culler_passes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
    sa.Column("trigger", sa.Unicode(255), nullable=False, default=""),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("complete", sa.Boolean, nullable=False, default=True),
    sa.Column("duration", sa.Float, nullable=False, default=0.0),
    sa.Column("servers_scanned", sa.Integer, nullable=False, default=0),
    *(sa.Column(name, sa.Integer, nullable=False, default=0) for name in COUNTED),
    sa.Column("culled_names", sa.UnicodeText, nullable=False, default="[]"),
)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def pass_row(report: PassReport) -> dict:
    """The row recorded for a finished pass."""
    names = [
        d["user"] + (f"/{d['server']}" if d.get("server") else "")
        for d in (report.lists["culled"] + report.lists["stopping"])[:NAMES_PER_PASS]
    ]
    return {
        "started": report.started,
        "finished": report.finished,
        "trigger": report.trigger[:255],
        "dry_run": report.dry_run,
        "complete": report.complete,
        "duration": round(report.duration, 3),
        "servers_scanned": report.servers_scanned,
        **{name: report.counts[name] for name in COUNTED},
        "culled_names": json.dumps(names),
    }


def row_doc(row: Mapping) -> dict:
    """A pass row as the REST API shows it."""
    return {
        "started": _utc(row["started"]).isoformat(),
        "finished": _utc(row["finished"]).isoformat() if row["finished"] else None,
        "trigger": row["trigger"],
        "dry_run": bool(row["dry_run"]),
        "complete": bool(row["complete"]),
        "duration_seconds": row["duration"],
        "servers_scanned": row["servers_scanned"],
        "counts": {name: row[name] for name in COUNTED},
        "culled_names": json.loads(row["culled_names"] or "[]"),
    }


@dataclass(frozen=True)
class Bucket:
    start: datetime
    culled: int = 0
    would_cull: int = 0
    warned: int = 0
    passes: int = 0

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat(),
            "culled": self.culled,
            "would_cull": self.would_cull,
            "warned": self.warned,
            "passes": self.passes,
        }


def hourly(rows: Iterable[Mapping], now: datetime, hours: int = 24) -> list[Bucket]:
    """Culls per clock hour for the last ``hours`` hours, oldest first; the last is this hour.

    A pass counts in the hour it started. Servers a real pass stopped (``culled`` and those
    already ``stopping``) count as ``culled``; what a dry run would have stopped counts as
    ``would_cull``. Passes outside the window are ignored.
    """
    first = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    first -= timedelta(hours=hours - 1)
    counts = [[0, 0, 0, 0] for _ in range(hours)]
    for row in rows:
        index = int((_utc(row["started"]) - first) // timedelta(hours=1))
        if not 0 <= index < hours:
            continue
        stopped = row["culled"] + row["stopping"]
        slot = counts[index]
        slot[1 if row["dry_run"] else 0] += stopped
        slot[2] += row["warned"]
        slot[3] += 1
    return [Bucket(first + timedelta(hours=i), *c) for i, c in enumerate(counts)]


class PassHistory:
    """Records passes in, and reads them from, the culler's store."""

    def __init__(self, store: Store, *, clock=lambda: datetime.now(timezone.utc)):
        self.store = store
        self.clock = clock

    async def record(self, report: PassReport) -> None:
        """Add a finished pass and delete the rows older than :data:`RETENTION`."""
        row = pass_row(report)
        horizon = self.clock() - RETENTION

        def work(c):
            c.execute(passes.insert().values(**row))
            c.execute(passes.delete().where(passes.c.started < horizon))

        await self.store.run(work)

    async def recent(self, limit: int = 20) -> list[dict]:
        """The last ``limit`` passes, newest first."""
        query = sa.select(passes).order_by(passes.c.started.desc(), passes.c.id.desc()).limit(limit)
        rows = await self.store.run(lambda c: c.execute(query).mappings().all())
        return [row_doc(r) for r in rows]

    async def since(self, start: datetime) -> list[Mapping]:
        """Rows of the passes that started at or after ``start``."""
        query = sa.select(passes).where(passes.c.started >= start)
        return await self.store.run(lambda c: [dict(r) for r in c.execute(query).mappings()])
