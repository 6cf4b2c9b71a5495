"""Prometheus metrics for the package's hub services: one registry per app, no global state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class HubAPIMetrics:
    """Counts and times every Hub API call made through :class:`~jupyterhub_lab_ext.services.common.hubapi.HubAPI`.

    Pass :meth:`observe` as ``HubAPI(on_call=...)``. Labels are the method, the endpoint with
    names replaced by ``{}`` and the status (599: no answer), so cardinality stays small.
    """

    def __init__(self, registry: CollectorRegistry, namespace: str):
        self.requests = Counter(
            "hub_api_requests",
            "Hub API requests made by this service (each retry counts).",
            ["method", "endpoint", "status"],
            namespace=namespace,
            registry=registry,
        )
        self.duration = Histogram(
            "hub_api_request_duration_seconds",
            "Duration of Hub API requests made by this service.",
            ["method", "endpoint"],
            namespace=namespace,
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.duration.labels(method, endpoint).observe(seconds)


def make_registry() -> CollectorRegistry:
    """A fresh registry (``auto_describe`` so collisions fail at definition time)."""
    return CollectorRegistry(auto_describe=True)
