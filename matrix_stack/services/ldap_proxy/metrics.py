"""The proxy's Prometheus metrics, beside the kit's HTTP ones."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from matrix_stack.shared.kit.metrics import HttpMetrics


class LdapMetrics(HttpMetrics):
    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        kw: dict[str, Any] = {"namespace": namespace, "subsystem": "ldap", "registry": self.registry}
        self.connections = Counter("connections", "Client connections accepted", ["listener"], **kw)
        self.active = Gauge("active_connections", "Client connections open now", **kw)
        self.backend_up = Gauge("backend_up", "1 while the backend passes its checks", ["backend"], **kw)
        self.backend_connections = Gauge(
            "backend_connections", "Proxied connections open to the backend", ["backend"], **kw
        )
        self.check_seconds = Histogram(
            "check_duration_seconds", "Health check latency", ["backend", "outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), **kw,
        )  # fmt: skip
        self.connect_failures = Counter(
            "upstream_connect_failures", "Connections to a backend that failed (then the next was tried)",
            ["backend"], **kw,
        )  # fmt: skip
        self.reused = Counter(
            "upstream_reused", "Sessions whose opening bind went over an idle backend connection", **kw
        )
        self.binds = Counter("binds", "Bind results by result name", ["result"], **kw)
        self.bytes = Counter("bytes", "Bytes relayed", ["direction"], **kw)
        self.refusals = Counter("refusals", "Connections or operations the proxy refused", ["reason"], **kw)
        self.to_backend = self.bytes.labels("to_backend")
        self.to_client = self.bytes.labels("to_client")
        self._bind_results: dict[str, Any] = {}

    def bind_result(self, result: str) -> Any:
        """The counter child for a result name (labels() costs more than inc(), once per bind)."""
        child = self._bind_results.get(result)
        if child is None:
            child = self._bind_results[result] = self.binds.labels(result)
        return child
