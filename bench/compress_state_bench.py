"""compress-state against the Rust compressor (synapse-auto-compressor 0.1.2 from PyPI, the last
build that works) on identical copies of one database, in one run: rows removed, wall time and
peak RSS of each, as ratios, and the rows removed per kind of room.

The database has Synapse's real schema (a Synapse started on it once) and four kinds of room:
made through Synapse's client API (`COMPRESS_BENCH_REAL_STEPS` state changes in each of 4 rooms),
2 with one change at a time and 2 where a member's join or leave races the owner's change (Synapse
forks their state); and, for volume, `COMPRESS_BENCH_ROOMS` rooms of `COMPRESS_BENCH_GROUPS` state
groups of each of two kinds written straight into the state tables the way Synapse writes them
(`devstack.state_tables`): linear, and forked (`COMPRESS_BENCH_BURST_RATE` of the steps, a tenth
by default, bursts of 2 or 3 concurrent branches, interleaved by id, then resolved).

Both tools use chunks of 500 groups, levels 100,50,25 and as many chunks as it takes to finish. Ours
runs as operators run it (its console script, verification on) and once with `--no-verify` for
the cost of the check. Targets: rows removed >= 1.0x the Rust tool's in every kind of room and
>= 1.1x overall, time <= 1.0x. The Rust tool runs in a Python process (its binding), so its RSS
includes an interpreter (about 10 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

from devstack import state_history, state_tables
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.synapse import LocalSynapse

ROOMS = int(os.environ.get("COMPRESS_BENCH_ROOMS", "15"))  # of each written kind
GROUPS = int(os.environ.get("COMPRESS_BENCH_GROUPS", "3000"))
REAL_STEPS = int(os.environ.get("COMPRESS_BENCH_REAL_STEPS", "300"))
CHUNK, LEVELS = 500, "100,50,25"
BURST_RATE = float(os.environ.get("COMPRESS_BENCH_BURST_RATE", "0.1"))  # of the forked rooms' steps
TOOL = str(Path(sys.executable).parent / "compress-state")


@dataclass
class Result:
    name: str
    rows_removed: int
    seconds: float
    peak_rss_mib: float
    rows_by_room: dict[str, int]  # after the run


async def _source(postgres: LocalPostgres, directory: Path) -> tuple[str, dict[str, list[str]]]:
    """The database, and its rooms by kind."""
    postgres.create_database("bench_source")
    args = {"host": "127.0.0.1", "port": postgres.port, "user": "postgres", "dbname": "bench_source"}
    synapse = LocalSynapse(directory, free_port(), rc_message={"per_second": 1000, "burst_count": 1000},
                           extra_config={"database": {"name": "psycopg2", "args": args}})  # fmt: skip
    synapse.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            history = await state_history.build(synapse, http, rooms=4, steps=REAL_STEPS, concurrent_rooms=2)
    finally:
        synapse.stop()
    kinds = {
        "Synapse, one change at a time": history.rooms[:2],
        "Synapse, concurrent changes": history.rooms[2:],
        "written, linear": [f"!linear{n}:bench.example" for n in range(ROOMS)],
        "written, forked": [f"!forked{n}:bench.example" for n in range(ROOMS)],
    }
    with psycopg.connect(postgres.dsn("bench_source"), autocommit=True) as connection:
        state_tables.write_rooms(connection, kinds["written, linear"], GROUPS, burst_rate=0, seed=1)
        state_tables.write_rooms(connection, kinds["written, forked"], GROUPS, burst_rate=BURST_RATE, seed=2)
    return "bench_source", kinds


def _rows_by_room(postgres: LocalPostgres, database: str) -> dict[str, int]:
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        query = "SELECT room_id, count(*) FROM state_groups_state GROUP BY room_id"
        return {room: int(count) for room, count in connection.execute(query)}


def _forks(postgres: LocalPostgres, database: str) -> dict[str, tuple[int, int]]:
    """Per room: its groups, and those whose predecessor by id is not their base (a fork)."""
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        query = (
            "SELECT room_id, count(*), count(*) FILTER (WHERE e.prev_state_group IS NOT NULL"
            " AND e.prev_state_group <> g.before) FROM (SELECT id, room_id, lag(id) OVER"
            " (PARTITION BY room_id ORDER BY id) AS before FROM state_groups) g"
            " LEFT JOIN state_group_edges e ON e.state_group = g.id GROUP BY room_id"
        )
        return {room: (int(groups), int(forked)) for room, groups, forked in connection.execute(query)}


def _floors(postgres: LocalPostgres, database: str) -> dict[str, int]:
    """Per room, the rows no layout can go below, however long its walks: a group holding an entry
    (key and event) that no group below it holds needs a row for it whatever its base, as a base
    has a lower id and resolves only to rows of groups below the group. So: one row for each group
    with an entry found in no lower group's rows."""
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        query = (
            "SELECT room_id, count(DISTINCT state_group) FROM (SELECT room_id, state_group, min(state_group)"
            " OVER (PARTITION BY room_id, type, state_key, event_id) AS first FROM state_groups_state) s"
            " WHERE state_group = first GROUP BY room_id"
        )
        return {room: int(count) for room, count in connection.execute(query)}


