"""The culler's persistent state: exemptions set over REST and warnings already sent.

Both survive a restart of the service (or of the hub): an exempt user stays exempt, and a
warned server is not warned again (nor is its cull postponed again) after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from jupyterhub_lab_ext.services.common.store import Store

metadata = sa.MetaData()

exemptions = sa.Table(
    "culler_exemptions",
    metadata,
    sa.Column("name", sa.Unicode(255), primary_key=True),
    sa.Column("until", sa.DateTime(timezone=True), nullable=True),  # NULL: until removed
    sa.Column("reason", sa.Unicode(1024), nullable=False, default=""),
    sa.Column("created_by", sa.Unicode(255), nullable=False, default=""),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

warnings = sa.Table(
    "culler_warnings",
    metadata,
    sa.Column("user", sa.Unicode(255), primary_key=True),
    sa.Column("server", sa.Unicode(255), primary_key=True),
    sa.Column("warned_at", sa.DateTime(timezone=True), nullable=False),
)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite gives naive datetimes back
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class Exemption:
    name: str
    until: datetime | None
    reason: str
    created_by: str
    created: datetime

    def active(self, now: datetime) -> bool:
        return self.until is None or self.until > now

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
            "created_by": self.created_by,
            "created": self.created.isoformat(),
        }


def _row_to_exemption(row) -> Exemption:
    return Exemption(
        row.name, _utc(row.until), row.reason or "", row.created_by or "", _utc(row.created)
    )


class CullerStore:
    """Async access to the culler tables (all DB work on the store's worker thread)."""

    def __init__(self, store: Store):
        self.store = store

    async def list_exemptions(self) -> dict[str, Exemption]:
        rows = await self.store.run(lambda c: c.execute(sa.select(exemptions)).all())
        return {r.name: _row_to_exemption(r) for r in rows}

    async def get_exemption(self, name: str) -> Exemption | None:
        row = await self.store.run(
            lambda c: c.execute(sa.select(exemptions).where(exemptions.c.name == name)).first()
        )
        return _row_to_exemption(row) if row else None

    async def put_exemption(
        self, name: str, until: datetime | None, reason: str, created_by: str, now: datetime
    ) -> tuple[Exemption, bool]:
        """Create or replace; returns the exemption and whether it was new."""

        def work(c):
            existed = c.execute(
                sa.select(exemptions.c.name).where(exemptions.c.name == name)
            ).first()
            values = {"until": until, "reason": reason, "created_by": created_by, "created": now}
            if existed:
                c.execute(exemptions.update().where(exemptions.c.name == name).values(**values))
            else:
                c.execute(exemptions.insert().values(name=name, **values))
            return existed is None

        created = await self.store.run(work)
        return Exemption(name, until, reason, created_by, now), created

    async def delete_exemption(self, name: str) -> bool:
        def work(c):
            return c.execute(exemptions.delete().where(exemptions.c.name == name)).rowcount > 0

        return await self.store.run(work)

    async def purge_expired(self, now: datetime) -> int:
        def work(c):
            stmt = exemptions.delete().where(
                exemptions.c.until.is_not(None), exemptions.c.until <= now
            )
            return c.execute(stmt).rowcount

        return await self.store.run(work)

    async def load_warnings(self) -> dict[tuple[str, str], datetime]:
        rows = await self.store.run(lambda c: c.execute(sa.select(warnings)).all())
        return {(r.user, r.server): _utc(r.warned_at) for r in rows}

    async def save_warnings(
        self, add: dict[tuple[str, str], datetime], remove: set[tuple[str, str]]
    ) -> None:
        """Record new warnings and forget cleared ones, in one transaction."""
        if not add and not remove:
            return

        def work(c):
            for user, server in remove | set(add):
                c.execute(
                    warnings.delete().where(warnings.c.user == user, warnings.c.server == server)
                )
            if add:
                c.execute(
                    warnings.insert(),
                    [{"user": u, "server": s, "warned_at": t} for (u, s), t in add.items()],
                )

        await self.store.run(work)
