"""The durable outbox: a message accepted is a message delivered, exactly once, in order per room.

Deliveries live in SQLite (WAL, synchronous=FULL). `enqueue()` returns after the row is committed.
A background sender delivers each room's queue in order with `PUT /send/{txn_id}`, where the txn id
is derived from the delivery id, so a resend after a crash is de-duplicated by the homeserver.
Transient failures back off (with jitter, or as long as `retry_after_ms` says) for as long as it
takes; permanent failures land in the `dead_letters` view with their reason.

All SQLite work runs on one thread. Operations queued while a transaction runs are committed
together with the next one (group commit), so concurrent enqueues share an fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import queue
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import orjson

from matrix_stack.core.content import Content, RelationKind, relate
from matrix_stack.core.durability import NotDurable
from matrix_stack.core.matrix import HomeserverUnavailable, MatrixError
from matrix_stack.core.metrics import OutboxMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
State = Literal["pending", "sent", "dead"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    rel_kind TEXT,
    rel_delivery TEXT,
    rel_event TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    finished REAL,
    event_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS pending_by_room ON deliveries (room, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS finished_at ON deliveries (finished) WHERE state = 'sent';
-- The message later ones relate to, by a caller's key (a Sentry issue, an Alertmanager group or
-- alert), written in the transaction that stores that message. A root's delivery is kept past the
-- sent rows' retention for as long as the root is.
CREATE TABLE IF NOT EXISTS relation_roots (
    key TEXT NOT NULL,
    room TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created REAL NOT NULL,
    resolved REAL,
    PRIMARY KEY (key, room)
);
CREATE VIEW IF NOT EXISTS dead_letters AS
    SELECT id, room, event_type, content, attempts, created, finished AS failed, error AS reason
    FROM deliveries WHERE state = 'dead';
"""

_BATCH = 64  # deliveries a room sender reads at once


class Sender(Protocol):
    async def send(self, room: str, content: dict[str, Any], *, txn_id: str, event_type: str) -> str: ...


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
    # This message becomes the root of `root_key` in its room, unless a live root exists already.
    root_key: str | None = None
    # The root of this key in this room is resolved: kept for `root_retention`, then forgotten.
    resolves_key: str | None = None


@dataclass(frozen=True)
class Root:
    delivery_id: str
    resolved: bool


@dataclass(frozen=True)
class DeliveryStatus:
    id: str
    room: str
    state: State
    attempts: int
    event_id: str | None
    error: str | None
    created: float
    finished: float | None


@dataclass
class _Row:
    seq: int
    id: str
    room: str
    event_type: str
    content: str
    rel_kind: str | None
    rel_delivery: str | None
    rel_event: str | None
    attempts: int
    next_attempt: float
    created: float


def txn_id_for(delivery_id: str) -> str:
    """The Matrix transaction id for a delivery: stable, URL-safe, whatever the delivery id holds."""
    return "mso" + hashlib.sha256(delivery_id.encode()).hexdigest()[:40]


