"""A service's Prometheus registry and its HTTP metrics (every service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class HttpMetrics:
    """One registry per service, so several services (or tests) can share a process."""

    def __init__(self, namespace: str = "matrix_stack") -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            namespace=namespace,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )

    async def refresh(self) -> None:
        """Before a scrape: bring in what is counted elsewhere (ldap-proxy's other workers)."""
