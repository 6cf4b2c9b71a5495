"""What one culling pass saw and did (returned by ``POST api/passes``)."""

from __future__ import annotations

from datetime import datetime


class PassReport:
    """What one pass saw and did; lists are capped at ``limit`` entries, counts are exact."""

    LISTS = ("culled", "stopping", "warned", "users_deleted", "stuck", "errors")

    def __init__(self, pass_id: int, trigger: str, dry_run: bool, started: datetime, limit: int):
        self.pass_id = pass_id
        self.trigger = trigger
        self.dry_run = dry_run
        self.started = started
        self.finished: datetime | None = None
        self.duration = 0.0
        self.limit = limit
        self.users_scanned = 0
        self.servers_scanned = 0
        self.inactive_users_scanned = 0
        self.complete = True
        #: what the throttle saw of the hub's latency (None: no latency budget, or a dry run)
        self.hub_latency: dict | None = None
        self.lists: dict[str, list] = {k: [] for k in self.LISTS}
        self.counts: dict[str, int] = dict.fromkeys(self.LISTS, 0)

    def add(self, kind: str, entry: dict) -> None:
        self.counts[kind] += 1
        if len(self.lists[kind]) < self.limit:
            self.lists[kind].append(entry)

    def error(self, stage: str, user: str | None, server: str | None, message: str) -> None:
        self.add("errors", {"stage": stage, "user": user, "server": server, "error": message})

    def summary(self) -> dict:
        return {
            "id": self.pass_id,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "duration_seconds": round(self.duration, 3),
            "complete": self.complete,
            "users_scanned": self.users_scanned,
            "servers_scanned": self.servers_scanned,
            "inactive_users_scanned": self.inactive_users_scanned,
            "counts": dict(self.counts),
            "hub_latency": self.hub_latency,
        }

    def log_line(self) -> str:
        c = self.counts
        line = (
            f"Pass {self.pass_id}{' (dry run)' if self.dry_run else ''}: {self.users_scanned}"
            f" users, {self.servers_scanned} servers, culled {c['culled']}, stopping"
            f" {c['stopping']}, warned {c['warned']}, users deleted {c['users_deleted']},"
            f" stuck {c['stuck']}, errors {c['errors']} in {self.duration:.2f}s"
        )
        lat = self.hub_latency
        if lat:
            line += (
                f"; hub latency p50 {lat['p50_ms']} ms (idle {lat['idle_ms']} ms, budget"
                f" {lat['budget_ms']} ms), stops in flight {lat['concurrency_min']}"
                f"-{lat['concurrency_max']}"
            )
        return line

    def as_dict(self) -> dict:
        out = self.summary()
        out.update({k: list(v) for k, v in self.lists.items()})
        return out
