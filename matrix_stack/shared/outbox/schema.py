"""The outbox's tables, their numbered upgrades, and the statements both stores run.

A database records every version applied to it in `schema_version`; a store opening it applies the
steps it lacks, in order, each in one transaction with its row, and refuses a database newer than it
knows: a downgrade would lose what the newer release keeps. Version 1 is the tables as they were
before versions were recorded, so a database with them and no `schema_version` is at version 1.

Both stores run the same text: a `Dialect` fills in what differs (PostgreSQL's schema before every
table, its identity column and float type, its placeholders). A step's `postgres` part holds the
tables only the shared store has (room leases; the meta table with the owner and the bot's login).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.store import ROW_COLUMNS, STATUS_COLUMNS


@dataclass(frozen=True)
class Dialect:
    backend: Literal["sqlite", "postgres"]
    table: str  # before a table's name: '"schema".' on PostgreSQL, nothing on SQLite
    identity: str  # a generated primary key, increasing in insertion order
    real: str  # a float column (times are seconds since the epoch)
    placeholder: str
    # Whether a table exists (1 or 0), given its name with `table` before it.
    exists: str

    def sql(self, text: str) -> str:
        """Shared text in this dialect. `?` marks a parameter: no shared text holds another `?`."""
        return text.format(t=self.table, identity=self.identity, real=self.real).replace(
            "?", self.placeholder
        )

    def statements(self) -> dict[str, str]:
        return {name: self.sql(text) for name, text in STATEMENTS.items()}


SQLITE = Dialect(
    "sqlite", "", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "?",
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
)  # fmt: skip


def postgres_dialect(schema: str) -> Dialect:
    return Dialect(
        "postgres", f'"{schema}".', "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION",
        "%s", "SELECT (to_regclass(%s) IS NOT NULL)::int",
    )  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One upgrade: the statements that take a database from `version - 1` to `version`."""

    version: int
    both: tuple[str, ...]
    postgres: tuple[str, ...] = ()  # the shared store's own tables
    sqlite: tuple[str, ...] = ()

    def statements(self, dialect: Dialect) -> list[str]:
        own = self.postgres if dialect.backend == "postgres" else self.sqlite
        return [dialect.sql(text) for text in (*self.both, *own)]


STEPS: tuple[Step, ...] = (
    # 1: the tables as they were before versions were recorded (commit a879af9).
    Step(
        1,
        both=(
            """CREATE TABLE {t}deliveries (
    seq {identity},
    id TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    rel_kind TEXT,
    rel_delivery TEXT,
    rel_event TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt {real} NOT NULL DEFAULT 0,
    created {real} NOT NULL,
    finished {real},
    event_id TEXT,
    error TEXT
)""",
            "CREATE INDEX pending_by_room ON {t}deliveries (room, seq) WHERE state = 'pending'",
            "CREATE INDEX finished_at ON {t}deliveries (finished) WHERE state = 'sent'",
            # The message later ones relate to, by a caller's key (a Sentry issue, an Alertmanager
            # group or alert), written in the transaction that stores that message. A root's delivery
            # is kept past the sent rows' retention for as long as the root is.
            """CREATE TABLE {t}relation_roots (
    key TEXT NOT NULL,
    room TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created {real} NOT NULL,
    resolved {real},
    PRIMARY KEY (key, room)
)""",
            """CREATE VIEW {t}dead_letters AS
    SELECT id, room, event_type, content, attempts, created, finished AS failed, error AS reason
    FROM {t}deliveries WHERE state = 'dead'""",
        ),
        postgres=(
            # holder is '' when released
            """CREATE TABLE {t}room_leases (
    room TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    generation BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
)""",
            # Whose outbox this is (a second deployment pointed at it by mistake is refused), and the
            # bot's login.
            "CREATE TABLE {t}meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    # 2: the bot's crypto state (end-to-end encryption): one row per item, values JSON holding
    # encrypted pickles (`matrix/crypto/state.py`), written only by the holder of the device lease.
    Step(2, both=("CREATE TABLE {t}crypto_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",)),
)

# One row per version applied, with when.
VERSION_TABLE = "CREATE TABLE {t}schema_version (version INTEGER PRIMARY KEY, applied {real} NOT NULL)"
VERSION = "SELECT coalesce(max(version), 0) FROM {t}schema_version"
RECORD_VERSION = "INSERT INTO {t}schema_version (version, applied) VALUES (?, ?)"
# Present in every version: a database that has it without `schema_version` is at version 1.
V1_TABLE = "deliveries"

# The statements both stores run. The others differ because PostgreSQL is shared: it inserts and
# ends deliveries in batches (unnest), checks them against leases and decides roots in SQL.
STATEMENTS = {
    # A root replaces only a resolved one (the alert fires again); the first live root stays.
    "upsert_root": "INSERT INTO {t}relation_roots AS r (key, room, delivery_id, created)"
    " VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key, room) DO UPDATE SET delivery_id = excluded.delivery_id,"
    " created = excluded.created, resolved = NULL WHERE r.resolved IS NOT NULL",
    "root": "SELECT delivery_id, resolved FROM {t}relation_roots WHERE key = ? AND room = ?",
    "resolve_root": "UPDATE {t}relation_roots SET resolved = ? WHERE key = ? AND room = ?"
    " AND resolved IS NULL",
    "prune_roots": "DELETE FROM {t}relation_roots WHERE resolved < ? OR (resolved IS NULL AND created < ?)",
    "prune_sent": "DELETE FROM {t}deliveries WHERE state = 'sent' AND finished < ?"
    " AND id NOT IN (SELECT delivery_id FROM {t}relation_roots)",
    "pending": "SELECT " + ROW_COLUMNS + " FROM {t}deliveries WHERE room = ? AND state = 'pending'"
    " ORDER BY seq LIMIT ?",
    "status": "SELECT " + STATUS_COLUMNS + " FROM {t}deliveries WHERE id = ?",
    "dead_letters": "SELECT id, room, reason FROM {t}dead_letters ORDER BY failed",
    "depth": "SELECT count(*) FROM {t}deliveries WHERE state = 'pending'",
    "crypto_load": "SELECT key, value FROM {t}crypto_state",
    "crypto_put": "INSERT INTO {t}crypto_state (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    "crypto_delete": "DELETE FROM {t}crypto_state WHERE key = ?",
}


def numbered(steps: Sequence[Step]) -> tuple[Step, ...]:
    """The steps, checked to be versions 1, 2, 3... in order."""
    if [step.version for step in steps] != list(range(1, len(steps) + 1)):
        raise ValueError(f"schema steps must be numbered 1..n in order: {[s.version for s in steps]}")
    return tuple(steps)


def next_step(found: int, steps: Sequence[Step], where: str) -> Step | None:
    """The step to apply to a database at version `found`, None when it is current. Raises
    NotDurable for a database newer than these steps: it is never downgraded."""
    if found > len(steps):
        raise NotDurable(
            f"{where}: the outbox's schema is at version {found}, newer than this release knows"
            f" ({len(steps)}); run a release that knows it (a database is never downgraded)"
        )
    return steps[found] if found < len(steps) else None


def upgrade_level(step: Step, created: bool) -> int:
    """How loud an applied step is logged: the steps that create a fresh outbox are routine."""
    return logging.DEBUG if created or step.version == 1 else logging.INFO
