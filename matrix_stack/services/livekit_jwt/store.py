"""Where delegation jobs live, and who drives each: an embedded SQLite file for one pod, PostgreSQL
(postgres_backend.py) for every replica (the bridges' outbox makes the same choice, and the same lease).

Each job row carries a lease: a holder, a generation and an expiry on the database's clock. Only
its holder restarts the delayed event, looks the participant up on the SFU and sends the leave;
the holder renews what it holds every third of a lease and any replica's survey takes the rows
whose lease ran out (a dead replica's jobs move within 4/3 of a lease). A webhook or a request
may reach any replica: a join is a flag on the row (its holder reads it at the next renewal); a
leave takes the lease with a new generation, so the replica the SFU told sends it at once and the
former holder's next renewal finds the row gone from it. Every write a holder makes about a job
names its generation: a replica that lost a job cannot end its successor's.

The homeserver makes the rest safe: restarting a delayed event twice is harmless, and sending one
already sent answers 404 (counted as done): a leave is never sent twice, whoever sends it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from matrix_stack.services.livekit_jwt.schema import (
    RECORD_VERSION,
    SQLITE,
    STEPS,
    V1_TABLE,
    VERSION,
    VERSION_TABLE,
    Dialect,
    next_step,
)
from matrix_stack.shared.outbox.sqlite import enable_wal

log = logging.getLogger("matrix_stack.livekit_jwt.store")
_COLUMNS = "cs_api, delay_id, room, identity, timeout_ms, joined, leaving, generation"
_AGES = "{now} - created, {now} - left_at"


class StoreError(Exception):
    """The store could not be read or written; the message is one redacted line."""


class Refused(Exception):
    """The job would replace another participant's, or a limit is reached."""

    def __init__(self, message: str, *, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class Row:
    """A job as the store holds it, under this replica's lease (`generation`)."""

    cs_api: str
    delay_id: str
    room: str
    identity: str
    timeout_ms: int
    joined: bool
    leaving: bool
    generation: int
    age: float  # seconds since it was registered, on the database's clock
    leaving_for: float  # seconds since its leave was decided (when `leaving`)

    @property
    def key(self) -> tuple[str, str]:
        return self.cs_api, self.delay_id


def _row(values: Sequence[Any]) -> Row:
    return Row(
        str(values[0]), str(values[1]), str(values[2]), str(values[3]), int(values[4]), bool(values[5]),
        bool(values[6]), int(values[7]), float(values[8]), float(values[9]),
    )  # fmt: skip


class Backend(Protocol):
    dialect: Dialect
    description: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    async def upgrade(self) -> None: ...


class _Sqlite:
    """One file, one process at a time driving it (a restart picks it up); calls are short enough to
    make in the event loop."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite {path}"
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=5000")
            enable_wal(self._db, 5.0)
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; a crash loses a moment
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            raise StoreError("the store is closed")
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.description}: {exc}") from exc

    async def upgrade(self) -> None:
        assert self._db is not None
        d = self.dialect
        try:
            while True:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    version = _version_sync(self._db, d)
                    step = next_step(version, STEPS, self.description)
                    if step is not None:
                        for statement in STEPS[step - 1]:
                            self._db.execute(d.sql(statement))
                        self._db.execute(d.sql(RECORD_VERSION), (step,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                if step is None:
                    return
                log.info("delegation store upgraded", extra={"version": step})
        except sqlite3.Error as exc:
            raise StoreError(f"{self.description}: {exc}") from exc


def _version_sync(db: sqlite3.Connection, d: Dialect) -> int:
    if not db.execute(d.exists, ("schema_version",)).fetchone()[0]:
        made_before = db.execute(d.exists, (V1_TABLE,)).fetchone()[0]
        db.execute(d.sql(VERSION_TABLE))
        if made_before:
            db.execute(d.sql(RECORD_VERSION), (1,))
    return int(db.execute(d.sql(VERSION)).fetchone()[0])


class JobStore:
    """The jobs and their leases, whichever database holds them. `holder` names this replica."""

    def __init__(self, backend: Backend, *, holder: str, lease_seconds: float) -> None:
        self._backend = backend
        self.holder = holder
        self.lease_seconds = lease_seconds
        d = backend.dialect
        returning = f" RETURNING {_COLUMNS}, {_AGES}"
        take = "holder = ?, generation = generation + 1, expires = {now} + ?"
        self._sql = {
            name: d.sql(text)
            for name, text in {
                "owner": "SELECT identity FROM {t}jobs WHERE cs_api = ? AND delay_id = ?",
                "counts": "SELECT count(*), coalesce(sum(CASE WHEN identity = ? THEN 1 ELSE 0 END), 0)"
                " FROM {t}jobs",
                # a replaced job (the same participant's) starts over, held by the replica told
                "add": "INSERT INTO {t}jobs AS j (delay_id, cs_api, room, identity, timeout_ms, created,"
                " joined, holder, generation, expires, leaving, left_at)"
                " VALUES (?, ?, ?, ?, ?, {now}, 0, ?, 1, {now} + ?, 0, 0)"
                " ON CONFLICT (cs_api, delay_id) DO UPDATE SET room = excluded.room,"
                " timeout_ms = excluded.timeout_ms, created = excluded.created, joined = 0,"
                " holder = excluded.holder, generation = j.generation + 1, expires = excluded.expires,"
                " leaving = 0, left_at = 0 WHERE j.identity = excluded.identity" + returning,
                "joined": "UPDATE {t}jobs SET joined = 1 WHERE room = ? AND identity = ? AND joined = 0"
                " AND leaving = 0",
                "joined_held": "UPDATE {t}jobs SET joined = 1 WHERE cs_api = ? AND delay_id = ?"
                " AND holder = ? AND generation = ? AND leaving = 0",
                "left": "UPDATE {t}jobs SET leaving = 1, left_at = {now}, "
                + take
                + " WHERE room = ? AND identity = ? AND leaving = 0"
                + returning,
                "room_left": "UPDATE {t}jobs SET leaving = 1, left_at = {now}, "
                + take
                + " WHERE room = ? AND leaving = 0"
                + returning,
                "left_held": "UPDATE {t}jobs SET leaving = 1, left_at = {now} WHERE cs_api = ?"
                " AND delay_id = ? AND holder = ? AND generation = ? AND leaving = 0" + returning,
                "finish": "DELETE FROM {t}jobs WHERE cs_api = ? AND delay_id = ? AND holder = ?"
                " AND generation = ? RETURNING 1",
                "renew": "UPDATE {t}jobs SET expires = {now} + ? WHERE holder = ?" + returning,
                "claim": "UPDATE {t}jobs SET " + take + " WHERE holder = '' OR expires < {now}" + returning,
                "release": "UPDATE {t}jobs SET holder = '', expires = 0 WHERE holder = ?",
                "count": "SELECT count(*) FROM {t}jobs",
            }.items()
        }

    @property
    def description(self) -> str:
        return self._backend.description

    @classmethod
    def sqlite(cls, path: Path, *, holder: str, lease_seconds: float) -> JobStore:
        return cls(_Sqlite(path), holder=holder, lease_seconds=lease_seconds)

    @classmethod
    def postgres(cls, url: str, schema: str, *, holder: str, lease_seconds: float) -> JobStore:
        # imported here: a pod on SQLite never loads psycopg and libpq (about 9 MiB)
        from matrix_stack.services.livekit_jwt.postgres_backend import PostgresBackend

        backend = PostgresBackend(url, schema, holder=holder)
        return cls(backend, holder=holder, lease_seconds=lease_seconds)

    async def open(self) -> None:
        await self._backend.open()
        try:
            await self._backend.upgrade()
        except BaseException:
            await self._backend.close()
            raise

    async def close(self) -> None:
        await self._backend.close()

    async def _rows(self, name: str, *params: Any) -> list[Row]:
        return [_row(values) for values in await self._backend.rows(self._sql[name], params)]

    async def add(
        self, delay_id: str, cs_api: str, room: str, identity: str, timeout_ms: int, *, max_jobs: int,
        max_per_identity: int,
    ) -> Row:  # fmt: skip
        """Register (or, for the same participant, replace) a job, held here. Raises Refused."""
        owner = await self._backend.rows(self._sql["owner"], (cs_api, delay_id))
        if owner and owner[0][0] != identity:
            raise Refused("this delayed event is delegated already")
        if not owner:
            [(total, mine)] = await self._backend.rows(self._sql["counts"], (identity,))
            if int(total) >= max_jobs:
                raise Refused("too many delegated events", limit=True)
            if int(mine) >= max_per_identity:
                raise Refused("too many delegated events for this participant", limit=True)
        found = await self._rows(
            "add", delay_id, cs_api, room, identity, timeout_ms, self.holder, self.lease_seconds
        )
        if not found:  # another participant's, registered meanwhile
            raise Refused("this delayed event is delegated already")
        return found[0]

    async def joined(self, room: str, identity: str) -> None:
        await self._backend.rows(self._sql["joined"], (room, identity))

    async def joined_held(self, row: Row) -> None:
        await self._backend.rows(self._sql["joined_held"], (*row.key, self.holder, row.generation))

    async def left(self, room: str, identity: str | None) -> list[Row]:
        """The participant (None: everyone in the room) is gone: their jobs, now leaving and held here."""
        if identity is None:
            return await self._rows("room_left", self.holder, self.lease_seconds, room)
        return await self._rows("left", self.holder, self.lease_seconds, room, identity)

    async def left_held(self, row: Row) -> Row | None:
        """A job this replica holds is to be left (the SFU no longer has its participant)."""
        found = await self._rows("left_held", *row.key, self.holder, row.generation)
        return found[0] if found else None

    async def finish(self, row: Row) -> bool:
        """The job is over; False when this replica no longer held it."""
        return bool(await self._backend.rows(self._sql["finish"], (*row.key, self.holder, row.generation)))

    async def renew(self) -> list[Row]:
        """Everything this replica holds, its leases extended."""
        return await self._rows("renew", self.lease_seconds, self.holder)

    async def claim(self) -> list[Row]:
        """Jobs nobody holds any more (released, or their holder died), now held here."""
        return await self._rows("claim", self.holder, self.lease_seconds)

    async def release(self) -> None:
        """At a clean stop: another replica (or the next start) takes the jobs at once."""
        await self._backend.rows(self._sql["release"], (self.holder,))

    async def count(self) -> int:
        [(total,)] = await self._backend.rows(self._sql["count"])
        return int(total)
