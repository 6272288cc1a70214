"""The proxy's Prometheus metrics, beside the kit's HTTP ones.

What changes with every login is counted in plain integers and read when Prometheus scrapes: a
Counter's inc() or a Gauge's set() takes a lock and a check (~0.5 µs), and a login made nine of
them. The open connections are read off the sessions and the backends themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from matrix_stack.shared.kit.metrics import HttpMetrics

# A process's tallies as plain JSON (what a worker reports to the main process): counts by label,
# and `totals` (bytes, reused, active) by name.
Snapshot = dict[str, dict[str, int]]


class Tallies(Collector):
    """The per-login counts, as plain integers, exported as counters at scrape time; and the gauges
    of open connections, read from what holds them when asked. With workers, the main process adds
    the other workers' tallies (`peers`: their latest snapshots, and those of workers that ended)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.accepted = {"ldap": 0, "ldaps": 0}  # client connections, by listener
        self.to_backend = 0  # bytes relayed
        self.to_client = 0
        self.reused = 0
        self.binds: dict[str, int] = {}  # by result name
        self.refusals: dict[str, int] = {}  # by reason
        self.active: Callable[[], int] = lambda: 0  # the proxy's open sessions, once it counts them
        self.backends: Callable[[], list[tuple[str, int]]] = list  # (backend, open connections)
        self.idle: Callable[[], list[tuple[str, int]]] = list  # (backend, idle connections kept)
        self.peers: Callable[[], list[Snapshot]] = list

    def bind(self, result: str) -> None:
        self.binds[result] = self.binds.get(result, 0) + 1

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def snapshot(self) -> Snapshot:
        """Everything counted here so far, and the gauges now, as plain JSON."""
        return {
            "accepted": dict(self.accepted), "binds": dict(self.binds), "refusals": dict(self.refusals),
            "backends": dict(self.backends()), "idle": dict(self.idle()),
            "totals": {"to_backend": self.to_backend, "to_client": self.to_client, "reused": self.reused,
                       "active": self.active()},
        }  # fmt: skip

    def merged(self) -> Snapshot:
        """This process's snapshot with its peers' added."""
        total = self.snapshot()
        for peer in self.peers():
            for part in ("accepted", "binds", "refusals", "backends", "idle", "totals"):
                into = total[part]
                for key, count in peer.get(part, {}).items():
                    into[key] = into.get(key, 0) + count
        return total

    def collect(self) -> Iterator[Any]:
        prefix = self.prefix
        now = self.merged()
        totals = now["totals"]
        accepted = CounterMetricFamily(
            f"{prefix}connections", "Client connections accepted", labels=["listener"]
        )
        for listener, count in now["accepted"].items():
            accepted.add_metric([listener], count)
        relayed = CounterMetricFamily(f"{prefix}bytes", "Bytes relayed", labels=["direction"])
        relayed.add_metric(["to_backend"], totals["to_backend"])
        relayed.add_metric(["to_client"], totals["to_client"])
        binds = CounterMetricFamily(f"{prefix}binds", "Bind results by result name", labels=["result"])
        for result, count in now["binds"].items():
            binds.add_metric([result], count)
        refusals = CounterMetricFamily(
            f"{prefix}refusals", "Connections or operations the proxy refused", labels=["reason"]
        )
        for reason, count in now["refusals"].items():
            refusals.add_metric([reason], count)
        yield accepted
        yield relayed
        yield binds
        yield refusals
        yield CounterMetricFamily(f"{prefix}upstream_reused",
                                  "Sessions whose opening bind went over an idle backend connection",
                                  value=totals["reused"])  # fmt: skip
        yield GaugeMetricFamily(
            f"{prefix}active_connections", "Client connections open now", value=totals["active"]
        )
        open_now = GaugeMetricFamily(
            f"{prefix}backend_connections", "Proxied connections open to the backend", labels=["backend"]
        )
        for backend, count in now["backends"].items():
            open_now.add_metric([backend], count)
        yield open_now


class LdapMetrics(HttpMetrics):
    def __init__(self, namespace: str = "matrix_stack") -> None:
        super().__init__(namespace)
        kw: dict[str, Any] = {"namespace": namespace, "subsystem": "ldap", "registry": self.registry}
        self.tallies = Tallies(f"{namespace}_ldap_")
        self.ask_peers: Callable[[], Awaitable[None]] | None = None  # fresh tallies from the other workers
        self.registry.register(self.tallies)
        self.backend_up = Gauge("backend_up", "1 while the backend passes its checks", ["backend"], **kw)
        self.check_seconds = Histogram(
            "check_duration_seconds", "Health check latency", ["backend", "outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), **kw,
        )  # fmt: skip
        self.connect_failures = Counter(
            "upstream_connect_failures", "Connections to a backend that failed (then the next was tried)",
            ["backend"], **kw,
        )  # fmt: skip

    async def refresh(self) -> None:
        if self.ask_peers is not None:
            await self.ask_peers()
