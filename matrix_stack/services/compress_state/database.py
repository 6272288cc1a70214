"""The SQL: Synapse's state tables read and rewritten one state group per transaction, each rewrite
checked against the state PostgreSQL resolves for the group, the way Synapse resolves it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from matrix_stack.services.compress_state.statemap import StateMap
from matrix_stack.shared.outbox.conninfo import first_line, passwords

# One compress-state run per database at a time (a session advisory lock; the number is arbitrary
# but fixed: "matrix-stack compress-state" in ASCII, folded into a bigint).
LOCK_KEY = int.from_bytes(b"mxs-cmps", "big") & 0x7FFF_FFFF_FFFF_FFFF

# Synapse's own resolution (storage/databases/state/bg_updates.py): the chain of prev groups, and
# for each (type, state_key) the row of the highest group in it.
_CHAIN = """
    WITH RECURSIVE sgs(state_group) AS (
        VALUES ({group}::bigint)
        UNION ALL
        SELECT e.prev_state_group FROM state_group_edges e JOIN sgs s ON s.state_group = e.state_group
    )
    SELECT DISTINCT ON (type, state_key) type, state_key, event_id
    FROM state_groups_state WHERE state_group IN (SELECT state_group FROM sgs)
    ORDER BY type, state_key, state_group DESC
"""
RESOLVE_SQL = _CHAIN.format(group="%s")

# statemap.digest, computed by PostgreSQL over what it resolves.
_DIGEST = (
    "SELECT count(*), coalesce(md5(string_agg("
    "length(type) || ':' || type || length(state_key) || ':' || state_key"
    " || length(event_id) || ':' || event_id, '' ORDER BY type COLLATE \"C\", state_key COLLATE \"C\")), '')"
    " FROM ({chain}) AS resolved"
)
DIGEST_SQL = _DIGEST.format(chain=_CHAIN.format(group="%s"))
DIGESTS_SQL = (  # groups that no longer exist are left out (the rewrite then skips them)
    "SELECT g, d.* FROM unnest(%s::bigint[]) AS g JOIN state_groups sg ON sg.id = g, LATERAL ("
    + _DIGEST.format(chain=_CHAIN.format(group="g"))
    + ") AS d"
)


class ConnectError(Exception):
    """The database cannot be reached or refuses us; the message holds no password."""


def connect(conninfo: str, password: str | None, lock_timeout_seconds: float) -> psycopg.Connection[Any]:
    options: dict[str, Any] = {"application_name": "compress-state"}
    if password is not None:
        options["password"] = password
    secrets = [password] if password else []
    try:
        secrets += passwords(conninfo)
    except ValueError as exc:
        raise ConnectError(str(exc)) from None
    try:
        connection = psycopg.connect(conninfo, autocommit=True, **options)
    except psycopg.Error as exc:
        raise ConnectError(first_line(exc, secrets)) from None
    connection.execute(f"SET lock_timeout = '{int(lock_timeout_seconds * 1000)}ms'")
    return connection


@contextlib.contextmanager
def snapshot(connection: psycopg.Connection[Any]) -> Iterator[None]:
    """A read-only transaction whose statements all see one snapshot of the database."""
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def try_lock(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def lock_holder(connection: psycopg.Connection[Any]) -> str:
    """Who holds the lock, for the message of a run that cannot start."""
    row = connection.execute(
        "SELECT a.pid, a.application_name, a.client_addr, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        (LOCK_KEY,),
    ).fetchone()
    if row is None:
        return "another session"
    pid, application, address, started = row
    since = f"{started:%Y-%m-%d %H:%M:%S %Z}".strip()
    return f"backend pid {pid} ({application or 'no application name'}, {address or 'local'}, since {since})"


def has_table(connection: psycopg.Connection[Any], name: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def table_bytes(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SELECT pg_total_relation_size('state_groups_state')").fetchone()
    return int(row[0]) if row else 0


def room_groups(connection: psycopg.Connection[Any], room: str, after: int, limit: int) -> list[int]:
    rows = connection.execute(
        "SELECT id FROM state_groups WHERE room_id = %s AND id > %s ORDER BY id LIMIT %s",
        (room, after, limit),
    ).fetchall()
    return [group for (group,) in rows]


def groups_from(connection: psycopg.Connection[Any], start: int, limit: int) -> list[tuple[int, str]]:
    rows = connection.execute(
        "SELECT id, room_id FROM state_groups WHERE id >= %s ORDER BY id LIMIT %s", (start, limit)
    ).fetchall()
    return [(group, room) for group, room in rows]


def existing(connection: psycopg.Connection[Any], groups: Iterable[int]) -> set[int]:
    rows = connection.execute("SELECT id FROM state_groups WHERE id = ANY(%s)", (list(groups),)).fetchall()
    return {group for (group,) in rows}


def pending_deletion(
    executor: psycopg.Connection[Any] | psycopg.Cursor[Any], groups: Iterable[int]
) -> set[int]:
    """Groups Synapse (1.123 and later, its `state_groups_pending_deletion`) has marked for deletion:
    never rewritten nor made a base of others."""
    rows = executor.execute(
        "SELECT state_group FROM state_groups_pending_deletion WHERE state_group = ANY(%s)", (list(groups),)
    ).fetchall()
    return {group for (group,) in rows}


def load(
    connection: psycopg.Connection[Any], groups: list[int]
) -> tuple[dict[int, int], dict[int, StateMap]]:
    """The groups' edges and rows, as they are."""
    edges = dict(
        connection.execute(
            "SELECT state_group, prev_state_group FROM state_group_edges WHERE state_group = ANY(%s)",
            (groups,),
        ).fetchall()
    )
    rows: dict[int, StateMap] = {group: {} for group in groups}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state_group, type, state_key, event_id FROM state_groups_state"
            " WHERE state_group = ANY(%s)",
            (groups,),
        )
        for group, kind, key, event in cursor:
            rows[group][(kind, key)] = event
    return edges, rows


