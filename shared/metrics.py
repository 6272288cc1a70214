"""A service's Prometheus registry: HTTP requests (every service) and the outbox's deliveries (the
Matrix bridges)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class OutboxMetrics:
    deliveries: Counter  # labels: backend = sqlite | postgres, outcome = sent | retry | dead
    depth: Gauge
    latency: Histogram
    leases: Gauge  # rooms this replica is sending to (on SQLite: rooms being drained)
    takeovers: Counter  # rooms taken from a replica whose lease ran out


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


class Metrics(HttpMetrics):
    """A bridge's registry: HTTP requests and the outbox's deliveries."""

    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        self.outbox = OutboxMetrics(
            deliveries=Counter(
                "outbox_deliveries",
                "Delivery attempts by store (sqlite, postgres) and outcome (sent, retry, dead)",
                ["backend", "outcome"],
                namespace=namespace,
                registry=self.registry,
            ),
            depth=Gauge(
                "outbox_queue_depth",
                "Deliveries waiting to be sent (on PostgreSQL: by every replica, as this one last saw)",
                namespace=namespace,
                registry=self.registry,
            ),
            latency=Histogram(
                "outbox_delivery_latency_seconds",
                "From enqueue to the homeserver's answer",
                namespace=namespace,
                registry=self.registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            ),
            leases=Gauge(
                "outbox_room_leases",
                "Rooms this replica holds and sends to",
                namespace=namespace,
                registry=self.registry,
            ),
            takeovers=Counter(
                "outbox_lease_takeovers",
                "Rooms taken over from a replica whose lease ran out (it died or lost the database)",
                namespace=namespace,
                registry=self.registry,
            ),
        )
