"""Prometheus metrics of the idle culler (registered in the app's own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "jhle_culler"


class CullerMetrics:
    def __init__(self, registry: CollectorRegistry, namespace: str = NAMESPACE):
        kw = {"namespace": namespace, "registry": registry}
        self.passes = Counter("passes", "Culling passes run.", ["result", "dry_run"], **kw)
        self.pass_duration = Histogram(
            "pass_duration_seconds",
            "Wall time of a culling pass.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            **kw,
        )
        self.culls = Counter(
            "culls",
            "Servers stopped and users deleted (not in dry runs).",
            ["kind", "reason"],
            **kw,
        )
        self.warnings = Counter("warnings", "Cull warnings issued.", **kw)
        self.errors = Counter("errors", "Errors during passes, by stage.", ["stage"], **kw)
        self.users_scanned = Gauge("users_scanned", "Users looked at by the last pass.", **kw)
        self.stuck_servers = Gauge(
            "stuck_servers", "Servers stuck pending stop longer than pending_timeout.", **kw
        )
        self.last_pass = Gauge(
            "last_pass_timestamp_seconds", "Unix time the last pass finished.", **kw
        )
        self.exemptions = Gauge("exemptions", "Active exemptions set over REST.", **kw)
        self.concurrency = Gauge(
            "concurrency",
            "Stops and user deletions the culler lets be in flight now (with a hub latency"
            " budget, the adaptive limit; without one, --concurrency).",
            **kw,
        )
        self.hub_latency = Gauge(
            "hub_latency_seconds",
            "Median Hub API answer time the culler measured over its last probe window.",
            **kw,
        )
        self.hub_idle_latency = Gauge(
            "hub_idle_latency_seconds",
            "Median Hub API answer time measured before the last pass started (the idle hub).",
            **kw,
        )
