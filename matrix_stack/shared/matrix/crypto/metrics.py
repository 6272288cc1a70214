"""The bot's encryption on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

REASONS = ("unavailable", "disabled", "store", "homeserver")


@dataclass
class CryptoMetrics:
    ready: Gauge  # 1 while this replica holds the device with its keys published
    encrypted: Counter  # events encrypted
    failures: Counter  # labels: reason, one of REASONS
    shared: Counter  # room keys sent to devices (labels: why = message | new-device | owed | request)

    @classmethod
    def register(cls, registry: CollectorRegistry, namespace: str) -> CryptoMetrics:
        metrics = cls._make(registry, namespace)
        for reason in REASONS:  # every series from the start: a rule's rate() sees the first failure
            metrics.failures.labels(reason=reason)
        return metrics

    @classmethod
    def _make(cls, registry: CollectorRegistry, namespace: str) -> CryptoMetrics:
        return cls(
            ready=Gauge(
                "encryption_ready",
                "1 while this replica uses the bot's device for encryption (keys published)",
                namespace=namespace,
                registry=registry,
            ),
            encrypted=Counter(
                "encryption_events",
                "Events encrypted for encrypted rooms",
                namespace=namespace,
                registry=registry,
            ),
            failures=Counter(
                "encryption_failures",
                "Messages kept queued because they could not be encrypted, by reason",
                ["reason"],
                namespace=namespace,
                registry=registry,
            ),
            shared=Counter(
                "encryption_room_keys_shared",
                "Room keys sent to devices, by why (message, new-device, owed, request)",
                ["why"],
                namespace=namespace,
                registry=registry,
            ),
        )
