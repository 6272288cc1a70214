"""The embedded outbox store: one SQLite file (WAL, synchronous=FULL) on one thread.

Operations queued while a transaction runs are committed together with the next one (group commit),
so concurrent enqueues share an fsync. Not shared: one replica owns the file, so every claim on a
room is granted.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.store import (
    ROW_COLUMNS,
    STATUS_COLUMNS,
    Claim,
    DeadLetter,
    DeliveryStatus,
    NewDelivery,
    Root,
    Row,
    State,
    Survey,
)

T = TypeVar("T")

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

# SQL both stores share (PostgreSQL with its own placeholders): one statement per fact.
# A root replaces only a resolved one (the alert fires again); the first live root stays.
UPSERT_ROOT = (
    "INSERT INTO relation_roots (key, room, delivery_id, created) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key, room) DO UPDATE SET delivery_id = excluded.delivery_id,"
    " created = excluded.created, resolved = NULL WHERE relation_roots.resolved IS NOT NULL"
)
ROOT = "SELECT delivery_id, resolved FROM relation_roots WHERE key = ? AND room = ?"
# A message joining a key's thread relates to its root, resolved or not (until the root is pruned).
ANY_ROOT = "SELECT delivery_id FROM relation_roots WHERE key = ? AND room = ?"
RESOLVE_ROOT = "UPDATE relation_roots SET resolved = ? WHERE key = ? AND room = ? AND resolved IS NULL"
PRUNE_ROOTS = "DELETE FROM relation_roots WHERE resolved < ? OR (resolved IS NULL AND created < ?)"
PRUNE_SENT = (
    "DELETE FROM deliveries WHERE state = 'sent' AND finished < ?"
    " AND id NOT IN (SELECT delivery_id FROM relation_roots)"
)
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, room, event_type, content, rel_kind, rel_delivery, rel_event, created)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
PENDING_ROWS = (
    f"SELECT {ROW_COLUMNS} FROM deliveries WHERE room = ? AND state = 'pending' ORDER BY seq LIMIT ?"
)
RETRY = "UPDATE deliveries SET attempts = ?, next_attempt = ?, error = ? WHERE seq = ?"
FINISH = "UPDATE deliveries SET state = ?, attempts = ?, event_id = ?, error = ?, finished = ? WHERE seq = ?"
STATUS = f"SELECT {STATUS_COLUMNS} FROM deliveries WHERE id = ?"
DEAD_LETTERS = "SELECT id, room, reason FROM dead_letters ORDER BY failed"


def delivery_values(row: NewDelivery) -> tuple[Any, ...]:
    return (row.id, row.room, row.event_type, row.content, row.rel_kind, row.rel_delivery, row.rel_event,
            row.created)  # fmt: skip


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


class SqliteStore:
    backend: Literal["sqlite", "postgres"] = "sqlite"
    shared = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._db = _Database(self.path)

    async def open(self) -> Survey:
        await asyncio.to_thread(self._db.start)

        def load(c: sqlite3.Connection) -> Survey:
            depth = c.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]
            heads = c.execute(
                "SELECT d.room, d.next_attempt FROM deliveries d JOIN"
                " (SELECT room, MIN(seq) AS seq FROM deliveries WHERE state = 'pending' GROUP BY room) h"
                " ON d.seq = h.seq"
            ).fetchall()
            return Survey(depth, [(room, due) for room, due in heads])

        return await self._db.run(load)

    async def close(self) -> None:
        await asyncio.to_thread(self._db.stop)

    async def insert(
        self,
        rows: Sequence[NewDelivery],
        resolved: Sequence[tuple[str, str]],
        now: float,
    ) -> int:
        def insert(c: sqlite3.Connection) -> int:
            added = 0
            for row in rows:  # in order: a later row sees the root an earlier one started
                values = delivery_values(row)
                related = None
                if row.root_key is not None and row.root_rel is not None:
                    related = c.execute(ANY_ROOT, (row.root_key, row.room)).fetchone()
                    if related is not None:
                        values = (*values[:4], row.root_rel, related[0], None, *values[7:])
                added += c.execute(INSERT_DELIVERY, values).rowcount
                if row.root_key is not None and related is None:
                    c.execute(UPSERT_ROOT, (row.root_key, row.room, row.id, row.created))
            c.executemany(RESOLVE_ROOT, [(now, key, room) for key, room in resolved])
            return added

        return await self._db.run(insert)

    async def root(self, key: str, room: str) -> Root | None:
        def read(c: sqlite3.Connection) -> Root | None:
            found = c.execute(ROOT, (key, room)).fetchone()
            return None if found is None else Root(found[0], found[1] is not None)

        return await self._db.run(read)

    async def pending(self, room: str, limit: int) -> list[Row]:
        return await self._db.run(lambda c: [Row(*row) for row in c.execute(PENDING_ROWS, (room, limit))])

    async def retry(self, row: Row, claim: Claim, reason: str) -> None:
        await self._db.run(lambda c: c.execute(RETRY, (row.attempts, row.next_attempt, reason, row.seq)))

    def finish(
        self, row: Row, claim: Claim, state: State, event_id: str | None, error: str | None, finished: float
    ) -> asyncio.Future[bool]:
        def update(c: sqlite3.Connection) -> bool:
            c.execute(FINISH, (state, row.attempts, event_id, error, finished, row.seq))
            return True

        return self._db.submit(update)

    async def status(self, delivery_id: str) -> DeliveryStatus | None:
        def read(c: sqlite3.Connection) -> DeliveryStatus | None:
            found = c.execute(STATUS, (delivery_id,)).fetchone()
            return None if found is None else DeliveryStatus(*found)

        return await self._db.run(read)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self._db.run(lambda c: [DeadLetter(*row) for row in c.execute(DEAD_LETTERS)])

    async def writable(self) -> bool:
        try:
            await self._db.run(lambda c: c.execute("UPDATE deliveries SET seq = seq WHERE 0"))
        except NotDurable:
            return False
        return True

    async def prune(self, cutoff: float, resolved_before: float, created_before: float) -> None:
        def prune(c: sqlite3.Connection) -> None:
            c.execute(PRUNE_ROOTS, (resolved_before, created_before))
            c.execute(PRUNE_SENT, (cutoff,))

        await self._db.run(prune)

    async def claim(self, room: str) -> Claim | None:
        return Claim(room)

    async def release(self, claim: Claim, *, hand_over: bool) -> None:
        return None

    async def survey(self, claims: Sequence[Claim]) -> Survey:
        raise NotImplementedError("SQLite is not shared")  # pragma: no cover

    async def listen(self, heard: Callable[[list[str]], None]) -> None:
        raise NotImplementedError("SQLite is not shared")  # pragma: no cover
