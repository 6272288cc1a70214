"""livekit-jwt's metrics beside the kit's HTTP ones."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
        # delegated leave: what this replica drives, what it took from a dead one, how jobs end
        # (left: the SFU said so, by webhook or by the sanity check; never_joined; expired: the
        # homeserver no longer has the delayed event; gave_up: the send kept failing)
        self.delegations_held = Gauge("delegations_held", "Delegation jobs this replica holds", **kw)
        self.delegation_takeovers = Counter(
            "delegation_takeovers", "Jobs taken from another holder (lease ran out, or released)", **kw
        )
        self.delegations_ended = Counter(
            "delegations_ended", "Delegation jobs ended, by reason", ["reason"], **kw
        )
