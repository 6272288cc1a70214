"""The shared outbox store: PostgreSQL, for several replicas of one bridge.

Every replica commits what it accepts (enqueues and delivery ends queued meanwhile share one
transaction: group commit) and announces the rooms with NOTIFY. One replica at a time sends to a
room: it holds the room's lease, a row with a holder, a generation and an expiry on the database's
clock. Leases last `lease_seconds` and are renewed every third of that; a replica stops starting
sends when its lease is within `lease_seconds * 0.3` of running out unrenewed, so it never sends
after the database could hand the room to another. A replica that dies holds its rooms until their
leases run out; the next survey (every `lease_seconds / 3`) of any other replica takes them:
takeover within `lease_seconds * 4/3` of the last renewal. The generation is checked when a
delivery is marked sent, so a replica that lost a room cannot overwrite its successor's work. A
message the dead replica had sent but not yet marked is sent again by its successor with the same
transaction id on the same device: the homeserver answers with the first event.

Tables live in their own schema (one per bridge deployment), created on first start and upgraded
by schema.py's numbered steps, one transaction each under an advisory lock: replicas starting
together apply every step once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import orjson
import psycopg
import psycopg_pool

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.conninfo import first_line, passwords
from matrix_stack.shared.outbox.schema import (
    RECORD_VERSION,
    STEPS,
    V1_TABLE,
    VERSION,
    VERSION_TABLE,
    Step,
    next_step,
    numbered,
    postgres_dialect,
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
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Serialises schema creation and logins across replicas ("mxs-obox" folded into a bigint).
_LOCK_BASE = int.from_bytes(b"mxs-obox", "big") & 0x7FFF_FFFF_FFFF_0000
_SAFETY = 0.3  # of a lease: stop starting sends this long before it would lapse unrenewed


def holder_name() -> str:
    """This replica, in lease rows and logs: the pod's name and a per-start suffix."""
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Insert:
    rows: Sequence[NewDelivery]
    resolved: Sequence[tuple[str, str]]
    now: float
    future: asyncio.Future[int]


@dataclass
class _Finish:
    row: Row
    claim: Claim
    state: State
    event_id: str | None
    error: str | None
    finished: float
    future: asyncio.Future[bool]


@dataclass
class _Batch:
    inserts: list[_Insert] = field(default_factory=list)
    finishes: list[_Finish] = field(default_factory=list)