class _Database:
    """One SQLite connection on its own thread; queued operations share transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"outbox-db:{path.name}", daemon=True)
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((operation, future))
        try:
            return await future
        except (sqlite3.Error, OSError) as exc:
            raise NotDurable(f"{self.path}: {exc}") from exc

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue an operation without waiting; the returned future resolves after its commit."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((operation, future))
        return future

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # a commit is on disk when enqueue() returns
        connection.execute("PRAGMA busy_timeout=10000")
        connection.executescript(SCHEMA)
        return connection

    def _run(self) -> None:
        try:
            connection = self._connect()
        except BaseException as exc:  # reported to start()
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < 1024:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._execute(connection, batch)
        connection.close()

    @staticmethod
    def _execute(
        connection: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]],
    ) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for operation, future in batch:
                connection.execute("SAVEPOINT op")
                try:
                    result = operation(connection)
                except Exception as exc:
                    connection.execute("ROLLBACK TO op")
                    outcomes.append((future, None, exc))
                else:
                    outcomes.append((future, result, None))
                connection.execute("RELEASE op")
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            outcomes = [(future, None, exc) for _, future in batch]
        # One wake-up of the event loop per batch, not one per operation.
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _status(row: sqlite3.Row | tuple[Any, ...] | None) -> DeliveryStatus | None:
    if row is None:
        return None
    return DeliveryStatus(*row)


_STATUS_COLUMNS = "id, room, state, attempts, event_id, error, created, finished"


@dataclass
class Outbox:
    """Durable, ordered, exactly-once delivery of Matrix events."""

    path: Path
    sender: Sender
    metrics: OutboxMetrics | None = None
    base_backoff: float = 1.0
    max_backoff: float = 60.0
    concurrency: int = 16
    retention: float = 7 * 24 * 3600.0  # how long sent deliveries stay for status and de-duplication
    root_retention: float = 7 * 24 * 3600.0  # how long a resolved root still takes relations
    root_max_age: float = 90 * 24 * 3600.0  # a root never resolved is forgotten after this
    _db: _Database = field(init=False)
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _active: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    # Rooms with pending deliveries and when to look at them next: kept in memory so that
    # dispatching never scans the table (a long outage can leave a large backlog).
    _due: dict[str, float] = field(init=False, default_factory=dict)
    _versions: dict[str, int] = field(init=False, default_factory=dict)  # enqueues per room
    _waiters: dict[str, list[asyncio.Future[DeliveryStatus]]] = field(init=False, default_factory=dict)
    _dispatcher: asyncio.Task[None] | None = field(init=False, default=None)
    _stopping: bool = field(init=False, default=False)
    _depth: int = field(init=False, default=0)
    _last_prune: float = field(init=False, default=0.0)
    _roots: dict[tuple[str, str], Root] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._db = _Database(Path(self.path))

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the database; the sender is not running yet."""
        await asyncio.to_thread(self._db.start)
        self._depth = await self._db.run(
            lambda c: c.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
        )
        self._due = dict(await self._db.run(_pending_heads))
        self._set_depth()
        rows = await self._db.run(
            lambda c: c.execute("SELECT key, room, delivery_id, resolved FROM relation_roots").fetchall()
        )
        self._roots = {
            (key, room): Root(delivery, resolved is not None) for key, room, delivery, resolved in rows
        }

    def start(self) -> None:
        """Start delivering in the background."""
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="outbox-dispatcher")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking new work, let in-flight sends finish (up to `drain_timeout`), close the database."""
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
            self._dispatcher = None
        active = list(self._active.values())
        if active:
            _, late = await asyncio.wait(active, timeout=drain_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await asyncio.to_thread(self._db.stop)

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
    ) -> str:
        """Store one message durably and return its delivery id.

        A `delivery_id` the outbox has seen before is not stored again (idempotent producers).
        """
        item = Outgoing(room, content, event_type, delivery_id, relation, root_key, resolves_key)
        ids = await self.enqueue_many([item])
        return ids[0]

    async def enqueue_many(self, items: Sequence[Outgoing]) -> list[str]:
        """Store several messages in one transaction: all are accepted or none."""
        now = time.time()
        rows = []
        for item in items:
            relation = item.relation
            rows.append(
                (
                    item.delivery_id or uuid.uuid4().hex,
                    item.room,
                    item.event_type,
                    orjson.dumps(item.content).decode(),
                    relation.kind if relation else None,
                    relation.delivery_id if relation else None,
                    relation.event_id if relation else None,
                    now,
                )
            )

        new_roots = [(item.root_key, item.room, row[0], now) for item, row in zip(items, rows, strict=True)
                     if item.root_key is not None]  # fmt: skip
        resolved = [(now, item.resolves_key, item.room) for item in items if item.resolves_key is not None]

        def insert(connection: sqlite3.Connection) -> int:
            before = connection.total_changes
            connection.executemany(
                "INSERT INTO deliveries (id, room, event_type, content, rel_kind, rel_delivery, rel_event,"
                " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                rows,
            )
            added = connection.total_changes - before
            # A root replaces only a resolved one (the alert fires again); the first live root stays.
            connection.executemany(
                "INSERT INTO relation_roots (key, room, delivery_id, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key, room) DO UPDATE SET delivery_id = excluded.delivery_id,"
                " created = excluded.created, resolved = NULL WHERE relation_roots.resolved IS NOT NULL",
                new_roots,
            )
            connection.executemany(
                "UPDATE relation_roots SET resolved = ? WHERE key = ? AND room = ? AND resolved IS NULL",
                resolved,
            )
            return added

        added = await self._db.run(insert)
        for key, room, delivery, _ in new_roots:
            known = self._roots.get((key, room))
            if known is None or known.resolved:
                self._roots[(key, room)] = Root(delivery, False)
        for _, key, room in resolved:
            known = self._roots.get((key, room))
            if known is not None:
                self._roots[(key, room)] = Root(known.delivery_id, True)
        self._depth += added
        self._set_depth()
        for row in rows:
            room = row[1]
            self._versions[room] = self._versions.get(room, 0) + 1
            self._due.setdefault(room, now)  # a room backing off keeps its time: FIFO per room
        self._wake.set()
        return [row[0] for row in rows]

    def root(self, key: str, room: str) -> Root | None:
        """The message `key` relates to in `room`, if any (served from memory, kept in the database)."""
        return self._roots.get((key, room))

    async def adopt_roots(self, legacy: Path) -> int:
        """Import, once, the roots file a service kept before roots lived in the outbox."""
        rows = await asyncio.to_thread(_legacy_roots, legacy)
        if not rows:
            return 0
        now = time.time()
        await self._db.run(
            lambda c: c.executemany(
                "INSERT INTO relation_roots (key, room, delivery_id, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key, room) DO NOTHING",
                [(key, room, delivery, now) for key, room, delivery in rows],
            )
        )
        for key, room, delivery in rows:
            self._roots.setdefault((key, room), Root(delivery, False))
        await asyncio.to_thread(legacy.rename, legacy.with_name(legacy.name + ".imported"))
        log.info("imported relation roots from %s", legacy, extra={"roots": len(rows)})
        return len(rows)

    async def status(self, delivery_id: str) -> DeliveryStatus | None:
        return await self._db.run(
            lambda c: _status(
                c.execute(f"SELECT {_STATUS_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            )
        )

    async def wait(self, delivery_id: str, timeout: float | None = None) -> DeliveryStatus:
        """Wait until a delivery is sent or dead; raises TimeoutError."""
        future: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(delivery_id, []).append(future)
        try:
            current = await self.status(delivery_id)
            if current is None:
                raise KeyError(delivery_id)
            if current.state != "pending":
                return current
            return await asyncio.wait_for(asyncio.shield(future), timeout)
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
        try:
            await self._db.run(lambda c: c.execute("UPDATE deliveries SET seq = seq WHERE 0"))
        except NotDurable:
            return False
        return True

    @property
    def depth(self) -> int:
        """Deliveries waiting to be sent."""
        return self._depth

    # -- delivery ---------------------------------------------------------------------------------

    def _set_depth(self) -> None:
        if self.metrics:
            self.metrics.depth.set(self._depth)

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
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
                forgotten = await self._db.run(partial(
                    _prune, cutoff=now - self.retention, resolved_before=now - self.root_retention,
                    created_before=now - self.root_max_age))  # fmt: skip
                for key in forgotten:
                    self._roots.pop(key, None)
            timeout = 300.0 if next_due is None else max(next_due - time.time(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _drain(self, room: str) -> None:
        """Send a room's queue in order until it is empty or the head must wait."""
        commits: list[asyncio.Future[Any]] = []
        try:
            while not self._stopping:
                version = self._versions.get(room, 0)
                rows = await self._db.run(lambda c: _pending_rows(c, room))
                if not rows:
                    if self._versions.get(room, 0) == version:  # nothing enqueued since the read
                        self._due.pop(room, None)
                    return
                for row in rows:
                    if self._stopping:
                        return
                    if row.next_attempt > time.time():
                        self._due[room] = row.next_attempt
                        return
                    done = await self._attempt(row, commits)
                    if not done:
                        self._due[room] = row.next_attempt
                        return
                # Sends only wait for their own homeserver round-trip; the state commits catch up
                # here. A crash before they commit resends with the same txn id: no duplicate.
                await asyncio.gather(*commits)
                commits.clear()
        except Exception:
            log.exception("outbox sender failed", extra={"room": room})
            self._due[room] = time.time() + self.base_backoff
        finally:
            if commits:
                await asyncio.gather(*commits, return_exceptions=True)
            self._active.pop(room, None)
            self._wake.set()

    async def _content_for(self, row: _Row) -> Content | None:
        """The content to send, with its relation resolved; None while the related event is unsent."""
        content: Content = json.loads(row.content)
        if row.rel_kind is None:
            return content
        target = row.rel_event
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

    async def _attempt(self, row: _Row, commits: list[asyncio.Future[Any]]) -> bool:
        """Try one delivery. True when it is finished (sent or dead), False when it waits."""
        content = await self._content_for(row)
        if content is None:
            await self._retry(row, 1.0, "waiting for the related message", count=False)
            return False
        try:
            event_id = await self.sender.send(
                row.room, content, txn_id=txn_id_for(row.id), event_type=row.event_type
            )
        except HomeserverUnavailable as exc:
            await self._retry(row, self._backoff(row.attempts), f"homeserver unavailable: {exc}")
            return False
        except MatrixError as exc:
            if not exc.transient:
                commits.append(self._finish(row, "dead", None, str(exc)))
                return True
            if exc.retry_after_ms is not None:
                delay = exc.retry_after_ms / 1000 + random.uniform(0, 0.05)
                await self._retry(row, delay, str(exc), count=False)
            else:
                await self._retry(row, self._backoff(row.attempts), str(exc))
            return False
        except Exception as exc:  # a bug or an unexpected answer: keep the message, look again later
            log.exception("unexpected delivery error", extra={"delivery_id": row.id, "room": row.room})
            await self._retry(row, self._backoff(row.attempts), f"unexpected error: {exc!r}")
            return False
        commits.append(self._finish(row, "sent", event_id, None))
        return True

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.max_backoff, self.base_backoff * 2.0 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _retry(self, row: _Row, delay: float, reason: str, *, count: bool = True) -> None:
        row.next_attempt = time.time() + delay
        if count:
            row.attempts += 1
        if self.metrics:
            self.metrics.deliveries.labels(outcome="retry").inc()
        log.info(
            "delivery will be retried",
            extra={"delivery_id": row.id, "room": row.room, "retry_in_s": round(delay, 3), "reason": reason},
        )
        await self._db.run(
            lambda c: c.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt = ?, error = ? WHERE seq = ?",
                (row.attempts, row.next_attempt, reason, row.seq),
            )
        )

    def _finish(
        self, row: _Row, state: State, event_id: str | None, error: str | None
    ) -> asyncio.Future[None]:
        finished = time.time()
        attempts = row.attempts + 1
        self._depth -= 1
        self._set_depth()
        if self.metrics:
            self.metrics.deliveries.labels(outcome=state).inc()
            if state == "sent":
                self.metrics.latency.observe(finished - row.created)
        if state == "dead":
            log.error(
                "delivery failed permanently",
                extra={"delivery_id": row.id, "room": row.room, "reason": error},
            )
        status = DeliveryStatus(row.id, row.room, state, attempts, event_id, error, row.created, finished)

        def update(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, event_id = ?, error = ?, finished = ?"
                " WHERE seq = ?",
                (state, attempts, event_id, error, finished, row.seq),
            )

        committed = self._db.submit(update)

        def notify(_: asyncio.Future[None]) -> None:
            for waiter in self._waiters.get(row.id, []):
                if not waiter.done():
                    waiter.set_result(status)

        committed.add_done_callback(notify)
        return committed


