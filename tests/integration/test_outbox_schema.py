"""The outbox's schema versions on both stores (a real PostgreSQL): a new database gets every step, one
made before versions were recorded (commit a879af9) is taken as version 1 and upgraded, a newer one
is refused in one line (the bridge exits 1), and replicas opening together apply each step once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port
from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.schema import STEPS, Step
from matrix_stack.shared.outbox.sqlite import SqliteStore
from matrix_stack.shared.outbox.store import NewDelivery, OutboxStore

OWNER = "@bot:localhost"
ROOM = "!schema:localhost"
# A step this release does not have, as the next release would add one. On PostgreSQL it lasts long
# enough for two replicas opening together to overlap; run twice, its CREATE TABLE would fail.
PROBE = Step(
    len(STEPS) + 1,
    both=(
        "CREATE TABLE {t}probe (step INTEGER NOT NULL)",
        f"INSERT INTO {{t}}probe VALUES ({len(STEPS) + 1})",
    ),
    postgres=("SELECT pg_sleep(0.5)",),
)
LATER = (*STEPS, PROBE)
EVERY = list(range(1, PROBE.version + 1))

# The tables as commit a879af9 made them, before versions were recorded: its SQL, verbatim.
V1_SQLITE = """
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
V1_POSTGRES = """
CREATE TABLE IF NOT EXISTS {s}.deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    rel_kind TEXT,
    rel_delivery TEXT,
    rel_event TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION,
    event_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS pending_by_room ON {s}.deliveries (room, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS finished_at ON {s}.deliveries (finished) WHERE state = 'sent';
CREATE TABLE IF NOT EXISTS {s}.relation_roots (
    key TEXT NOT NULL,
    room TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    resolved DOUBLE PRECISION,
    PRIMARY KEY (key, room)
);
CREATE TABLE IF NOT EXISTS {s}.room_leases (
    room TEXT PRIMARY KEY,
    holder TEXT NOT NULL,  -- '' when released
    generation BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
-- Whose outbox this is (a second deployment pointed at it by mistake is refused), and the bot's login.
CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE OR REPLACE VIEW {s}.dead_letters AS
    SELECT id, room, event_type, content, attempts, created, finished AS failed, error AS reason
    FROM {s}.deliveries WHERE state = 'dead';
"""


