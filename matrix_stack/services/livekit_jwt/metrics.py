"""livekit-jwt's metrics beside the kit's HTTP ones."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from matrix_stack.shared.kit.metrics import HttpMetrics


class LivekitMetrics(HttpMetrics):
    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        kw: dict[str, Any] = {"namespace": namespace, "subsystem": "livekit", "registry": self.registry}
        self.tokens = Counter(
            "tokens", "Token requests by endpoint and outcome", ["endpoint", "outcome"], **kw
        )
        self.lookup_seconds = Histogram(
            "openid_lookup_seconds", "OpenID userinfo lookups, resolution included", ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), **kw,
        )  # fmt: skip
        self.refusals = Counter(
            "refusals", "Lookups refused by the egress policy, by reason", ["reason"], **kw
        )
        self.rooms = Counter("rooms_created", "CreateRoom calls on the SFU by outcome", ["outcome"], **kw)