def _rows(postgres: LocalPostgres, database: str) -> int:
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        return int(connection.execute("SELECT count(*) FROM state_groups_state").fetchone()[0])  # type: ignore[index]


def _copy(postgres: LocalPostgres, source: str, name: str) -> str:
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return name


def _measure(name: str, command: list[str], postgres: LocalPostgres, database: str) -> Result:
    """Wall time, and peak RSS sampled every 10 ms (a child's ru_maxrss would count the parent's
    pages at fork)."""
    before = _rows(postgres, database)
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.01)
    seconds = time.monotonic() - began
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{name} failed ({process.returncode}): {stderr[-2000:]}")
    after = _rows(postgres, database)
    return Result(name, before - after, seconds, peak / 2**20, _rows_by_room(postgres, database))


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as scratch:
        postgres = LocalPostgres(free_port())
        postgres.start()
        try:
            source, kinds = await _source(postgres, Path(scratch) / "synapse")
            rows = _rows(postgres, source)
            rows_before = _rows_by_room(postgres, source)
            forks = _forks(postgres, source)
            floors = _floors(postgres, source)
            print(f"database: {sum(g for g, _ in forks.values())} state groups, {rows} state_groups_state rows"
                  f" (4 rooms made through Synapse, {REAL_STEPS} changes each; {ROOMS} rooms x {GROUPS} groups"
                  " of each written kind)")  # fmt: skip
            rust_call = (f"import synapse_auto_compressor as c; c.compress_state_events_table("
                         f"{postgres.dsn(_copy(postgres, source, 'bench_rust'))!r}, {CHUNK}, {LEVELS!r}, 1000000)")  # fmt: skip
            ours = [
                TOOL,
                "--chunk-size",
                str(CHUNK),
                "--levels",
                LEVELS,
                "--chunks",
                "1000000",
                "--no-progress",
            ]
            results = [
                _measure("rust synapse_auto_compressor 0.1.2", [sys.executable, "-c", rust_call], postgres,
                         "bench_rust"),
                _measure("compress-state", [*ours, "--database-url", postgres.dsn(_copy(postgres, source, "bench_ours"))],
                         postgres, "bench_ours"),
                _measure("compress-state --no-verify",
                         [*ours, "--no-verify", "--database-url", postgres.dsn(_copy(postgres, source, "bench_nv"))],
                         postgres, "bench_nv"),
            ]  # fmt: skip
        finally:
            postgres.stop()
    rust = results[0]
    for result in results:
        print(f"{result.name:38} rows removed {result.rows_removed:>9} ({100 * result.rows_removed / rows:.1f}%)"
              f"  {result.seconds:7.2f} s  peak RSS {result.peak_rss_mib:6.1f} MiB")  # fmt: skip
    print("rows removed per kind of room (forks: groups whose predecessor by id is not their base;"
          " ceiling: the most any tool could remove, down to one row per group holding a new entry,"
          " walks unbounded):")  # fmt: skip
    every = [room for members in kinds.values() for room in members]
    for kind, rooms in [*kinds.items(), ("all", every)]:
        before = sum(rows_before.get(room, 0) for room in rooms)
        groups = sum(forks.get(room, (0, 0))[0] for room in rooms)
        forked = sum(forks.get(room, (0, 0))[1] for room in rooms)
        ceiling = before - sum(floors.get(room, 0) for room in rooms)
        removed = [before - sum(result.rows_by_room.get(room, 0) for room in rooms) for result in results]
        ratio = removed[1] / removed[0] if removed[0] else float("inf")
        print(f"  {kind:30} {len(rooms):>3} rooms {groups:>7} groups ({100 * forked / max(groups, 1):4.1f}% forks)"
              f" {before:>8} rows: Rust removes {removed[0]:>8}, compress-state {removed[1]:>8}"
              f" ({ratio:.3f}x; target >= {1.1 if kind == 'all' else 1.0}x), ceiling {ceiling:>8}"
              f" ({ceiling / max(removed[0], 1):.3f}x the Rust tool's)")  # fmt: skip
    for result in results[1:]:
        print(f"{result.name}: rows removed {result.rows_removed / rust.rows_removed:.3f}x the Rust tool's "
              f"(target >= 1.1x), time {result.seconds / rust.seconds:.2f}x (target <= 1.0x), "
              f"peak RSS {result.peak_rss_mib / rust.peak_rss_mib:.2f}x")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
