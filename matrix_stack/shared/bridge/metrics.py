"""A bridge's registry: HTTP requests and the outbox's deliveries."""

from __future__ import annotations

from matrix_stack.shared.kit.metrics import HttpMetrics
from matrix_stack.shared.outbox.metrics import OutboxMetrics


class Metrics(HttpMetrics):
    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        self.outbox = OutboxMetrics.register(self.registry, namespace)
