"""The LDAP proxy as a kit component: its listeners, its backends' checks, its sessions, and the
start, stop and readiness the service kit drives."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from matrix_stack.services.ldap_proxy.backends import Pool
from matrix_stack.services.ldap_proxy.bind_limit import BindLimiter
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.metrics import LdapMetrics, Snapshot
from matrix_stack.services.ldap_proxy.session import ClientConnection
from matrix_stack.services.ldap_proxy.workers import Workers
from matrix_stack.shared.kit.errors import StartupError

log = logging.getLogger("matrix_stack.ldap_proxy")
SWEEP_SECONDS = 1.0  # how often idle and unanswered sessions are looked for
PRUNE_SECONDS = 30.0  # how often the failed-bind table drops DNs whose failures have expired


def server_context(settings: LdapProxySettings) -> ssl.SSLContext | None:
    """The proxy's own certificate; a file that will not load is a config error (ValueError)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"LDAP_PROXY_TLS_CERT_FILE/LDAP_PROXY_TLS_KEY_FILE: cannot load "
            f"{settings.tls_cert_file} with {settings.tls_key_file}: {exc}"
        ) from exc
    return context


class LdapProxy:
    """The main process (`main`: it runs the checks, and starts the other workers if there are to be
    any), or one of the other workers (its backends' states from the main one, `report` its tallies'
    way there)."""

    def __init__(
        self, settings: LdapProxySettings, metrics: LdapMetrics | None = None, *, main: bool = True
    ) -> None:
        self._settings = settings
        self.main = main
        self._metrics = metrics or LdapMetrics()
        self.server_context = server_context(settings)
        self.pool = Pool(settings, self._metrics)
        self.limiter = BindLimiter(settings.bind_failure_limit, settings.bind_failure_window)
        self.sessions: set[ClientConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._drained = asyncio.Event()
        self._pruned_at = time.monotonic()
        self._tallies = self._metrics.tallies
        self._tallies.active = lambda: len(self.sessions)
        self._tallies.idle = lambda: [(state.name, len(state.idle)) for state in self.pool.backends]
        self._max_sessions = settings.share(settings.max_connections)
        self.workers: Workers | None = None  # the other workers, in the main process
        self.report: Callable[[Snapshot], None] | None = None  # in another worker: to the main process
        if main and settings.worker_count > 1:
            self.workers = Workers(settings, self.pool, settings.worker_count - 1)
            self._tallies.peers = self.workers.snapshots
            self._metrics.ask_peers = self.workers.refresh
            self.pool.changed = self.workers.broadcast

    # --- the sessions' Registry (per connection: the fields, not the properties, save a call) -------

    def admit(self, session: ClientConnection) -> bool:
        self.sessions.add(session)
        self._tallies.accepted[session.listener] += 1
        return len(self.sessions) <= self._max_sessions

    def forget(self, session: ClientConnection) -> None:
        session.count_bytes()
        self.sessions.discard(session)
        if not self.sessions:
            self._drained.set()

    @property
    def settings(self) -> LdapProxySettings:
        return self._settings

    @property
    def metrics(self) -> LdapMetrics:
        return self._metrics

    async def start(self) -> None:
        settings = self.settings
        if self.main:  # check first, so the listener opens knowing which backends are up
            await self.pool.check_all()
        listeners: list[tuple[str, int, ssl.SSLContext | None]] = [("ldap", settings.listen_port, None)]
        if settings.ldaps_port is not None:
            listeners.append(("ldaps", settings.ldaps_port, self.server_context))
        loop = asyncio.get_running_loop()
        for name, port, context in listeners:
            # Each connection is handed what it works with (and this proxy as the Registry counting it).
            session = functools.partial(ClientConnection, settings, self.pool, self.limiter, self.metrics,
                                        self.server_context, self, name, context is not None)  # fmt: skip
            try:
                server = await loop.create_server(
                    session,
                    settings.listen_host, port, ssl=context, backlog=1024, reuse_address=True,
                    reuse_port=settings.worker_count > 1,
                    ssl_handshake_timeout=settings.connect_timeout if context else None,
                )  # fmt: skip
            except OSError as exc:
                await self._close_servers()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"cannot listen on {settings.listen_host}:{port}: {reason}") from exc
            self._servers.append(server)
        if self.main:
            self.pool.start()
        if self.workers is not None:
            try:
                await self.workers.start()
            except StartupError:
                await self._close_servers()
                await self.pool.stop()
                raise
        self._sweeper = asyncio.create_task(self._sweep(), name="ldap-sweep")
        self._started = True
        up = [state.name for state in self.pool.backends if state.up]
        log.info("listening", extra={
            "ldap": f"{settings.listen_host}:{settings.listen_port}", "ldaps": settings.ldaps_port,
            "backends_up": up, "starttls": settings.starttls_mode, "read_only": settings.read_only,
            "workers": settings.worker_count if self.main else None,
        })  # fmt: skip

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for server in self._servers:
            server.close()
        drain = self.settings.shutdown_drain_seconds
        if self.workers is not None:
            await asyncio.gather(self._drain(drain), self.workers.stop(drain))
        else:
            await self._drain(drain)
        await self._close_servers()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.pool.stop()

    async def _drain(self, seconds: float) -> None:
        """Let logins in flight finish, then close what is left."""
        if self.sessions:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), seconds)
        for session in list(self.sessions):
            session.close()

    async def ready(self) -> bool:
        return self._started and self.pool.any_up()

    def readiness(self) -> dict[str, Any]:
        return {"backends_up": sum(state.up for state in self.pool.backends),
                "backends": len(self.pool.backends)}  # fmt: skip

    def secrets(self) -> list[str]:
        return self.settings.secrets()

    def snapshot(self) -> Snapshot:
        """This process's tallies as of now, its sessions' bytes so far included."""
        for session in self.sessions:
            session.count_bytes()
        return self._tallies.snapshot()

    async def describe(self) -> dict[str, Any]:
        """What /backends shows; the connections are all the workers', as of now."""
        await self._metrics.refresh()
        now = self._tallies.merged()
        backends = [state.describe() for state in self.pool.backends]
        for backend in backends:
            backend["connections"] = now["backends"].get(backend["name"], 0)
            backend["idle_connections"] = now["idle"].get(backend["name"], 0)
        accepted = sum(self._tallies.accepted.values())
        workers = [{"worker": 0, "pid": os.getpid(), "accepted": accepted}]
        if self.workers is not None:
            workers += self.workers.describe()
        return {"balance": self.settings.balance.value, "connections": now["totals"]["active"],
                "workers": workers, "backends": backends}  # fmt: skip

    def _certificate_stamp(self) -> tuple[float, ...]:
        files = (self.settings.tls_cert_file, self.settings.tls_key_file)
        try:
            return tuple(path.stat().st_mtime for path in files if path is not None)
        except OSError:
            return ()

    def reload_certificate(self) -> None:
        """A renewed certificate (cert-manager rewrites the Secret's files) serves new connections;
        one that does not load is logged and the old one kept."""
        settings = self.settings
        if self.server_context is None or settings.tls_cert_file is None or settings.tls_key_file is None:
            return
        try:  # a scratch context first: a certificate renewed before its key fails there, not live
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.tls_cert_file, settings.tls_key_file
            )
            self.server_context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("the renewed certificate does not load; keeping the old one", extra={"error": str(exc)})
            return
        log.info("certificate reloaded", extra={"file": str(settings.tls_cert_file)})

    async def _sweep(self) -> None:
        stamp, stamp_checked = self._certificate_stamp(), time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                stamp, stamp_checked = self._sweep_once(stamp, stamp_checked)
            except Exception:  # the timeouts must go on whatever one round met
                log.exception("sweep failed")

    def _sweep_once(self, stamp: tuple[float, ...], stamp_checked: float) -> tuple[tuple[float, ...], float]:
        settings = self.settings
        now = time.monotonic()
        for state in self.pool.backends:
            state.prune_idle(now, settings.upstream_pool_idle_seconds)
        if now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            self.limiter.prune()
        if now - stamp_checked >= settings.certificate_reload_seconds:
            stamp_checked = now
            if (current := self._certificate_stamp()) and current != stamp:
                stamp = current
                self.reload_certificate()
        for session in list(self.sessions):
            session.count_bytes()  # long sessions show their traffic as it goes
            session.expire(now)
        if self.report is not None:
            self.report(self._tallies.snapshot())  # the sessions' bytes were just counted
        return stamp, stamp_checked