def _prune(
    connection: sqlite3.Connection, cutoff: float, resolved_before: float, created_before: float
) -> list[tuple[str, str]]:
    """Drop old sent deliveries and old roots; a live root's delivery stays. Returns the roots gone."""
    gone = connection.execute(
        "DELETE FROM relation_roots WHERE resolved < ? OR (resolved IS NULL AND created < ?)"
        " RETURNING key, room",
        (resolved_before, created_before),
    ).fetchall()
    connection.execute(
        "DELETE FROM deliveries WHERE state = 'sent' AND finished < ?"
        " AND id NOT IN (SELECT delivery_id FROM relation_roots)",
        (cutoff,),
    )
    return [(key, room) for key, room in gone]


def _legacy_roots(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as old:
        return [
            (str(k), str(r), str(d)) for k, r, d in old.execute("SELECT key, room, delivery_id FROM roots")
        ]


def _pending_heads(connection: sqlite3.Connection) -> list[tuple[str, float]]:
    return connection.execute(
        "SELECT d.room, d.next_attempt FROM deliveries d JOIN"
        " (SELECT room, MIN(seq) AS seq FROM deliveries WHERE state = 'pending' GROUP BY room) h"
        " ON d.seq = h.seq"
    ).fetchall()


def _pending_rows(connection: sqlite3.Connection, room: str) -> list[_Row]:
    return [
        _Row(*row)
        for row in connection.execute(
            "SELECT seq, id, room, event_type, content, rel_kind, rel_delivery, rel_event, attempts,"
            " next_attempt, created FROM deliveries WHERE room = ? AND state = 'pending'"
            " ORDER BY seq LIMIT ?",
            (room, _BATCH),
        )
    ]
