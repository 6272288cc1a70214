"""A bridge's registry: HTTP requests, the outbox's deliveries and the bot's encryption."""

from __future__ import annotations

from matrix_stack.shared.kit.metrics import HttpMetrics
from matrix_stack.shared.matrix.crypto.metrics import CryptoMetrics
from matrix_stack.shared.outbox.metrics import OutboxMetrics


class Metrics(HttpMetrics):
    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        self.outbox = OutboxMetrics.register(self.registry, namespace)
        self.crypto = CryptoMetrics.register(self.registry, namespace)
