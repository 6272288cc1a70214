"""Where each room's compression stands, kept in compress-state's own tables so each run continues
where the last stopped; the Rust compressor's tables read (never written) to resume a room it had
started. A saved chain head that no longer exists (a purged or deleted room) resets that room's
chains instead of failing the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from matrix_stack.services.compress_state import levels as chains
from matrix_stack.services.compress_state.database import has_table

log = logging.getLogger("compress_state.progress")

ROOMS = "matrix_stack_compress_state_rooms"
CURSOR = "matrix_stack_compress_state_cursor"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {ROOMS} (
    room_id TEXT PRIMARY KEY,
    last_group BIGINT NOT NULL,
    levels JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A chunk in progress: last_group and levels are where it started, and this maps each group it has
-- rewritten to the base Synapse had given it, so the next run plans the chunk again as it was.
ALTER TABLE {ROOMS} ADD COLUMN IF NOT EXISTS rewritten JSONB NOT NULL DEFAULT '{{}}';
CREATE TABLE IF NOT EXISTS {CURSOR} (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    lowest_group BIGINT NOT NULL
);
"""

SAVE_SQL = (
    f"INSERT INTO {ROOMS} (room_id, last_group, levels, rewritten) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (room_id) DO UPDATE SET last_group = excluded.last_group, levels = excluded.levels,"
    " rewritten = excluded.rewritten, updated_at = now()"
)


@dataclass
class RoomProgress:
    last_group: int  # every group of the room up to this one is done
    levels: list[chains.Level]
    # Of the chunk after last_group, the groups a run stopped in it had rewritten, each with the base
    # Synapse had given it.
    rewritten: dict[int, int | None] = field(default_factory=dict)


def create(connection: psycopg.Connection[Any]) -> None:
    connection.execute(SCHEMA)


def rust_rooms(connection: psycopg.Connection[Any], sizes: list[int]) -> dict[str, RoomProgress]:
    """The Rust compressor's progress, where its tables exist."""
    if not (
        has_table(connection, "state_compressor_progress") and has_table(connection, "state_compressor_state")
    ):
        return {}
    saved: dict[str, dict[int, list[int | None]]] = {}
    for room, level, size, length, head in connection.execute(
        "SELECT room_id, level_num, max_size, current_length, current_head FROM state_compressor_state"
    ):
        saved.setdefault(room, {})[level] = [size, length, head]
    rooms: dict[str, RoomProgress] = {}
    for room, last in connection.execute("SELECT room_id, last_compressed FROM state_compressor_progress"):
        by_level = saved.get(room, {})
        loaded = chains.load([by_level[n] for n in sorted(by_level)], sizes)  # its levels count from 1
        if loaded is None:
            log.info("the Rust compressor's chains for %s have other sizes: this room's chains start anew",
                     room, extra={"room_id": room})  # fmt: skip
        rooms[room] = RoomProgress(int(last), loaded or chains.fresh(sizes))
    return rooms


def load_rooms(
    connection: psycopg.Connection[Any], sizes: list[int], *, rust: bool
) -> dict[str, RoomProgress]:
    rooms = rust_rooms(connection, sizes) if rust else {}
    if rooms:
        log.info("resuming %d rooms from the Rust compressor's progress", len(rooms))
    query = f"SELECT room_id, last_group, levels, rewritten FROM {ROOMS}"
    for room, last, saved, rewritten in connection.execute(query):
        loaded = chains.load(saved, sizes)
        if loaded is None:
            log.info("levels changed since %s was last compressed: its chains start anew", room,
                     extra={"room_id": room})  # fmt: skip
            rewritten = {}  # a chunk planned on other levels cannot be planned again as it was
        rooms[room] = RoomProgress(int(last), loaded or chains.fresh(sizes),
                                   {int(group): base for group, base in rewritten.items()})  # fmt: skip
    return rooms


def load_cursor(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute(f"SELECT lowest_group FROM {CURSOR}").fetchone()
    return int(row[0]) if row else 0


def save_cursor(connection: psycopg.Connection[Any], lowest_group: int) -> None:
    connection.execute(
        f"INSERT INTO {CURSOR} (lowest_group) VALUES (%s)"
        " ON CONFLICT (only_row) DO UPDATE SET lowest_group = excluded.lowest_group",
        (lowest_group,),
    )


def save_room(
    executor: psycopg.Connection[Any] | psycopg.Cursor[Any],
    room: str,
    last_group: int,
    levels: list[list[Any]],
    rewritten: dict[int, int | None] | None = None,
) -> None:
    """At the end of a chunk; or with a rewrite (in its transaction, on its cursor): the chunk's
    start and what it has rewritten so far."""
    done = {str(group): base for group, base in (rewritten or {}).items()}
    executor.execute(SAVE_SQL, (room, last_group, Jsonb(levels), Jsonb(done)))


def forget_vanished_rooms(connection: psycopg.Connection[Any]) -> int:
    """Drop the progress of rooms that have no state groups left (deleted rooms)."""
    cursor = connection.execute(
        f"DELETE FROM {ROOMS} p WHERE NOT EXISTS (SELECT 1 FROM state_groups g WHERE g.room_id = p.room_id)"
    )
    return cursor.rowcount
