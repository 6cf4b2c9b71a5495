"""Prometheus metrics of the user-limit service (one registry per app)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jupyterhub_lab_ext.services.user_limit import policy


class _UsageCollector(Collector):
    """Reads usage, queue length, seats and limits from the ledger at scrape time."""

    def __init__(self, namespace: str, ledger):
        self.ns = namespace
        self.ledger = ledger

    def describe(self):
        return []

    def collect(self):
        ledger = self.ledger
        used = ledger.usage()
        limits = ledger.limits
        g = GaugeMetricFamily(
            f"{self.ns}_active_servers", "Places in use (servers and reservations)."
        )
        g.add_metric([], used.total)
        yield g
        g = GaugeMetricFamily(
            f"{self.ns}_group_active_servers",
            "Places in use per hub group with a quota.",
            labels=["group"],
        )
        for group in sorted(set(limits.group_quotas) | set(used.per_group)):
            if group in limits.group_quotas:
                g.add_metric([group], used.per_group.get(group, 0))
        yield g
        g = GaugeMetricFamily(f"{self.ns}_queue_length", "Users waiting in line.")
        g.add_metric([], len(ledger.queue))
        yield g
        g = GaugeMetricFamily(f"{self.ns}_seats", "Users holding a seat.")
        g.add_metric([], len(ledger.seats))
        yield g
        g = GaugeMetricFamily(f"{self.ns}_limit", "Limits in force (0: none).", labels=["limit"])
        g.add_metric(["max_active_servers"], limits.max_active_servers)
        g.add_metric(["max_users"], limits.max_users)
        g.add_metric(["max_servers_per_user"], limits.max_servers_per_user)
        yield g


class UserLimitMetrics:
    """The service's counters, plus gauges read from ``ledger`` at scrape time."""

    def __init__(self, registry, namespace: str, ledger):
        self.decisions = Counter(
            "decisions",
            "Admission decisions by kind (server/seat), outcome (admit/queue/refuse) and reason.",
            ["kind", "outcome", "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.refusals = Counter(
            "refusals",
            "Requests not admitted right away (queued or refused), by reason.",
            ["kind", "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.latency = Histogram(
            "decision_duration_seconds",
            "Time to decide and book one admission request (without the store write).",
            namespace=namespace,
            registry=registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
        )
        self.releases = Counter(
            "releases", "Places freed by the hook.", namespace=namespace, registry=registry
        )
        self.offers = Counter(
            "offers",
            "Places reserved for the head of the line.",
            namespace=namespace,
            registry=registry,
        )
        self.started = Counter(
            "queued_starts",
            "Servers of queued users started by the service.",
            namespace=namespace,
            registry=registry,
        )
        self.reconciles = Counter(
            "reconciliations",
            "Reconciliations with the Hub API by result.",
            ["result"],
            namespace=namespace,
            registry=registry,
        )
        registry.register(_UsageCollector(namespace, ledger))

    def decision(self, decision: policy.Decision, seconds: float, kind: str = "server") -> None:
        self.decisions.labels(kind, decision.outcome, decision.reason).inc()
        if decision.outcome != policy.ADMIT:
            self.refusals.labels(kind, decision.reason).inc()
        self.latency.observe(seconds)
