"""The durable outbox: a message accepted is a message delivered, exactly once, in order per room.

`enqueue()` returns after the row is committed to the store: SQLite (`sqlite.py`, one replica)
or PostgreSQL (`postgres.py`, several). A background sender delivers each room's queue in order
with `PUT /send/{txn_id}`, where the txn id is derived from the delivery id, so a resend after a
crash or a takeover is de-duplicated by the homeserver. Transient failures back off (with jitter,
or as long as `retry_after_ms` says) for as long as it takes; permanent failures land in the
`dead_letters` view with their reason.

On a shared store a room is sent to only under its claim (a lease), and the sender also hears of
other replicas' enqueues and surveys the queue every `survey_seconds` for rooms nobody holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.matrix.content import Content, RelationKind, relate
from matrix_stack.shared.matrix.errors import HomeserverUnavailable, MatrixError
from matrix_stack.shared.outbox.metrics import OutboxMetrics
from matrix_stack.shared.outbox.store import (
    DEVICE_LEASE,
    Claim,
    DeadLetter,
    DeliveryStatus,
    NewDelivery,
    OutboxStore,
    Root,
    Row,
    State,
)

log = logging.getLogger(__name__)

__all__ = ["DeadLetter", "DeliveryStatus", "Outbox", "Outgoing", "Relation", "Root", "txn_id_for"]

_BATCH = 64  # deliveries a room sender reads at once
_SENT_CACHE = 10_000  # event ids of recent deliveries kept for the relations that follow them


class Sender(Protocol):
    async def send(self, room: str, content: dict[str, Any], *, txn_id: str, event_type: str) -> str: ...


class DeviceUser(Protocol):
    """What uses the bot's device (its encryption): started when this replica takes the device lease,
    stopped when it loses it. `store` keeps its state (see `DeviceState`)."""

    async def activate(self, store: DeviceState) -> None: ...

    async def deactivate(self, reason: str) -> None: ...


@dataclass
class DeviceState:
    """The bot's crypto state in the outbox's store, written only under the device lease."""

    store: OutboxStore
    claim: Claim

    @property
    def description(self) -> str:
        return self.store.description

    async def load(self) -> dict[str, str]:
        return await self.store.crypto_load()

    async def save(self, puts: Mapping[str, str], deletes: Collection[str]) -> None:
        if not self.claim.valid():
            raise NotDurable(f"{self.store.description}: this replica's lease of the bot's device ran out")
        await self.store.crypto_save(self.claim, puts, deletes)


@dataclass(frozen=True)
class Relation:
    """Relate a message to an earlier one, known by event id or by the delivery that posted it."""

    kind: RelationKind
    delivery_id: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if (self.delivery_id is None) == (self.event_id is None):
            raise ValueError("a relation names exactly one of delivery_id or event_id")


@dataclass(frozen=True)
class Outgoing:
    room: str
    content: Content
    event_type: str = "m.room.message"
    delivery_id: str | None = None
    relation: Relation | None = None
    # This message becomes the root of `root_key` in its room, unless a live root exists already:
    # then, with `relate_to_root`, it relates to that root that way (decided when it is committed).
    root_key: str | None = None
    # The root of this key in this room is resolved: kept for `root_retention`, then forgotten.
    resolves_key: str | None = None
    relate_to_root: RelationKind | None = None


def txn_id_for(delivery_id: str) -> str:
    """The Matrix transaction id for a delivery: stable, URL-safe, whatever the delivery id holds."""
    return "mso" + hashlib.sha256(delivery_id.encode()).hexdigest()[:40]


@dataclass
class Outbox:
    """Durable, ordered, exactly-once delivery of Matrix events."""

    store: OutboxStore
    sender: Sender
    metrics: OutboxMetrics | None = None
    base_backoff: float = 1.0
    max_backoff: float = 60.0
    concurrency: int = 16
    retention: float = 7 * 24 * 3600.0  # how long sent deliveries stay for status and de-duplication
    root_retention: float = 7 * 24 * 3600.0  # how long a resolved root still takes relations
    root_max_age: float = 90 * 24 * 3600.0  # a root never resolved is forgotten after this
    survey_seconds: float = 10.0 / 3  # a shared store: lease renewal and the look for unheld rooms
    # With encryption, one replica at a time uses the bot's device: the one holding its lease, and
    # only that one sends (on SQLite, the only replica, always).
    device: DeviceUser | None = None
    _device_claim: Claim | None = field(init=False, default=None)
    _device_asked: float = field(init=False, default=0.0)  # monotonic: the last try to take it
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _active: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _claims: dict[str, Claim] = field(init=False, default_factory=dict)
    # Rooms with pending deliveries and when to look at them next: kept in memory so that
    # dispatching never scans the table (a long outage can leave a large backlog).
    _due: dict[str, float] = field(init=False, default_factory=dict)
    _versions: dict[str, int] = field(init=False, default_factory=dict)  # enqueues per room
    _waiters: dict[str, list[asyncio.Future[DeliveryStatus]]] = field(init=False, default_factory=dict)
    _dispatcher: asyncio.Task[None] | None = field(init=False, default=None)
    _background: list[asyncio.Task[None]] = field(init=False, default_factory=list)  # shared stores
    _stopping: bool = field(init=False, default=False)
    _depth: int = field(init=False, default=0)
    _last_prune: float = field(init=False, default=0.0)
    # Event ids of deliveries this process sent (they never change): relations to them need no read.
    _sent: dict[str, str] = field(init=False, default_factory=dict)

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the store; the sender is not running yet. Raises NotDurable."""
        opened = await self.store.open()
        self._depth = opened.depth
        self._due = dict(opened.heads)
        self._set_depth()

    def start(self) -> None:
        """Start delivering in the background."""
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="outbox-dispatcher")
        if self.store.shared:
            self._background = [
                asyncio.create_task(self._survey(), name="outbox-survey"),
                asyncio.create_task(self.store.listen(self._heard), name="outbox-listen"),
            ]

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking new work, let in-flight sends finish (up to `drain_timeout`), close the store."""
        self._stopping = True
        self._wake.set()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._dispatcher is not None:
            await self._dispatcher
            self._dispatcher = None
        active = list(self._active.values())
        if active:
            _, late = await asyncio.wait(active, timeout=drain_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._drop_device("the service is stopping", release=True)
        await self.store.close()

    # -- producers --------------------------------------------------------------------------------

    async def enqueue(
        self,
        room: str,
        content: Content,
        *,
        event_type: str = "m.room.message",
        delivery_id: str | None = None,
        relation: Relation | None = None,
        root_key: str | None = None,
        resolves_key: str | None = None,
        relate_to_root: RelationKind | None = None,
    ) -> str:
        """Store one message durably and return its delivery id. Raises NotDurable.

        A `delivery_id` the outbox has seen before is not stored again (idempotent producers).
        """
        item = Outgoing(
            room, content, event_type, delivery_id, relation, root_key, resolves_key, relate_to_root
        )
        ids = await self.enqueue_many([item])
        return ids[0]

    async def enqueue_many(self, items: Sequence[Outgoing]) -> list[str]:
        """Store several messages in one transaction: all are accepted or none. Raises NotDurable."""
        now = time.time()
        rows = [
            NewDelivery(
                item.delivery_id or uuid.uuid4().hex, item.room, item.event_type,
                orjson.dumps(item.content).decode(),
                item.relation.kind if item.relation else None,
                item.relation.delivery_id if item.relation else None,
                item.relation.event_id if item.relation else None,
                now, item.root_key, item.relate_to_root,
            )
            for item in items
        ]  # fmt: skip
        resolved = [(item.resolves_key, item.room) for item in items if item.resolves_key is not None]
        added = await self.store.insert(rows, resolved, now)
        self._depth += added
        self._set_depth()
        for row in rows:
            self._mark_due(row.room, now)
        self._wake.set()
        return [row.id for row in rows]

    async def root(self, key: str, room: str) -> Root | None:
        """The message `key` relates to in `room`, if any. Raises NotDurable."""
        return await self.store.root(key, room)

    async def status(self, delivery_id: str) -> DeliveryStatus | None:
        return await self.store.status(delivery_id)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.store.dead_letters()

    async def wait(self, delivery_id: str, timeout: float | None = None) -> DeliveryStatus:
        """Wait until a delivery is sent or dead; raises TimeoutError.

        On a shared store another replica may send it: then this polls the store."""
        future: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(delivery_id, []).append(future)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                current = await self.status(delivery_id)
                if current is None:
                    raise KeyError(delivery_id)
                if current.state != "pending":
                    return current
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                step = left if not self.store.shared else min(left if left is not None else 1.0, 1.0)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), step)
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
        finally:
            waiting = self._waiters.get(delivery_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(delivery_id, None)

    async def send(
        self,
        room: str,
        content: Content,
        *,
        event_type: str = "m.room.message",
        relation: Relation | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Durable and synchronous: store, wait for delivery, return the event id (for later edits)."""
        delivery_id = await self.enqueue(room, content, event_type=event_type, relation=relation)
        result = await self.wait(delivery_id, timeout)
        if result.state != "sent" or result.event_id is None:
            raise MatrixError(None, result.error or "delivery failed", None)
        return result.event_id

    async def writable(self) -> bool:
        """Whether a write transaction can commit (for readiness)."""
        return await self.store.writable()

    @property
    def depth(self) -> int:
        """Deliveries waiting to be sent (on a shared store: by every replica, as last surveyed)."""
        return self._depth

    @property
    def description(self) -> str:
        return self.store.description

    # -- delivery ---------------------------------------------------------------------------------

    def _set_depth(self) -> None:
        if self.metrics:
            self.metrics.depth.set(self._depth)
            self.metrics.leases.set(len(self._claims))

    def _mark_due(self, room: str, when: float) -> None:
        self._versions[room] = self._versions.get(room, 0) + 1
        self._due.setdefault(room, when)  # a room backing off keeps its time: FIFO per room

    def _heard(self, rooms: list[str]) -> None:
        """Another replica enqueued to these rooms (or the notifications reconnected: look now)."""
        now = time.time()
        for room in rooms:
            self._mark_due(room, now)
        self._wake.set()

    def _outcome(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.deliveries.labels(backend=self.store.backend, outcome=outcome).inc()

    async def _survey(self) -> None:
        """Renew our claims, take up rooms nobody holds, refresh the depth; every `survey_seconds`."""
        while not self._stopping:
            try:
                survey = await self.store.survey(list(self._claims.values()))
            except NotDurable as exc:
                log.warning("outbox survey failed", extra={"error": str(exc)})
            else:
                for room in survey.lost:
                    if room == DEVICE_LEASE:
                        await self._drop_device("its lease was lost (the database was unreachable too long)")
                        continue
                    log.warning("room lease lost; another replica takes over", extra={"room": room})
                for room, due in survey.heads:
                    if room not in self._active:
                        self._due[room] = min(self._due.get(room, due), due)
                self._depth = survey.depth
                self._set_depth()
                self._wake.set()
            await asyncio.sleep(self.survey_seconds)

    def _holds_device(self) -> bool:
        return self.device is None or (self._device_claim is not None and self._device_claim.valid())

    async def _take_device(self) -> None:
        """Take the bot's device when no other replica holds it; then this replica sends."""
        assert self.device is not None
        if time.monotonic() - self._device_asked < self.survey_seconds * 0.9:
            return  # enqueues wake the dispatcher often: ask the database once per survey
        self._device_asked = time.monotonic()
        try:
            claim = await self.store.claim(DEVICE_LEASE)
        except NotDurable as exc:
            log.warning("cannot take the bot's device", extra={"error": str(exc)})
            return
        if claim is None:
            return
        self._device_claim = claim
        self._claims[DEVICE_LEASE] = claim  # renewed with the rooms' leases
        if self.store.shared:
            log.info(
                "this replica now uses the bot's device and sends", extra={"taken_over": claim.taken_over}
            )
        await self.device.activate(DeviceState(self.store, claim))

    async def _drop_device(self, reason: str, *, release: bool = False) -> None:
        claim, self._device_claim = self._device_claim, None
        if claim is None or self.device is None:
            return
        self._claims.pop(DEVICE_LEASE, None)
        if self.store.shared:
            log.warning("this replica stops using the bot's device", extra={"reason": reason})
        await self.device.deactivate(f"this replica no longer holds the bot's device: {reason}")
        if release and not claim.lost:
            await self.store.release(claim, hand_over=False)

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if not self._holds_device():
                if self._device_claim is not None:
                    await self._drop_device("its lease ran out before it was renewed")
                await self._take_device()
                if not self._holds_device():  # another replica sends: look again at the next survey
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.survey_seconds)
                    continue
            now = time.time()
            next_due: float | None = None
            for room, due in list(self._due.items()):
                if room in self._active:
                    continue
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                elif len(self._active) < self.concurrency:
                    self._active[room] = asyncio.create_task(self._drain(room), name=f"outbox:{room}")
            if now - self._last_prune > 3600:
                self._last_prune = now
                try:
                    await self.store.prune(
                        now - self.retention, now - self.root_retention, now - self.root_max_age
                    )
                except NotDurable as exc:
                    log.warning("outbox prune failed", extra={"error": str(exc)})
            timeout = 300.0 if next_due is None else max(next_due - time.time(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _drain(self, room: str) -> None:
        """Send a room's queue in order until it is empty, the head must wait or the claim is lost."""
        commits: list[asyncio.Future[bool]] = []
        claim: Claim | None = None
        try:
            version = self._versions.get(room, 0)
            claim = await self.store.claim(room)
            if claim is None:  # another replica sends to it; the survey brings it back if that one dies
                if self._versions.get(room, 0) == version:
                    self._due.pop(room, None)
                else:
                    self._due[room] = time.time() + self.survey_seconds
                return
            self._claims[room] = claim
            if claim.taken_over:
                log.info("took over a room from a replica whose lease ran out", extra={"room": room})
                if self.metrics:
                    self.metrics.takeovers.inc()
            while not self._stopping:
                version = self._versions.get(room, 0)
                rows = await self.store.pending(room, _BATCH)
                if not rows:
                    if self._versions.get(room, 0) == version:  # nothing enqueued since the read
                        self._due.pop(room, None)
                    return
                for row in rows:
                    if self._stopping or not claim.valid() or not self._holds_device():
                        self._due[room] = time.time()
                        return
                    if row.next_attempt > time.time():
                        self._due[room] = row.next_attempt
                        return
                    done = await self._attempt(row, claim, commits)
                    if not done:
                        self._due[room] = row.next_attempt
                        return
                # Sends only wait for their own homeserver round-trip; the state commits catch up
                # here. A crash before they commit resends with the same txn id: no duplicate.
                kept = await asyncio.gather(*commits)
                commits.clear()
                if not all(kept):
                    claim.lost = True
                    log.warning(
                        "room lease lost while sending; another replica takes over", extra={"room": room}
                    )
                    return
        except Exception as exc:
            if isinstance(exc, NotDurable):
                log.warning("outbox store unavailable", extra={"room": room, "error": str(exc)})
            else:
                log.exception("outbox sender failed", extra={"room": room})
            self._due[room] = time.time() + self.base_backoff
        finally:
            if commits:
                await asyncio.gather(*commits, return_exceptions=True)
            if claim is not None:
                self._claims.pop(room, None)
                if not claim.lost:
                    await self.store.release(claim, hand_over=self._stopping and room in self._due)
            self._active.pop(room, None)
            self._set_depth()
            self._wake.set()

    async def _content_for(self, row: Row) -> Content | None:
        """The content to send, with its relation resolved; None while the related event is unsent."""
        content: Content = json.loads(row.content)
        if row.rel_kind is None:
            return content
        target = row.rel_event or (self._sent.get(row.rel_delivery) if row.rel_delivery else None)
        if target is None and row.rel_delivery is not None:
            related = await self.status(row.rel_delivery)
            if related is not None and related.state == "pending":
                return None
            target = related.event_id if related is not None else None
        if target is None:
            log.warning(
                "related message was never delivered; sending without relation",
                extra={"delivery_id": row.id, "related": row.rel_delivery},
            )
            return content
        kind: RelationKind = row.rel_kind  # type: ignore[assignment]
        return relate(content, kind, target)

    async def _attempt(self, row: Row, claim: Claim, commits: list[asyncio.Future[bool]]) -> bool:
        """Try one delivery. True when it is finished (sent or dead), False when it waits."""
        content = await self._content_for(row)
        if content is None:
            await self._retry(row, claim, 1.0, "waiting for the related message", count=False)
            return False
        try:
            event_id = await self.sender.send(
                row.room, content, txn_id=txn_id_for(row.id), event_type=row.event_type
            )
        except HomeserverUnavailable as exc:
            await self._retry(row, claim, self._backoff(row.attempts), f"homeserver unavailable: {exc}")
            return False
        except MatrixError as exc:
            if not exc.transient:
                commits.append(self._finish(row, claim, "dead", None, str(exc)))
                return True
            if exc.retry_after_ms is not None:
                delay = exc.retry_after_ms / 1000 + random.uniform(0, 0.05)
                await self._retry(row, claim, delay, str(exc), count=False)
            else:
                await self._retry(row, claim, self._backoff(row.attempts), str(exc))
            return False
        except Exception as exc:  # a bug or an unexpected answer: keep the message, look again later
            log.exception("unexpected delivery error", extra={"delivery_id": row.id, "room": row.room})
            await self._retry(row, claim, self._backoff(row.attempts), f"unexpected error: {exc!r}")
            return False
        commits.append(self._finish(row, claim, "sent", event_id, None))
        return True

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.max_backoff, self.base_backoff * 2.0 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _retry(self, row: Row, claim: Claim, delay: float, reason: str, *, count: bool = True) -> None:
        row.next_attempt = time.time() + delay
        if count:
            row.attempts += 1
        self._outcome("retry")
        log.info(
            "delivery will be retried",
            extra={"delivery_id": row.id, "room": row.room, "retry_in_s": round(delay, 3), "reason": reason},
        )
        await self.store.retry(row, claim, reason)

    def _finish(
        self, row: Row, claim: Claim, state: State, event_id: str | None, error: str | None
    ) -> asyncio.Future[bool]:
        finished = time.time()
        row.attempts += 1
        self._depth = max(self._depth - 1, 0)
        self._set_depth()
        self._outcome(state)
        if self.metrics and state == "sent":
            self.metrics.latency.observe(finished - row.created)
        if state == "dead":
            log.error(
                "delivery failed permanently",
                extra={"delivery_id": row.id, "room": row.room, "reason": error},
            )
        status = DeliveryStatus(row.id, row.room, state, row.attempts, event_id, error, row.created, finished)
        committed = self.store.finish(row, claim, state, event_id, error, finished)

        def notify(done: asyncio.Future[bool]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            if event_id is not None:
                self._sent[row.id] = event_id
                if len(self._sent) > _SENT_CACHE:
                    del self._sent[next(iter(self._sent))]  # the oldest
            for waiter in self._waiters.get(row.id, []):
                if not waiter.done():
                    waiter.set_result(status)

        committed.add_done_callback(notify)
        return committed