class PostgresStore:
    backend: Literal["sqlite", "postgres"] = "postgres"
    shared = True

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        owner: str,
        holder: str | None = None,
        lease_seconds: float = 10.0,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        steps: Sequence[Step] = STEPS,
    ) -> None:
        if not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema {schema!r}: lower-case letters, digits and _ only")
        self._secrets = passwords(url)  # ValueError for a malformed string, without echoing it
        self._url = url
        self.schema = schema
        self.owner = owner
        self.holder = holder or holder_name()
        self.lease_seconds = lease_seconds
        self._steps = numbered(steps)
        self._dialect = postgres_dialect(schema)
        self.channel = f"{schema}_outbox"
        info = psycopg.conninfo.conninfo_to_dict(url)
        self.description = (
            f"postgresql {info.get('host') or 'local'}/{info.get('dbname') or ''} schema {schema}"
        )
        self._connect_timeout = connect_timeout
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": max(int(connect_timeout), 1),
                    "application_name": f"matrix-stack outbox {self.holder}"},
        )  # fmt: skip
        self._pending = _Batch()
        self._committers = 0
        self._max_committers = max(pool_size - 2, 1)  # leave connections for reads and leases
        s = f'"{schema}"'
        # The shared statements (schema.py) in PostgreSQL's words, and this store's own.
        self._sql = self._dialect.statements() | {
            # A row with a root key and root_rel relates to the key's root (resolved or not), else to
            # the row before it in this batch that started the root (batch_root), else to nothing.
            "insert": f"INSERT INTO {s}.deliveries (id, room, event_type, content, rel_kind, rel_delivery,"
            " rel_event, created) SELECT v.id, v.room, v.event_type, v.content,"
            " CASE WHEN v.root_rel IS NOT NULL AND coalesce(r.delivery_id, v.batch_root) IS NOT NULL"
            " THEN v.root_rel ELSE v.rel_kind END,"
            " CASE WHEN v.root_rel IS NOT NULL AND coalesce(r.delivery_id, v.batch_root) IS NOT NULL"
            " THEN coalesce(r.delivery_id, v.batch_root) ELSE v.rel_delivery END,"
            " v.rel_event, v.created"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::float8[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY"
            " AS v(id, room, event_type, content, rel_kind, rel_delivery, rel_event, created, root_key,"
            " root_rel, batch_root, ord)"
            f" LEFT JOIN {s}.relation_roots r ON r.key = v.root_key AND r.room = v.room"
            " ORDER BY v.ord ON CONFLICT (id) DO NOTHING RETURNING id",
            "lock_root": "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            # A row with root_rel starts the root only where the key has none (else it related).
            "first_root": f"INSERT INTO {s}.relation_roots (key, room, delivery_id, created)"
            f" SELECT %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM {s}.relation_roots WHERE key = %s"
            " AND room = %s) ON CONFLICT (key, room) DO NOTHING",
            "finish": f"UPDATE {s}.deliveries d SET state = v.state, attempts = v.attempts,"
            " event_id = v.event_id, error = v.error, finished = v.finished"
            " FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], %s::text[], %s::float8[],"
            " %s::text[], %s::bigint[])"
            " AS v(seq, state, attempts, event_id, error, finished, room, generation)"
            f" WHERE d.seq = v.seq AND EXISTS (SELECT 1 FROM {s}.room_leases l WHERE l.room = v.room"
            " AND l.holder = %s AND l.generation = v.generation) RETURNING d.seq",
            "notify": "SELECT pg_notify(%s, r) FROM unnest(%s::text[]) AS r",
            "retry": f"UPDATE {s}.deliveries d SET attempts = %s, next_attempt = %s, error = %s"
            " WHERE seq = %s"
            f" AND EXISTS (SELECT 1 FROM {s}.room_leases l WHERE l.room = d.room AND l.holder = %s"
            " AND l.generation = %s)",
            "claim": f"WITH previous AS (SELECT holder FROM {s}.room_leases WHERE room = %(room)s)"
            f" INSERT INTO {s}.room_leases AS l (room, holder, generation, expires)"
            " VALUES (%(room)s, %(me)s, 1, now() + %(lease)s * interval '1 second')"
            " ON CONFLICT (room) DO UPDATE SET holder = excluded.holder, generation = l.generation + 1,"
            " expires = excluded.expires"
            " WHERE l.expires < now() OR l.holder = '' OR l.holder = excluded.holder"
            " RETURNING l.generation, (SELECT holder FROM previous)",
            "release": f"UPDATE {s}.room_leases SET holder = '', expires = now()"
            " WHERE room = %s AND holder = %s AND generation = %s",
            "renew": f"UPDATE {s}.room_leases SET expires = now() + %s * interval '1 second'"
            " WHERE holder = %s AND room = ANY(%s) RETURNING room, generation",
            "heads": f"SELECT DISTINCT ON (d.room) d.room, d.next_attempt FROM {s}.deliveries d"
            f" WHERE d.state = 'pending' AND NOT EXISTS (SELECT 1 FROM {s}.room_leases l"
            " WHERE l.room = d.room"
            " AND l.holder <> '' AND l.holder <> %s AND l.expires >= now()) ORDER BY d.room, d.seq",
            "holds": f"SELECT 1 FROM {s}.room_leases WHERE room = %s AND holder = %s AND generation = %s"
            " AND expires > now() FOR SHARE",
            "meta_get": f"SELECT value FROM {s}.meta WHERE key = %s",
            "meta_set": f"INSERT INTO {s}.meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            "meta_init": f"INSERT INTO {s}.meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        }

    # -- connections ------------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> NotDurable:
        return NotDurable(f"{self.description}: {first_line(exc, self._secrets)}")

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work` on a pooled connection. Connections are not checked out with a round trip of their
        own: one the server dropped (a restart, an idle timeout) fails, and `work` runs once more on
        a fresh one. Every operation here may run twice (inserts skip known ids, roots and
        resolutions only change once, updates set the same values)."""
        for attempt in (1, 2):
            connection: psycopg.AsyncConnection[Any] | None = None
            try:
                async with self._pool.connection() as connection:
                    return await work(connection)
            except psycopg.OperationalError as exc:
                if attempt == 1 and connection is not None and connection.broken:
                    continue
                raise self._error(exc) from exc
            except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
                raise self._error(exc) from exc
        raise AssertionError("unreachable")

    async def _fetch(self, query: str, params: Sequence[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
        async def fetch(connection: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(query, params)
            return await cursor.fetchall() if cursor.description else []

        return await self._run(fetch)

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self) -> Survey:
        try:
            await self._pool.open(wait=True, timeout=self._connect_timeout)
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            await self._pool.close()
            raise self._error(exc) from exc

        try:
            owner = await self._run(self._upgrade)
        except BaseException:
            await self._pool.close()
            raise
        if owner != self.owner:
            await self._pool.close()
            raise NotDurable(
                f"{self.description} is the outbox of {owner}, not {self.owner}: give this deployment its own"
                " OUTBOX_SCHEMA"
            )
        return await self.survey([])

    async def close(self) -> None:
        await self._pool.close()

    async def _upgrade(self, connection: psycopg.AsyncConnection[Any]) -> str:
        """Bring the schema to the latest version, one step per transaction under the advisory lock
        (another replica waits, then sees the step done); returns the outbox's owner. Someone else's
        outbox is not upgraded, and a newer one is refused (NotDurable)."""
        created = False  # this open makes the outbox: its steps are routine, not upgrades
        while True:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_BASE,))
                found = await self._version(connection)
                step = next_step(found, self._steps, self.description)
                created = created or found == 0
                if found >= 1:
                    await connection.execute(self._sql["meta_init"], ("owner", self.owner))
                    owner = await _one(await connection.execute(self._sql["meta_get"], ("owner",)))
                    if owner != self.owner:
                        return str(owner)
                if step is None:
                    return self.owner
                for statement in step.statements(self._dialect):
                    await connection.execute(statement)
                await connection.execute(self._dialect.sql(RECORD_VERSION), (step.version, time.time()))
            log.log(
                upgrade_level(step, created),
                "outbox schema upgraded",
                extra={"schema": self.schema, "version": step.version},
            )

    async def _version(self, connection: psycopg.AsyncConnection[Any]) -> int:
        """The schema's version (0: new); one made before versions were kept is at 1."""
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a
        # schema made beforehand and granted to the role must not need it.
        cursor = await connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        if await cursor.fetchone() is None:
            await connection.execute(f'CREATE SCHEMA "{self.schema}"')
        d = self._dialect
        if not await _one(await connection.execute(d.exists, (d.table + "schema_version",))):
            made_before = await _one(await connection.execute(d.exists, (d.table + V1_TABLE,)))
            await connection.execute(d.sql(VERSION_TABLE))
            if made_before:
                await connection.execute(d.sql(RECORD_VERSION), (1, time.time()))
        return int(await _one(await connection.execute(d.sql(VERSION))))

    # -- group commit -----------------------------------------------------------------------------

    def _queue(self) -> None:
        if self._committers < self._max_committers:
            self._committers += 1
            asyncio.get_running_loop().create_task(self._commit_loop(), name="outbox-pg-commit")

    async def _commit_loop(self) -> None:
        try:
            while self._pending.inserts or self._pending.finishes:
                batch, self._pending = self._pending, _Batch()
                try:
                    await self._run(partial(self._commit, batch=batch))
                except NotDurable as exc:
                    if len(batch.inserts) + len(batch.finishes) == 1 or _is_connection_error(exc):
                        _fail(batch, exc)
                        continue
                    # One bad operation must not fail the others: each alone, in its own transaction.
                    for single in _singles(batch):
                        try:
                            await self._run(partial(self._commit, batch=single))
                        except NotDurable as alone:
                            _fail(single, alone)
        finally:
            self._committers -= 1

    async def _commit(self, connection: psycopg.AsyncConnection[Any], batch: _Batch) -> None:
        inserted: psycopg.AsyncCursor[Any] | None = None
        finished: psycopg.AsyncCursor[Any] | None = None
        # Pipeline mode: the whole transaction, BEGIN to COMMIT, in one round trip.
        async with connection.pipeline(), connection.transaction():
            rows = [row for insert in batch.inserts for row in insert.rows]
            # Who starts a root and who relates to it is decided here; a lock per key (in one order)
            # makes a replica committing the same key wait for the other's root, then see it.
            for key in sorted({f"{self.schema} {row.room} {row.root_key}" for row in rows if row.root_key}):
                await connection.execute(self._sql["lock_root"], (key,))
            if rows:
                started: dict[tuple[str, str], str] = {}
                batch_roots = []
                for row in rows:
                    found = started.get((row.root_key, row.room)) if row.root_key else None
                    batch_roots.append(found if row.root_rel else None)
                    if row.root_key and found is None:
                        started[(row.root_key, row.room)] = row.id
                fields = [(r.id, r.room, r.event_type, r.content, r.rel_kind, r.rel_delivery, r.rel_event,
                           r.created, r.root_key, r.root_rel) for r in rows]  # fmt: skip
                columns = [list(column) for column in zip(*fields, strict=True)]
                inserted = await connection.execute(self._sql["insert"], [*columns, batch_roots])
            for insert in batch.inserts:  # in arrival order: a resolve then a new firing keeps the latter
                for row in insert.rows:
                    if row.root_key is not None and row.root_rel is not None:
                        first = (row.root_key, row.room, row.id, row.created, row.root_key, row.room)
                        await connection.execute(self._sql["first_root"], first)
                    elif row.root_key is not None:
                        await connection.execute(
                            self._sql["upsert_root"], (row.root_key, row.room, row.id, row.created)
                        )
                for key, room in insert.resolved:
                    await connection.execute(self._sql["resolve_root"], (insert.now, key, room))
            if batch.finishes:
                f = batch.finishes
                finished = await connection.execute(
                    self._sql["finish"],
                    (
                        [x.row.seq for x in f], [x.state for x in f], [x.row.attempts for x in f],
                        [x.event_id for x in f], [x.error for x in f], [x.finished for x in f],
                        [x.row.room for x in f], [x.claim.generation for x in f], self.holder,
                    ),
                )  # fmt: skip
            rooms = sorted({row.room for row in rows})
            if rooms:
                await connection.execute(self._sql["notify"], (self.channel, rooms))
        added = {found[0] for found in await inserted.fetchall()} if inserted is not None else set()
        kept = {found[0] for found in await finished.fetchall()} if finished is not None else set()
        for insert in batch.inserts:
            _settle(insert.future, sum(1 for row in insert.rows if row.id in added))
        for finish in batch.finishes:
            _settle(finish.future, finish.row.seq in kept)

    # -- the store --------------------------------------------------------------------------------

    async def insert(
        self,
        rows: Sequence[NewDelivery],
        resolved: Sequence[tuple[str, str]],
        now: float,
    ) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.inserts.append(_Insert(rows, resolved, now, future))
        self._queue()
        return await future

    def finish(
        self, row: Row, claim: Claim, state: State, event_id: str | None, error: str | None, finished: float
    ) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.finishes.append(_Finish(row, claim, state, event_id, error, finished, future))
        self._queue()
        return future

    async def root(self, key: str, room: str) -> Root | None:
        found = await self._fetch(self._sql["root"], (key, room))
        return Root(found[0][0], found[0][1] is not None) if found else None

    async def pending(self, room: str, limit: int) -> list[Row]:
        return [Row(*found) for found in await self._fetch(self._sql["pending"], (room, limit))]

    async def retry(self, row: Row, claim: Claim, reason: str) -> None:
        params = (row.attempts, row.next_attempt, reason, row.seq, self.holder, claim.generation)
        await self._fetch(self._sql["retry"], params)

    async def status(self, delivery_id: str) -> DeliveryStatus | None:
        found = await self._fetch(self._sql["status"], (delivery_id,))
        return DeliveryStatus(*found[0]) if found else None

    async def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter(*found) for found in await self._fetch(self._sql["dead_letters"], ())]

    async def writable(self) -> bool:
        try:
            await self._fetch(self._sql["meta_init"], ("owner", self.owner))
        except NotDurable:
            return False
        return True

    async def prune(self, cutoff: float, resolved_before: float, created_before: float) -> None:
        async def prune(connection: psycopg.AsyncConnection[Any]) -> None:
            async with connection.transaction():
                await connection.execute(self._sql["prune_roots"], (resolved_before, created_before))
                await connection.execute(self._sql["prune_sent"], (cutoff,))

        await self._run(prune)

    # -- the bot's crypto state -------------------------------------------------------------------

    async def crypto_load(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in await self._fetch(self._sql["crypto_load"], ())}

    async def crypto_save(self, claim: Claim, puts: Mapping[str, str], deletes: Collection[str]) -> None:
        async def save(connection: psycopg.AsyncConnection[Any]) -> None:
            async with connection.transaction():
                # Fenced: a replica whose device lease ran out never overwrites the new holder's state.
                held = await connection.execute(
                    self._sql["holds"], (claim.room, self.holder, claim.generation)
                )
                if await held.fetchone() is None:
                    claim.lost = True
                    raise _LeaseLost(f"{self.description}: the bot's device lease is held by another replica")
                async with connection.cursor() as cursor:
                    if puts:
                        await cursor.executemany(self._sql["crypto_put"], list(puts.items()))
                    if deletes:
                        await cursor.executemany(self._sql["crypto_delete"], [(key,) for key in deletes])

        try:
            await self._run(save)
        except _LeaseLost as exc:
            raise NotDurable(str(exc)) from None

    # -- leases -----------------------------------------------------------------------------------

    async def claim(self, room: str) -> Claim | None:
        asked = time.monotonic()
        found = await self._fetch(
            self._sql["claim"], {"room": room, "me": self.holder, "lease": self.lease_seconds}
        )
        if not found:
            return None
        generation, previous = found[0]
        return Claim(
            room,
            int(generation),
            deadline=asked + self.lease_seconds * (1 - _SAFETY),
            taken_over=previous not in (None, "", self.holder),
        )

    async def release(self, claim: Claim, *, hand_over: bool) -> None:
        async def release(connection: psycopg.AsyncConnection[Any]) -> None:
            await connection.execute(self._sql["release"], (claim.room, self.holder, claim.generation))
            if hand_over:
                await connection.execute(self._sql["notify"], (self.channel, [claim.room]))

        try:
            await self._run(release)
        except NotDurable as exc:  # the lease runs out by itself
            log.warning("could not release a room lease", extra={"room": claim.room, "error": str(exc)})

    async def survey(self, claims: Sequence[Claim]) -> Survey:
        asked = time.monotonic()
        lost: list[str] = []
        if claims:
            renewed = await self._fetch(
                self._sql["renew"], (self.lease_seconds, self.holder, [c.room for c in claims])
            )
            held = {(str(room), int(generation)) for room, generation in renewed}
            for claim in claims:
                if (claim.room, claim.generation) in held:
                    claim.deadline = asked + self.lease_seconds * (1 - _SAFETY)
                else:
                    claim.lost = True
                    lost.append(claim.room)
        heads = await self._fetch(self._sql["heads"], (self.holder,))
        depth = await self._fetch(self._sql["depth"], ())
        return Survey(int(depth[0][0]), [(str(room), float(due)) for room, due in heads], lost)

    async def listen(self, heard: Callable[[list[str]], None]) -> None:
        delay = 1.0
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=max(int(self._connect_timeout), 1)
                )
                async with connection:
                    await connection.execute(f'LISTEN "{self.channel}"')
                    delay = 1.0
                    heard([])  # (re)connected: anything missed meanwhile is found by looking
                    async for notice in connection.notifies():
                        heard([notice.payload])
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "outbox notifications interrupted", extra={"error": first_line(exc, self._secrets)}
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    # -- the bot's login, shared by the replicas -----------------------------------------------------

    def session_store(self) -> PostgresSession:
        return PostgresSession(self)

    async def meta(self, key: str) -> str | None:
        found = await self._fetch(self._sql["meta_get"], (key,))
        return str(found[0][0]) if found else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._fetch(self._sql["meta_set"], (key, value))

    @contextlib.asynccontextmanager
    async def locked(self, key: int) -> AsyncIterator[None]:
        """A session advisory lock held across `await`s (one pool connection for its duration)."""
        try:
            async with self._pool.connection() as connection:
                await connection.execute("SELECT pg_advisory_lock(%s)", (_LOCK_BASE + key,))
                try:
                    yield
                finally:
                    await connection.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_BASE + key,))
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            raise self._error(exc) from exc


class _LeaseLost(Exception):
    pass


class PostgresSession:
    """The bot's access token and device in the outbox's database: every replica uses one device."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.description = store.description

    async def load(self) -> dict[str, Any] | None:
        saved = await self._store.meta("session")
        return dict(orjson.loads(saved)) if saved else None

    async def save(self, session: dict[str, Any]) -> None:
        await self._store.set_meta("session", orjson.dumps(session).decode())

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._store.locked(1)


async def _one(cursor: psycopg.AsyncCursor[Any]) -> Any:
    """The first column of a query's one row."""
    found = await cursor.fetchone()
    assert found is not None
    return found[0]


def _is_connection_error(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, (psycopg.OperationalError, psycopg_pool.PoolTimeout, OSError))


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(batch: _Batch, error: BaseException) -> None:
    futures: list[asyncio.Future[Any]] = [
        *(i.future for i in batch.inserts),
        *(f.future for f in batch.finishes),
    ]
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _singles(batch: _Batch) -> list[_Batch]:
    return [_Batch(inserts=[i]) for i in batch.inserts] + [_Batch(finishes=[f]) for f in batch.finishes]