@dataclass
class Database:
    """One outbox database on one backend: its stores, and a look at it from outside."""

    path: Path  # SQLite
    postgres: LocalPostgres | None
    schema: str  # PostgreSQL

    def store(self, steps: Sequence[Step] = STEPS) -> OutboxStore:
        if self.postgres is None:
            return SqliteStore(self.path, steps=steps)
        return PostgresStore(self.postgres.dsn(), self.schema, owner=OWNER, steps=steps)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """`{t}` is where a table's schema goes."""
        if self.postgres is None:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as connection:
                return connection.execute(sql.format(t="")).fetchall()
        with psycopg.connect(self.postgres.dsn(), autocommit=True) as connection:
            cursor = connection.execute(sql.format(t=f'"{self.schema}".'))  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def make_v1(self) -> None:
        """The tables as commit a879af9 left them, with a delivery waiting."""
        pending = (
            "INSERT INTO {t}deliveries (id, room, event_type, content, created)"
            f" VALUES ('old', '{ROOM}', 'm.room.message', '[]', 1)"
        )
        if self.postgres is None:
            with contextlib.closing(sqlite3.connect(self.path)) as connection:
                connection.executescript(V1_SQLITE)
        else:
            with psycopg.connect(self.postgres.dsn(), autocommit=True) as connection:
                connection.execute(f'CREATE SCHEMA "{self.schema}"')  # type: ignore[arg-type]
                connection.execute(V1_POSTGRES.format(s=f'"{self.schema}"'))  # type: ignore[arg-type]
        self.query(pending)

    def versions(self) -> list[int]:
        return [
            version for (version,) in self.query("SELECT version FROM {t}schema_version ORDER BY version")
        ]

    def start_bridge(self) -> subprocess.CompletedProcess[str]:
        """A bridge (notify) on this outbox, to its end; its homeserver is never reached."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
        env |= {"NOTIFY_HOMESERVER": "http://127.0.0.1:9", "NOTIFY_USER_ID": OWNER, "NOTIFY_ACCESS_TOKEN": "x",
                "NOTIFY_TOKEN": "t" * 24, "NOTIFY_PORT": str(free_port()), "NOTIFY_LOG_JSON": "false",
                "NOTIFY_DATA_DIR": str(self.path.parent / "data"), "NOTIFY_OUTBOX_PATH": str(self.path)}  # fmt: skip
        if self.postgres is not None:
            env |= {"NOTIFY_OUTBOX_URL": self.postgres.dsn(), "NOTIFY_OUTBOX_SCHEMA": self.schema,
                    "NOTIFY_ENCRYPTION_KEY": ENCRYPTION_KEY}  # fmt: skip
        return subprocess.run([sys.executable, "-m", "matrix_stack.services.notify"], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def shape(self) -> str:
        """Every table, column, index, constraint and view but the version table, named alike."""
        if self.postgres is None:
            found = self.query(
                "SELECT type, name, sql FROM sqlite_master WHERE name <> 'schema_version' ORDER BY type, name"
            )
            return repr([(kind, name, " ".join(str(sql).split())) for kind, name, sql in found])
        s = self.schema
        found = [
            *self.query(
                "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity,"
                f" identity_generation FROM information_schema.columns WHERE table_schema = '{s}'"
                " AND table_name <> 'schema_version' ORDER BY table_name, ordinal_position"
            ),
            *self.query(
                f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{s}'"
                " AND tablename <> 'schema_version' ORDER BY indexname"
            ),
            *self.query(
                "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
                f" WHERE connamespace = '{s}'::regnamespace AND conname NOT LIKE 'schema_version%' ORDER BY conname"
            ),
            *self.query(f"SELECT viewname, definition FROM pg_views WHERE schemaname = '{s}'"),
        ]
        return repr(found).replace(s, "S")


MakeDatabase = Callable[[str], Database]


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> MakeDatabase:
    """Fresh databases on each backend, by name."""
    server = request.getfixturevalue("postgres") if request.param == "postgres" else None
    suffix = uuid.uuid4().hex[:8]
    return lambda name: Database(tmp_path / f"{name}.sqlite3", server, f"{name}_{suffix}")


async def test_a_new_database_gets_every_step(databases: MakeDatabase) -> None:
    db = databases("fresh")
    store = db.store(LATER)
    survey = await store.open()
    try:
        assert survey.depth == 0
        row = NewDelivery("d1", ROOM, "m.room.message", "{}", None, None, None, time.time())
        assert await store.insert([row], [], time.time()) == 1
        assert [r.id for r in await store.pending(ROOM, 10)] == ["d1"]
    finally:
        await store.close()
    assert db.versions() == EVERY
    assert db.query("SELECT step FROM {t}probe") == [(PROBE.version,)]
    again = db.store(LATER)  # a restart changes nothing
    await again.open()
    await again.close()
    assert db.versions() == EVERY


async def test_version_1_is_the_tables_of_a879af9(databases: MakeDatabase) -> None:
    legacy = databases("legacy")
    legacy.make_v1()
    fresh = databases("fresh")
    store = fresh.store(STEPS[:1])
    await store.open()
    await store.close()
    assert fresh.versions() == [1]
    assert fresh.shape() == legacy.shape()


async def test_a_database_from_before_versions_is_taken_as_1_and_upgraded(databases: MakeDatabase) -> None:
    db = databases("legacy")
    db.make_v1()
    store = db.store(LATER)
    survey = await store.open()
    try:
        assert survey.depth == 1  # what was waiting still is
        assert [r.id for r in await store.pending(ROOM, 10)] == ["old"]
    finally:
        await store.close()
    assert db.versions() == EVERY  # step 1 was not run again: its CREATE TABLE would have failed
    assert db.query("SELECT step FROM {t}probe") == [(PROBE.version,)]


async def test_a_newer_database_is_refused_in_one_line(databases: MakeDatabase) -> None:
    db = databases("newer")
    store = db.store(LATER)
    await store.open()
    await store.close()
    older = db.store(STEPS)
    with pytest.raises(NotDurable) as refused:
        await older.open()
    [line] = str(refused.value).splitlines()
    assert (
        f"the outbox's schema is at version {PROBE.version}, newer than this release knows ({len(STEPS)})"
        in line
    )
    assert db.versions() == EVERY  # never downgraded
    assert db.query("SELECT step FROM {t}probe") == [(PROBE.version,)]

    result = await asyncio.to_thread(db.start_bridge)  # the bridge: exit 1 with that line
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "cannot open the outbox at" in line
    assert f"the outbox's schema is at version {PROBE.version}, newer than this release knows" in line
    assert db.versions() == EVERY


async def test_replicas_opening_together_apply_each_step_once(databases: MakeDatabase) -> None:
    async def open_together(db: Database, steps: Sequence[Step]) -> None:
        a, b = db.store(steps), db.store(steps)
        try:
            await asyncio.gather(a.open(), b.open())
        finally:
            await asyncio.gather(a.close(), b.close())

    for attempt in range(10):  # the race (both switching a new file to WAL) shows in a few of ten
        new = databases(f"new{attempt}")
        await open_together(new, STEPS)
        assert new.versions() == EVERY[:-1]

    upgraded = databases("upgraded")
    first = upgraded.store(STEPS)
    await first.open()
    await first.close()
    await open_together(upgraded, LATER)
    assert upgraded.versions() == EVERY
    assert upgraded.query("SELECT step FROM {t}probe") == [(PROBE.version,)]
