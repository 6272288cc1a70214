"""Several processes serving LDAP on the same ports (SO_REUSEPORT: the kernel spreads new connections
over their listeners). One process is the main one: it alone runs the health checks and the control
plane (/metrics, /backends, /readyz), hands the others its settings and tells them which backends are
up, and adds their tallies (reported every second, and asked for afresh before a scrape) to its own;
they hand it their failed connects, which wake its checks. A worker that dies is started again; one
that loses the main process drains and exits.

One process's share of the CPUs is one thread's: when other work queues for them, a single process
in the middle of every login becomes the queue (see config.DEFAULT_WORKERS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from matrix_stack.services.ldap_proxy.backends import Pool
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.metrics import Snapshot
from matrix_stack.shared.kit.errors import StartupError

log = logging.getLogger("matrix_stack.ldap_proxy")
CONTROL_FD_ENV = "MATRIX_STACK_LDAP_WORKER_FD"  # in a worker's environment: its end of the channel
START_SECONDS = 20.0  # for a worker to start and listen
RESTART_SECONDS = 1.0  # between a worker's death and its replacement
ASK_SECONDS = 0.5  # for the workers' reports before a scrape
GAUGES = ("backends", "idle")  # parts of a snapshot that are open now, not counted so far
MAX_LINE = 1024 * 1024  # a message longer than this is not one of ours


class Channel(asyncio.Protocol):
    """JSON lines over a socketpair, both ways: what the main process and a worker tell each other."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None], on_lost: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:  # never from our own processes: end the channel
            self.close()
            return
        for line in lines:
            self.on_message(orjson.loads(line))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(orjson.dumps(message) + b"\n")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False)
class Worker:
    """The main process's handle on one other worker."""

    index: int
    process: asyncio.subprocess.Process
    channel: Channel
    ready: asyncio.Future[None]
    snapshot: Snapshot = field(default_factory=dict)  # its latest report
    asked: asyncio.Future[None] | None = None  # a report asked for (`question` names it), not yet in
    question: int = 0


class Workers:
    """The main process's side: starts `count` other workers and keeps them running, tells them the
    backends' states, and keeps their reports for the metrics and /backends."""

    def __init__(self, settings: LdapProxySettings, pool: Pool, count: int) -> None:
        self.settings = settings
        self.pool = pool
        self.count = count
        self.workers: dict[int, Worker] = {}  # by index, 1 to count (the main process is 0)
        self.retired: Snapshot = {}  # what workers that ended had counted (their gauges dropped)
        self.restarts = 0
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Raises StartupError when a worker does not start listening in time."""
        try:
            for index in range(1, self.count + 1):
                self.workers[index] = await self._spawn(index)
            async with asyncio.timeout(START_SECONDS):
                await asyncio.gather(*(worker.ready for worker in self.workers.values()))
        except (TimeoutError, StartupError, OSError) as exc:
            await self.stop()
            raise StartupError(f"an LDAP worker did not start: {exc or 'not listening in time'}") from None
        self._watchers = [asyncio.create_task(self._watch(index), name=f"ldap-worker-{index}")
                          for index in self.workers]  # fmt: skip

    async def _spawn(self, index: int) -> Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "matrix_stack.services.ldap_proxy.worker",
                env={**os.environ, CONTROL_FD_ENV: str(theirs.fileno())}, pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def heard(message: dict[str, Any]) -> None:
            self._heard(self.workers.get(index), ready, message)

        def lost() -> None:
            if not ready.done():
                ready.set_exception(StartupError(f"worker {index} exited"))

        _, channel = await loop.connect_accepted_socket(lambda: Channel(heard, lost), ours)
        channel.send({"settings": self.settings.for_workers(), "up": self.pool.states()})
        return Worker(index, process, channel, ready)

    def _heard(self, worker: Worker | None, ready: asyncio.Future[None], message: dict[str, Any]) -> None:
        if "report" in message and worker is not None and worker.ready is ready:
            worker.snapshot = message["report"]
            asked = worker.asked
            if asked is not None and message.get("answers") == worker.question and not asked.done():
                asked.set_result(None)
        if "connect_failed" in message and (state := self.pool.by_name.get(message["connect_failed"])):
            self.pool.connect_failed(state)
        if message.get("ready") and not ready.done():
            ready.set_result(None)

    def broadcast(self) -> None:
        """A backend went up or down: every worker hears it."""
        states = self.pool.states()
        for worker in self.workers.values():
            worker.channel.send({"up": states})

    async def refresh(self) -> None:
        """Each worker's report as of now (for a scrape or /backends); whichever does not answer in
        ASK_SECONDS stays as it last reported (at most a sweep ago)."""
        loop = asyncio.get_running_loop()
        asked = []
        for worker in self.workers.values():
            worker.question += 1
            worker.asked = loop.create_future()
            worker.channel.send({"ask": worker.question})
            asked.append(worker.asked)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*asked), ASK_SECONDS)

    def describe(self) -> list[dict[str, int]]:
        """Each worker's process and the client connections it has accepted (for /backends)."""
        return [{"worker": index, "pid": worker.process.pid,
                 "accepted": sum(worker.snapshot.get("accepted", {}).values())}
                for index, worker in sorted(self.workers.items())]  # fmt: skip

    def snapshots(self) -> list[Snapshot]:
        """The workers' latest reports, and what the ones that ended had counted."""
        return [worker.snapshot for worker in self.workers.values()] + [self.retired]

    async def _watch(self, index: int) -> None:
        """A worker that dies is logged, what it counted kept, and another started in its place."""
        while not self._stopping:
            worker = self.workers[index]
            code = await worker.process.wait()
            if self._stopping:
                return
            log.error("an LDAP worker exited; starting another", extra={"worker": index, "code": code})
            worker.channel.close()
            self._retire(worker)
            self.restarts += 1
            await asyncio.sleep(RESTART_SECONDS)
            if self._stopping:
                return
            try:
                self.workers[index] = await self._spawn(index)
            except OSError as exc:
                log.error("an LDAP worker could not be started", extra={"worker": index, "error": str(exc)})

    def _retire(self, worker: Worker) -> None:
        for part, counts in worker.snapshot.items():
            if part in GAUGES:
                continue
            into = self.retired.setdefault(part, {})
            for key, count in counts.items():
                if key != "active":  # a gauge among the totals
                    into[key] = into.get(key, 0) + count
        worker.snapshot = {}

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Each worker drains its sessions (SIGTERM) and exits; any still running after the drain and
        a margin is killed."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(
            *(self._stop_one(worker, drain_seconds + 5.0) for worker in self.workers.values())
        )

    async def _stop_one(self, worker: Worker, seconds: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.process.wait(), seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            await worker.process.wait()
        worker.channel.close()


def worker_channel() -> socket.socket:
    """In a worker: its end of the channel to the main process (named in its environment)."""
    return socket.socket(fileno=int(os.environ.pop(CONTROL_FD_ENV)))
