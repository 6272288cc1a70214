"""MSC4140 delegated leave: a client hands over its delayed "left the call" event; while the
participant is on the SFU the service keeps restarting it, and when the participant is gone it
sends it at once. Jobs live in a store (store.py) every replica shares; each job is driven by the
replica holding its lease, and a webhook or request reaching any replica acts on it.

How a job learns that its participant is gone: the SFU's webhooks (`participant_left`, ...), and,
every `sanity_interval` seconds, the SFU's own list of the room's participants (a webhook can be
lost). Until the participant is first seen (a `participant_joined` webhook, or the SFU answering a
lookup) the job waits; one never seen within `join_grace` seconds has its leave sent, as
lk-jwt-service's waiting timer does.

The delayed-event endpoints need no access token (the delay id is the capability); the homeserver's
client-server API comes from an override or its `.well-known/matrix/client`, never from the request,
and every call to a discovered one goes through the egress policy (the poster the issuer hands in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote

from matrix_stack.services.livekit_jwt.metrics import LivekitMetrics
from matrix_stack.services.livekit_jwt.store import JobStore, Refused, Row, StoreError

log = logging.getLogger("matrix_stack.livekit_jwt.delegation")
DELAYED = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
TICK_SECONDS = 0.25
RETRY_SECONDS = 1.0  # after a failed or rate-limited call: well before the event would fire
CONCURRENT_CALLS = 16  # a slow homeserver holds one slot, not everyone's schedule
MAX_JOBS = 10_000
MAX_JOBS_PER_IDENTITY = 8
LOOKUP_FIRST, LOOKUP_MAX = 1.0, 60.0  # a waiting job asks the SFU after 1 s, then 1.5 times later each
_SAFETY = 0.3  # of a lease: act on a job only while its lease has this much left unrenewed
# (url) -> the HTTP status, or None when the homeserver could not be reached
Poster = Callable[[str], Awaitable[int | None]]


class DelegationRefused(Exception):
    def __init__(self, message: str, *, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


class Sfu(Protocol):
    """What the SFU says about participants; None when it could not say (the job carries on)."""

    async def present(self, room: str, identity: str) -> bool | None: ...

    async def participants(self, room: str) -> set[str] | None: ...


def interval(row: Row) -> float:
    return max(0.5, row.timeout_ms / 3000)  # a third: one failed restart still leaves time


@dataclass
class Held:
    """A job this replica holds, with its timers (monotonic)."""

    row: Row
    leased: float  # when the lease was last taken or renewed (the request's start)
    registered: float  # when the job was registered
    next_restart: float = 0.0
    next_send: float = 0.0
    next_lookup: float = 0.0
    lookup_wait: float = LOOKUP_FIRST
    why: str = "left"  # why it is leaving, for the log

    @classmethod
    def of(cls, row: Row, at: float) -> Held:
        return cls(row, at, at - row.age, next_lookup=at + LOOKUP_FIRST)


class Delegations:
    def __init__(
        self, store: JobStore, post: Poster, sfu: Sfu | None, *, join_grace: float, sanity_interval: float,
        metrics: LivekitMetrics | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.metrics = metrics or LivekitMetrics()
        self.post = post
        self.sfu = sfu
        self.join_grace = join_grace
        self.sanity_interval = sanity_interval
        self.held: dict[tuple[str, str], Held] = {}
        self._lease = store.lease_seconds
        self._next_survey = 0.0
        self._next_check: dict[str, float] = {}  # room -> its next sanity check
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(CONCURRENT_CALLS)
        self._busy: set[tuple[str, str]] = set()  # a restart or send in flight
        self._looking: set[tuple[str, str]] = set()
        self._checking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Raises StoreError. Takes the jobs nobody holds (a previous run's, released at its stop)."""
        await self.store.open()
        try:
            await self._survey()
        except StoreError:
            await self.store.close()
            raise
        if self.held:
            log.info("delegations resumed", extra={"jobs": len(self.held), "store": self.store.description})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delegations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:  # handed over at once, not after the lease
            await self.store.release()
        except StoreError as exc:
            log.warning("delegation leases not released", extra={"reason": str(exc)})
        await self.store.close()

    # -- what requests and webhooks do (any replica) --------------------------------------------

    async def add(self, delay_id: str, cs_api: str, room: str, identity: str, timeout_ms: int) -> None:
        """Raises DelegationRefused (another participant's, or a limit) or StoreError."""
        started = time.monotonic()
        try:
            row = await self.store.add(
                delay_id, cs_api, room, identity, timeout_ms, max_jobs=MAX_JOBS,
                max_per_identity=MAX_JOBS_PER_IDENTITY,
            )  # fmt: skip
        except Refused as exc:
            raise DelegationRefused(str(exc), limit=exc.limit) from None
        self.held[row.key] = Held.of(row, started)  # restarted at the next tick
        log.info("delegation registered", extra={"room": room, "timeout_ms": timeout_ms})

    async def joined(self, room: str, identity: str) -> None:
        await self.store.joined(room, identity)
        for held in self.held.values():  # the holder's own flag, before its next renewal
            if held.row.room == room and held.row.identity == identity and not held.row.leaving:
                held.row = replace(held.row, joined=True)

    async def left(self, room: str, identity: str | None) -> None:
        """The participant (or, with None, everyone: the room finished) is gone: their leaves are
        taken over here and sent now."""
        started = time.monotonic()
        rows = await self.store.left(room, identity)
        taken = [self._take(row, started) for row in rows]
        for held in taken:
            self._busy.add(held.row.key)
        await asyncio.gather(*(self._send(held) for held in taken))

    # -- the holder's schedule ------------------------------------------------------------------

    def _take(self, row: Row, at: float) -> Held:
        held = self.held[row.key] = Held.of(row, at)
        return held

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._round()
            except Exception:  # the schedule goes on whatever one round met
                log.exception("delegation round failed")

    async def _survey(self) -> None:
        """Renew what this replica holds and take what nobody does; forget what another took."""
        started = time.monotonic()
        renewed = await self.store.renew()
        claimed = await self.store.claim()
        found = {row.key: row for row in renewed}
        for row in claimed:
            found[row.key] = row
            if row.generation > 1:  # not a job nobody ever held
                self.metrics.delegation_takeovers.inc()
            log.info("delegation taken over", extra={"room": row.room, "generation": row.generation})
        for key, held in list(self.held.items()):
            mine = found.get(key)
            if mine is None:
                if held.leased < started:  # not taken meanwhile by a request: another replica has it
                    del self.held[key]
            elif mine.generation == held.row.generation:
                held.row, held.leased = mine, started
            elif mine.generation > held.row.generation:
                self.held[key] = Held.of(mine, started)
        for key, row in found.items():
            if key not in self.held:
                self.held[key] = Held.of(row, started)
        self.metrics.delegations_held.set(len(self.held))

    async def _round(self) -> None:
        now = time.monotonic()
        if now >= self._next_survey:
            self._next_survey = now + self._lease / 3
            try:
                await self._survey()
            except StoreError as exc:  # the leases lapse; whoever can reach the store carries on
                log.warning("delegation store unavailable", extra={"reason": str(exc)})
            now = time.monotonic()
        rooms: set[str] = set()
        for held in list(self.held.values()):
            row = held.row
            if now - held.leased > self._lease * (1 - _SAFETY):
                continue  # the lease may lapse before an action ends: another replica may have it
            if row.leaving:
                if row.key not in self._busy and now >= held.next_send:
                    self._spawn(row.key, self._send(held))
                continue
            if row.key not in self._busy:
                if not row.joined and now - held.registered > self.join_grace:
                    self._spawn(row.key, self._leave(held, "never joined"))
                    continue
                if now >= held.next_restart:
                    self._spawn(row.key, self._restart(held))
            if self.sfu is None:
                continue
            if not row.joined and now >= held.next_lookup and row.key not in self._looking:
                held.next_lookup = now + held.lookup_wait
                held.lookup_wait = min(held.lookup_wait * 1.5, LOOKUP_MAX)
                self._looking.add(row.key)
                self._detach(self._lookup(held))
            elif row.joined and self.sanity_interval > 0:
                rooms.add(row.room)
        for room in rooms - self._checking:
            due = self._next_check.setdefault(room, now + self.sanity_interval)
            if now >= due:
                self._next_check[room] = now + self.sanity_interval
                self._checking.add(room)
                self._detach(self._check(room))
        for room in set(self._next_check) - rooms - self._checking:
            del self._next_check[room]

    def _spawn(self, key: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        self._busy.add(key)
        self._detach(work)

    def _detach(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, row: Row, action: str) -> int | None:
        url = f"{row.cs_api}{DELAYED}/{quote(row.delay_id, safe='')}/{action}"
        async with self._slots:
            try:
                status = await self.post(url)
            except Exception:  # one job's trouble is never the schedule's
                log.exception("delayed event call failed", extra={"action": action})
                return None
        if status != 200:
            log.warning("delayed event call not done", extra={"action": action, "status": status})
        return status

    async def _end(self, held: Held, why: str, reason: str) -> None:
        try:
            ended = await self.store.finish(held.row)
        except StoreError as exc:
            log.warning("delegation not ended in the store", extra={"reason": str(exc)})
            return
        if self.held.get(held.row.key) is held:
            del self.held[held.row.key]
        if ended:
            self.metrics.delegations_ended.labels(reason).inc()
            log.info("delegation ended", extra={"room": held.row.room, "reason": why})

    async def _restart(self, held: Held) -> None:
        try:
            status = await self._call(held.row, "restart")
            if held.row.leaving:  # decided meanwhile (the sanity check): the next round sends it
                return
            if status in (400, 404):  # sent, cancelled or expired on the homeserver: nothing to keep
                await self._end(held, f"restart answered {status}", "expired")
            elif status == 200:
                held.next_restart = time.monotonic() + interval(held.row)
            else:  # unreachable, rate-limited (429) or failing: try again soon
                held.next_restart = time.monotonic() + RETRY_SECONDS
        finally:
            self._busy.discard(held.row.key)

    async def _send(self, held: Held) -> None:
        """Send the leave; 404 means it was sent (or cancelled) already: done either way. Retried
        until the delayed event would have fired on its own."""
        try:
            status = await self._call(held.row, "send")
            if status in (200, 404):
                await self._end(held, held.why, "never_joined" if held.why == "never joined" else "left")
            elif held.row.leaving_for + time.monotonic() - held.leased > held.row.timeout_ms / 1000 + 1:
                await self._end(held, f"send gave up after {status}", "gave_up")
            else:
                held.next_send = time.monotonic() + RETRY_SECONDS
        finally:
            self._busy.discard(held.row.key)

    async def _leave(self, held: Held, why: str) -> None:
        """A job this replica holds (and marked busy) is to be left now: never joined."""
        try:
            if await self._leaving(held, why):
                await self._send(held)
        finally:
            self._busy.discard(held.row.key)

    async def _leaving(self, held: Held, why: str) -> bool:
        """Record that a job this replica holds is to be left; False when another replica took it
        meanwhile (or the store could not be written: the next round tries again)."""
        try:
            row = await self.store.left_held(held.row)
        except StoreError as exc:
            log.warning("delegation leave not recorded", extra={"reason": str(exc)})
            return False
        if row is None:
            return False
        log.info("delegation leaving", extra={"room": row.room, "reason": why})
        held.row, held.why = row, why
        return True

    async def _lookup(self, held: Held) -> None:
        """A waiting job: is its participant on the SFU already (no join webhook will come for one
        that joined before delegating, or for a job restored after a restart)?"""
        try:
            assert self.sfu is not None
            if await self.sfu.present(held.row.room, held.row.identity) and not held.row.joined:
                await self.store.joined_held(held.row)
                held.row = replace(held.row, joined=True)
        except StoreError as exc:
            log.warning("delegation lookup not recorded", extra={"reason": str(exc)})
        finally:
            self._looking.discard(held.row.key)

    async def _check(self, room: str) -> None:
        """The sanity check: the room's joined participants the SFU no longer has are left."""
        try:
            assert self.sfu is not None
            present = await self.sfu.participants(room)
            if present is None:
                return
            gone = [
                held for held in list(self.held.values())
                if held.row.room == room and held.row.joined and not held.row.leaving
                and held.row.identity not in present
            ]  # fmt: skip
            # one whose restart is in flight is recorded now and sent when the restart is back
            await asyncio.gather(*(self._leaving(held, "gone from the SFU") for held in gone))
            ready = [held for held in gone if held.row.leaving and held.row.key not in self._busy]
            for held in ready:
                self._busy.add(held.row.key)
            await asyncio.gather(*(self._send(held) for held in ready))
        finally:
            self._checking.discard(room)