def resolve(connection: psycopg.Connection[Any], group: int) -> StateMap:
    return {(kind, key): event for kind, key, event in connection.execute(RESOLVE_SQL, (group,))}


def digests(connection: psycopg.Connection[Any], groups: list[int]) -> dict[int, tuple[int, str]]:
    if not groups:
        return {}
    return {group: (count, md5) for group, count, md5 in connection.execute(DIGESTS_SQL, (groups,))}


def digest_now(cursor: psycopg.Cursor[Any], group: int) -> tuple[int, str]:
    cursor.execute(DIGEST_SQL, (group,))
    row = cursor.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def lock_for_rewrite(
    cursor: psycopg.Cursor[Any], groups: list[int], check_pending: bool
) -> tuple[set[int], set[int]]:
    """Inside a rewrite's transaction: which of `groups` exist, locked against Synapse deleting them
    until it commits (KEY SHARE, as Synapse locks the groups it persists events against), and which
    of those are pending deletion."""
    cursor.execute("SELECT id FROM state_groups WHERE id = ANY(%s) FOR KEY SHARE", (groups,))
    present = {group for (group,) in cursor.fetchall()}
    pending = pending_deletion(cursor, present) if check_pending and present else set()
    return present, pending


def rewrite(cursor: psycopg.Cursor[Any], room: str, group: int, prev: int | None, rows: StateMap) -> None:
    cursor.execute("DELETE FROM state_group_edges WHERE state_group = %s", (group,))
    if prev is not None:
        cursor.execute(
            "INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (%s, %s)", (group, prev)
        )
    cursor.execute("DELETE FROM state_groups_state WHERE state_group = %s", (group,))
    if rows:
        with cursor.copy(
            sql.SQL("COPY state_groups_state (state_group, room_id, type, state_key, event_id) FROM STDIN")
        ) as copy:
            for (kind, key), event in rows.items():
                copy.write_row((group, room, kind, key, event))
