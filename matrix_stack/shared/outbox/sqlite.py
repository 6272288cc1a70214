"""The embedded outbox store: one SQLite file (WAL, synchronous=FULL) on one thread.

Operations queued while a transaction runs are committed together with the next one (group commit),
so concurrent enqueues share an fsync. Not shared: one replica owns the file, so every claim on a
room is granted. Opening the file creates or upgrades its tables (schema.py's numbered steps).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.schema import (
    RECORD_VERSION,
    SQLITE,
    STEPS,
    V1_TABLE,
    VERSION,
    VERSION_TABLE,
    Step,
    next_step,
    numbered,
    upgrade_level,
)
from matrix_stack.shared.outbox.store import (
    Claim,
    DeadLetter,
    DeliveryStatus,
    NewDelivery,
    Root,
    Row,
    State,
    Survey,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The shared statements (schema.py) in SQLite's words, and this store's own: it inserts and ends
# deliveries one by one, on its one connection, and every claim is granted.
SQL = SQLITE.statements()
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, room, event_type, content, rel_kind, rel_delivery, rel_event, created)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
RETRY = "UPDATE deliveries SET attempts = ?, next_attempt = ?, error = ? WHERE seq = ?"
FINISH = "UPDATE deliveries SET state = ?, attempts = ?, event_id = ?, error = ?, finished = ? WHERE seq = ?"
HEADS = (
    "SELECT d.room, d.next_attempt FROM deliveries d JOIN"
    " (SELECT room, MIN(seq) AS seq FROM deliveries WHERE state = 'pending' GROUP BY room) h"
    " ON d.seq = h.seq"
)


def delivery_values(row: NewDelivery) -> tuple[Any, ...]:
    return (row.id, row.room, row.event_type, row.content, row.rel_kind, row.rel_delivery, row.rel_event,
            row.created)  # fmt: skip


def enable_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, waiting up to `timeout` seconds for another opener of the same file.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without its
    busy handler, while another connection creates the file or switches it too (replicas starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class _Database:
    """One SQLite connection on its own thread; queued operations share transactions."""

    def __init__(self, path: Path, steps: Sequence[Step]) -> None:
        self.path = path
        self._steps = steps
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
        try:
            connection.execute("PRAGMA busy_timeout=10000")  # first: another opener may hold the file
            enable_wal(connection, 10.0)
            connection.execute("PRAGMA synchronous=FULL")  # a commit is on disk when enqueue() returns
            created = False  # this open makes the outbox: its steps are routine, not upgrades
            while step := self._upgrade(connection, created):
                created = created or step == 1
        except BaseException:
            connection.close()
            raise
        return connection

    def _upgrade(self, connection: sqlite3.Connection, created: bool) -> int:
        """Apply the next schema step, in one transaction with its version; its version, 0 when current."""
        connection.execute("BEGIN IMMEDIATE")  # the write lock: another opener waits, then sees it
        try:
            step = next_step(_version(connection), self._steps, str(self.path))
            if step is not None:
                for statement in step.statements(SQLITE):
                    connection.execute(statement)
                connection.execute(SQLITE.sql(RECORD_VERSION), (step.version, time.time()))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        if step is not None:
            log.log(
                upgrade_level(step, created or step.version == 1),
                "outbox schema upgraded",
                extra={"path": str(self.path), "version": step.version},
            )
        return step.version if step is not None else 0

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


def _version(c: sqlite3.Connection) -> int:
    """The database's schema version; a database made before versions were kept is at 1."""
    if not c.execute(SQLITE.exists, ("schema_version",)).fetchone()[0]:
        made_before = c.execute(SQLITE.exists, (V1_TABLE,)).fetchone()[0]
        c.execute(SQLITE.sql(VERSION_TABLE))
        if made_before:
            c.execute(SQLITE.sql(RECORD_VERSION), (1, time.time()))
    return int(c.execute(SQLITE.sql(VERSION)).fetchone()[0])


class SqliteStore:
    backend: Literal["sqlite", "postgres"] = "sqlite"
    shared = False

    def __init__(self, path: Path, *, steps: Sequence[Step] = STEPS) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._db = _Database(self.path, numbered(steps))

    async def open(self) -> Survey:
        await asyncio.to_thread(self._db.start)

        def load(c: sqlite3.Connection) -> Survey:
            depth = c.execute(SQL["depth"]).fetchone()[0]
            heads = c.execute(HEADS).fetchall()
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
                    # Joining a key's thread: its root, resolved or not (until the root is pruned).
                    related = c.execute(SQL["root"], (row.root_key, row.room)).fetchone()
                    if related is not None:
                        values = (*values[:4], row.root_rel, related[0], None, *values[7:])
                added += c.execute(INSERT_DELIVERY, values).rowcount
                if row.root_key is not None and related is None:
                    c.execute(SQL["upsert_root"], (row.root_key, row.room, row.id, row.created))
            c.executemany(SQL["resolve_root"], [(now, key, room) for key, room in resolved])
            return added

        return await self._db.run(insert)

    async def root(self, key: str, room: str) -> Root | None:
        def read(c: sqlite3.Connection) -> Root | None:
            found = c.execute(SQL["root"], (key, room)).fetchone()
            return None if found is None else Root(found[0], found[1] is not None)

        return await self._db.run(read)

    async def pending(self, room: str, limit: int) -> list[Row]:
        return await self._db.run(lambda c: [Row(*row) for row in c.execute(SQL["pending"], (room, limit))])

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
            found = c.execute(SQL["status"], (delivery_id,)).fetchone()
            return None if found is None else DeliveryStatus(*found)

        return await self._db.run(read)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self._db.run(lambda c: [DeadLetter(*row) for row in c.execute(SQL["dead_letters"])])

    async def writable(self) -> bool:
        try:
            await self._db.run(lambda c: c.execute("UPDATE deliveries SET seq = seq WHERE 0"))
        except NotDurable:
            return False
        return True

    async def crypto_load(self) -> dict[str, str]:
        return await self._db.run(lambda c: dict(c.execute(SQL["crypto_load"]).fetchall()))

    async def crypto_save(self, claim: Claim, puts: Mapping[str, str], deletes: Collection[str]) -> None:
        def save(c: sqlite3.Connection) -> None:  # one replica: the device is always ours
            c.executemany(SQL["crypto_put"], list(puts.items()))
            c.executemany(SQL["crypto_delete"], [(key,) for key in deletes])

        await self._db.run(save)

    async def prune(self, cutoff: float, resolved_before: float, created_before: float) -> None:
        def prune(c: sqlite3.Connection) -> None:
            c.execute(SQL["prune_roots"], (resolved_before, created_before))
            c.execute(SQL["prune_sent"], (cutoff,))

        await self._db.run(prune)

    async def claim(self, room: str) -> Claim | None:
        return Claim(room)

    async def release(self, claim: Claim, *, hand_over: bool) -> None:
        return None

    async def survey(self, claims: Sequence[Claim]) -> Survey:
        raise NotImplementedError("SQLite is not shared")  # pragma: no cover

    async def listen(self, heard: Callable[[list[str]], None]) -> None:
        raise NotImplementedError("SQLite is not shared")  # pragma: no cover
