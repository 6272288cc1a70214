"""compress-state against the Rust compressor (synapse-auto-compressor 0.1.2 from PyPI, the last
build that works) on identical copies of one database, in one run: rows removed, wall time and
peak RSS of each, as ratios.

The database has Synapse's real schema (a Synapse started on it once) and a real history made
through Synapse's client API (`COMPRESS_BENCH_REAL_STEPS` state changes in each of 2 rooms), then,
for volume, `COMPRESS_BENCH_ROOMS` rooms of `COMPRESS_BENCH_GROUPS` state groups written straight
into the state tables the way Synapse writes them: a one-row delta per state change on the previous
group, and a full snapshot when the chain reaches 100 deltas (`MAX_STATE_DELTA_HOPS`). Members join
(new keys) or change (replaced keys), so snapshots grow as rooms do.

Both tools use chunks of 500 groups, levels 100,50,25 and as many chunks as it takes to finish. Ours
runs as operators run it (its console script, verification on) and once with `--no-verify` for
the cost of the check. Targets: rows removed >= 1.0x the Rust tool's, time <= 2x. The Rust tool
runs in a Python process (its binding), so its RSS includes an interpreter (about 10 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

from devstack import state_history
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.synapse import LocalSynapse

ROOMS = int(os.environ.get("COMPRESS_BENCH_ROOMS", "30"))
GROUPS = int(os.environ.get("COMPRESS_BENCH_GROUPS", "3000"))
REAL_STEPS = int(os.environ.get("COMPRESS_BENCH_REAL_STEPS", "300"))
CHUNK, LEVELS = 500, "100,50,25"
TOOL = str(Path(sys.executable).parent / "compress-state")


@dataclass
class Result:
    name: str
    rows_removed: int
    seconds: float
    peak_rss_mib: float


def _synthetic(connection: psycopg.Connection[object], rooms: int, groups: int) -> None:
    rng = random.Random(4711)
    (start,) = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM state_groups").fetchone()  # type: ignore[misc]
    group = int(start)
    with connection.cursor() as cursor:
        for room_number in range(rooms):
            room = f"!bench{room_number}:bench.example"
            state = {("m.room.create", ""): "$create", ("m.room.power_levels", ""): "$pl0",
                     ("m.room.join_rules", ""): "$jr", ("m.room.history_visibility", ""): "$hv"}  # fmt: skip
            members: list[str] = []
            groups_rows, edges, rows = [], [], []
            hops = 0
            for step in range(groups):
                choice = rng.random()
                if choice < 0.55 or not members:
                    member = f"@user{len(members)}:bench.example"
                    members.append(member)
                    key = ("m.room.member", member)
                elif choice < 0.85:
                    key = ("m.room.member", rng.choice(members))
                else:
                    key = rng.choice([("m.room.topic", ""), ("m.room.name", ""), ("m.room.power_levels", "")])
                event = f"${room_number}-{step}"
                state[key] = event
                groups_rows.append((group, room, event))
                if step == 0 or hops >= 100:  # Synapse: a full snapshot once the chain reaches 100 hops
                    rows.extend(
                        (group, room, kind, state_key, value) for (kind, state_key), value in state.items()
                    )
                    hops = 0
                else:
                    edges.append((group, group - 1))
                    rows.append((group, room, key[0], key[1], event))
                    hops += 1
                group += 1
            with cursor.copy("COPY state_groups (id, room_id, event_id) FROM STDIN") as copy:
                for row in groups_rows:
                    copy.write_row(row)
            with cursor.copy("COPY state_group_edges (state_group, prev_state_group) FROM STDIN") as copy:
                for row in edges:
                    copy.write_row(row)
            with cursor.copy(
                "COPY state_groups_state (state_group, room_id, type, state_key, event_id) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
    connection.execute("SELECT setval('state_group_id_seq', %s)", (group,))
    connection.execute("ANALYZE")


async def _source(postgres: LocalPostgres, directory: Path) -> str:
    postgres.create_database("bench_source")
    args = {"host": "127.0.0.1", "port": postgres.port, "user": "postgres", "dbname": "bench_source"}
    synapse = LocalSynapse(directory, free_port(), rc_message={"per_second": 1000, "burst_count": 1000},
                           extra_config={"database": {"name": "psycopg2", "args": args}})  # fmt: skip
    synapse.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            await state_history.build(synapse, http, rooms=2, steps=REAL_STEPS)
    finally:
        synapse.stop()
    with psycopg.connect(postgres.dsn("bench_source"), autocommit=True) as connection:
        _synthetic(connection, ROOMS, GROUPS)
    return "bench_source"


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
    return Result(name, before - _rows(postgres, database), seconds, peak / 2**20)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as scratch:
        postgres = LocalPostgres(free_port())
        postgres.start()
        try:
            source = await _source(postgres, Path(scratch) / "synapse")
            rows = _rows(postgres, source)
            with psycopg.connect(postgres.dsn(source), autocommit=True) as connection:
                (groups,) = connection.execute("SELECT count(*) FROM state_groups").fetchone()  # type: ignore[misc]
            print(f"database: {groups} state groups, {rows} state_groups_state rows "
                  f"(2 rooms made through Synapse, {ROOMS} rooms x {GROUPS} groups written as Synapse writes)")  # fmt: skip
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
                _measure(
                    "rust synapse_auto_compressor 0.1.2",
                    [sys.executable, "-c", rust_call],
                    postgres,
                    "bench_rust",
                ),
                _measure(
                    "compress-state",
                    [*ours, "--database-url", postgres.dsn(_copy(postgres, source, "bench_ours"))],
                    postgres,
                    "bench_ours",
                ),
                _measure(
                    "compress-state --no-verify",
                    [
                        *ours,
                        "--no-verify",
                        "--database-url",
                        postgres.dsn(_copy(postgres, source, "bench_nv")),
                    ],
                    postgres,
                    "bench_nv",
                ),
            ]
        finally:
            postgres.stop()
    rust = results[0]
    for result in results:
        print(f"{result.name:38} rows removed {result.rows_removed:>9} ({100 * result.rows_removed / rows:.1f}%)"
              f"  {result.seconds:7.2f} s  peak RSS {result.peak_rss_mib:6.1f} MiB")  # fmt: skip
    for result in results[1:]:
        print(f"{result.name}: rows removed {result.rows_removed / rust.rows_removed:.3f}x the Rust tool's "
              f"(target >= 1.0x), time {result.seconds / rust.seconds:.2f}x (target <= 2x), "
              f"peak RSS {result.peak_rss_mib / rust.peak_rss_mib:.2f}x")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
