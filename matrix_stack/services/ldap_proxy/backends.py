"""The backends' state (up or down by their checks, open connections) and the balancing policy that
orders them for a new connection: the healthy primaries by policy, then the healthy backups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matrix_stack.services.ldap_proxy.config import Backend, Balance, LdapProxySettings
from matrix_stack.services.ldap_proxy.health import CheckRequest, CheckResult, check
from matrix_stack.services.ldap_proxy.metrics import LdapMetrics
from matrix_stack.services.ldap_proxy.relay import UpstreamSide
from matrix_stack.services.ldap_proxy.upstream import client_context

log = logging.getLogger("matrix_stack.ldap_proxy")
RECHECK_AFTER_FAILURE_SECONDS = 0.5  # a failed connect wakes the check, at most this often


@dataclass(eq=False)  # identity: states are kept in sets and dict keys
class BackendState:
    config: Backend
    active: int = 0
    up: bool = False
    checked: bool = False
    successes: int = 0  # consecutive
    failures: int = 0
    last: CheckResult | None = None
    last_at: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    woken_at: float = 0.0
    # Idle connections, newest last, for sessions that begin with a bind (which resets whatever the
    # connection was bound as): no TCP or TLS set-up per login, for the proxy or the directory.
    idle: list[tuple[asyncio.Transport, UpstreamSide, float]] = field(default_factory=list)
    limit: int = 0  # this process's share of the backend's max_connections (0: none)

    def __post_init__(self) -> None:
        self.context = client_context(self.config)

    @property
    def name(self) -> str:
        return self.config.name

    def full(self) -> bool:
        """At the backend's limit, counting idle connections (they are connections to it too)."""
        limit = self.limit
        return bool(limit) and self.active + len(self.idle) >= limit

    def drop_one_idle(self) -> bool:
        """Make room under the limit by closing the oldest idle connection, if there is one."""
        if not self.idle or (self.limit and self.active >= self.limit):
            return False
        transport, _, _ = self.idle.pop(0)
        transport.close()
        return True

    def take_idle(self, now: float, max_age: float) -> tuple[asyncio.Transport, UpstreamSide] | None:
        while self.idle:
            transport, protocol, parked_at = self.idle.pop()
            if transport.is_closing() or protocol.closed or now - parked_at > max_age:
                transport.close()
                continue
            return transport, protocol
        return None

    def park(self, transport: asyncio.Transport, protocol: UpstreamSide, now: float, limit: int) -> bool:
        over = bool(self.limit) and self.active + len(self.idle) > self.limit
        if len(self.idle) >= limit or not self.up or over:
            return False
        self.idle.append((transport, protocol, now))
        return True

    def prune_idle(self, now: float, max_age: float) -> None:
        keep = []
        for transport, protocol, parked_at in self.idle:
            if transport.is_closing() or protocol.closed or now - parked_at > max_age:
                transport.close()
            else:
                keep.append((transport, protocol, parked_at))
        self.idle = keep

    def drop_idle(self) -> None:
        for transport, _, _ in self.idle:
            transport.close()
        self.idle.clear()

    def describe(self) -> dict[str, Any]:
        host, port = self.config.address
        return {
            "name": self.name, "host": host, "port": port, "tls": self.config.tls.value,
            "backup": self.config.backup, "weight": self.config.weight,
            "state": "up" if self.up else "down", "connections": self.active,
            "idle_connections": len(self.idle),
            "max_connections": self.config.max_connections or None,
            "consecutive_successes": self.successes, "consecutive_failures": self.failures,
            "last_check": None if self.last is None else {
                "ok": self.last.ok, "detail": self.last.detail,
                "ms": round(self.last.seconds * 1000, 2), "at": self.last_at,
            },
        }  # fmt: skip


