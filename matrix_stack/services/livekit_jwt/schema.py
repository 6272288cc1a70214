"""The delegation jobs' table, its numbered upgrades, and the two dialects that run them.

A store records every version applied to it in `schema_version`; opening it applies the steps it
lacks, in order, each in one transaction with its row, and refuses a store newer than this release
(a downgrade would lose what the newer one keeps). Version 1 is the per-pod SQLite table as it was
before versions were recorded, so a file with `jobs` and no `schema_version` is at version 1.

The same text runs on SQLite (one pod) and PostgreSQL (every replica): a `Dialect` fills in the
schema before each table, the float type, the placeholders and the database's clock, which the
leases are measured on (never a replica's own clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from matrix_stack.shared.kit.errors import NotDurable


@dataclass(frozen=True)
class Dialect:
    backend: Literal["sqlite", "postgres"]
    table: str  # before a table's name: '"schema".' on PostgreSQL, nothing on SQLite
    real: str
    placeholder: str
    now: str  # the database's clock, seconds since the epoch
    exists: str  # whether a table exists (1 or 0), given its name with `table` before it

    def sql(self, text: str) -> str:
        """Text in this dialect: `{t}` before tables, `{real}`, `{now}`, and `?` for parameters."""
        return text.format(t=self.table, real=self.real, now=self.now).replace("?", self.placeholder)


SQLITE = Dialect(
    "sqlite", "", "REAL", "?", "((julianday('now') - 2440587.5) * 86400.0)",
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
)  # fmt: skip


def postgres_dialect(schema: str) -> Dialect:
    return Dialect(
        "postgres", f'"{schema}".', "DOUBLE PRECISION", "%s",
        "extract(epoch from clock_timestamp())::float8", "SELECT (to_regclass(%s) IS NOT NULL)::int",
    )  # fmt: skip


STEPS: tuple[tuple[str, ...], ...] = (
    # 1: the per-pod table as it was before versions were recorded (one process drove every job).
    (
        "CREATE TABLE {t}jobs (delay_id TEXT NOT NULL, cs_api TEXT NOT NULL, room TEXT NOT NULL,"
        " identity TEXT NOT NULL, timeout_ms INTEGER NOT NULL, created {real} NOT NULL,"
        " joined INTEGER NOT NULL, PRIMARY KEY (cs_api, delay_id))",
    ),
    # 2: the job's lease (who drives its timer, until when, which turn), and its leave: once
    # `leaving`, the holder sends it; `left_at` bounds the retries.
    (
        "ALTER TABLE {t}jobs ADD COLUMN holder TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE {t}jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE {t}jobs ADD COLUMN expires {real} NOT NULL DEFAULT 0",
        "ALTER TABLE {t}jobs ADD COLUMN leaving INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE {t}jobs ADD COLUMN left_at {real} NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_by_participant ON {t}jobs (room, identity)",
        "CREATE INDEX jobs_by_holder ON {t}jobs (holder)",
    ),
)

VERSION_TABLE = "CREATE TABLE {t}schema_version (version INTEGER PRIMARY KEY, applied {real} NOT NULL)"
VERSION = "SELECT coalesce(max(version), 0) FROM {t}schema_version"
RECORD_VERSION = "INSERT INTO {t}schema_version (version, applied) VALUES (?, {now})"
V1_TABLE = "jobs"


def next_step(found: int, steps: Sequence[tuple[str, ...]], where: str) -> int | None:
    """The version to apply next to a store at `found`, None when current. Raises NotDurable for a
    store newer than these steps: it is never downgraded."""
    if found > len(steps):
        raise NotDurable(
            f"{where}: the delegation jobs' schema is at version {found}, newer than this release knows"
            f" ({len(steps)}); run a release that knows it (a store is never downgraded)"
        )
    return found + 1 if found < len(steps) else None
