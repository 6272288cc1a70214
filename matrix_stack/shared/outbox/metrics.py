"""The outbox's deliveries, leases and queue, on the service's registry."""

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

    @classmethod
    def register(cls, registry: CollectorRegistry, namespace: str) -> OutboxMetrics:
        return cls(
            deliveries=Counter(
                "outbox_deliveries",
                "Delivery attempts by store (sqlite, postgres) and outcome (sent, retry, dead)",
                ["backend", "outcome"],
                namespace=namespace,
                registry=registry,
            ),
            depth=Gauge(
                "outbox_queue_depth",
                "Deliveries waiting to be sent (on PostgreSQL: by every replica, as this one last saw)",
                namespace=namespace,
                registry=registry,
            ),
            latency=Histogram(
                "outbox_delivery_latency_seconds",
                "From enqueue to the homeserver's answer",
                namespace=namespace,
                registry=registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            ),
            leases=Gauge(
                "outbox_room_leases",
                "Rooms this replica holds and sends to",
                namespace=namespace,
                registry=registry,
            ),
            takeovers=Counter(
                "outbox_lease_takeovers",
                "Rooms taken over from a replica whose lease ran out (it died or lost the database)",
                namespace=namespace,
                registry=registry,
            ),
        )