class Pool:
    def __init__(self, settings: LdapProxySettings, metrics: LdapMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.backends = [BackendState(backend, limit=settings.share(backend.max_connections))
                         for backend in settings.backends]  # fmt: skip
        self.by_name = {state.name: state for state in self.backends}
        # With workers: the main process's checks tell the others when a backend goes up or down
        # (`changed`), and the others hand their failed connects to it (`failed_elsewhere`).
        self.changed: Callable[[], None] = lambda: None
        self.failed_elsewhere: Callable[[BackendState], None] | None = None
        password = settings.check_password.get_secret_value() if settings.check_password else ""
        self.request = CheckRequest(settings.check_type, settings.check_bind_dn or "", password)
        self._turns = [0, 0]  # primaries, backups: each group takes its own turns
        self._usable: tuple[BackendState, ...] | None = None
        # each group's (primaries, backups) order for each turn, from the usable states
        self._orders: tuple[list[list[BackendState]], list[list[BackendState]]] = ([[]], [[]])
        self._tasks: list[asyncio.Task[None]] = []
        metrics.tallies.backends = lambda: [(state.name, state.active) for state in self.backends]
        for state in self.backends:
            metrics.backend_up.labels(state.name).set(0)

    # --- selection ----------------------------------------------------------------------------------

    def any_up(self) -> bool:
        return any(state.up for state in self.backends)

    def candidates(self) -> list[BackendState]:
        """Where to try a new connection, in order; empty when nothing is up. Not for changing: the
        orders are worked out when the states change, not for every connection."""
        usable = tuple(s for s in self.backends if s.up and not s.full())
        if usable != self._usable:
            self._usable = usable
            self._orders = (self._turn_orders([s for s in usable if not s.config.backup]),
                            self._turn_orders([s for s in usable if s.config.backup]))  # fmt: skip
        primaries = self._order(0)
        backups = self._order(1)
        return primaries + backups if backups else primaries

    def _turn_orders(self, states: list[BackendState]) -> list[list[BackendState]]:
        """A group's order for each turn: one for `first` and `least_conn` (sorted when used), one per
        weighted slot for `round_robin`."""
        if self.settings.balance is not Balance.round_robin or len(states) < 2:
            return [states]
        slots = [s for s in states for _ in range(s.config.weight)]
        return [list(dict.fromkeys(slots[turn:] + slots[:turn])) for turn in range(len(slots))]

    def _order(self, group: int) -> list[BackendState]:
        orders = self._orders[group]
        if len(orders) > 1:  # round robin: the next turn
            turn = self._turns[group] = (self._turns[group] + 1) % len(orders)
            return orders[turn]
        states = orders[0]
        if self.settings.balance is Balance.least_conn and len(states) > 1:
            return sorted(states, key=lambda s: s.active / s.config.weight)  # stable: ties keep order
        return states

    def opened(self, state: BackendState) -> None:
        state.active += 1

    def closed(self, state: BackendState) -> None:
        state.active -= 1

    def connect_failed(self, state: BackendState) -> None:
        """Check again now rather than at the next interval (where the checks run)."""
        if self.failed_elsewhere is not None:
            self.failed_elsewhere(state)
            return
        self.metrics.connect_failures.labels(state.name).inc()
        now = time.monotonic()
        if now - state.woken_at >= RECHECK_AFTER_FAILURE_SECONDS:
            state.woken_at = now
            state.wake.set()

    # --- checks -------------------------------------------------------------------------------------

    def record(self, state: BackendState, result: CheckResult) -> None:
        state.last, state.last_at = result, time.time()
        outcome = "ok" if result.ok else "failed"
        self.metrics.check_seconds.labels(state.name, outcome).observe(result.seconds)
        was_up = state.up
        if result.ok:
            state.successes, state.failures = state.successes + 1, 0
            if not state.checked or (not state.up and state.successes >= self.settings.check_rise):
                state.up = True
        else:
            state.successes, state.failures = 0, state.failures + 1
            if not state.checked or (state.up and state.failures >= self.settings.check_fall):
                state.up = False
        if state.up != was_up or not state.checked:
            level = logging.INFO if state.up else logging.WARNING
            log.log(level, "backend %s", "up" if state.up else "down",
                    extra={"backend": state.name, "check": result.detail,
                           "ms": round(result.seconds * 1000, 2)})  # fmt: skip
        state.checked = True
        if not state.up:
            state.drop_idle()
        self.metrics.backend_up.labels(state.name).set(1 if state.up else 0)
        if state.up != was_up:
            self.changed()

    def states(self) -> dict[str, bool]:
        """Which backends are up, by name (what the main process tells the other workers)."""
        return {state.name: state.up for state in self.backends}

    def take_states(self, up: dict[str, bool]) -> None:
        """The main process's view of the backends, in a worker that runs no checks."""
        for name, is_up in up.items():
            state = self.by_name.get(name)
            if state is None:
                continue
            state.up, state.checked = is_up, True
            if not is_up:
                state.drop_idle()

    async def check_once(self, state: BackendState) -> None:
        settings = self.settings
        self.record(state, await check(state.config, self.request, state.context, settings.check_timeout))

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check_once(state) for state in self.backends))

    async def _loop(self, state: BackendState) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), self.settings.check_interval)
            state.wake.clear()
            try:
                await self.check_once(state)
            except Exception:  # a check must never stop checking
                log.exception("health check failed unexpectedly", extra={"backend": state.name})

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(s), name=f"check-{s.name}") for s in self.backends]

    async def stop(self) -> None:
        for state in self.backends:
            state.drop_idle()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
