"""The delegation job store on its embedded SQLite: a file written before versions were recorded is
upgraded with its jobs, leases pass between holders, and a newer store is refused."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from matrix_stack.services.livekit_jwt.store import JobStore, Refused, StoreError
from matrix_stack.shared.kit.errors import NotDurable


def old_file(path: Path) -> None:
    """The per-pod table as the service kept it before the store had versions."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE jobs (delay_id TEXT NOT NULL, cs_api TEXT NOT NULL, room TEXT NOT NULL,"
            " identity TEXT NOT NULL, timeout_ms INTEGER NOT NULL, created REAL NOT NULL,"
            " joined INTEGER NOT NULL, PRIMARY KEY (cs_api, delay_id))"
        )
        db.execute("INSERT INTO jobs VALUES ('d1', 'https://hs', 'room', 'who', 8000, 1.0, 1)")


async def test_an_old_file_keeps_its_jobs_and_the_first_holder_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "delegations.sqlite3"
    old_file(path)
    store = JobStore.sqlite(path, holder="a", lease_seconds=5)
    await store.open()
    try:
        [row] = await store.claim()
        assert (row.delay_id, row.joined, row.leaving, row.generation) == ("d1", True, False, 1)
        assert await store.claim() == []  # held: nobody takes it again before the lease ends
        assert [r.key for r in await store.renew()] == [row.key]
        await store.release()
    finally:
        await store.close()
    again = JobStore.sqlite(path, holder="b", lease_seconds=5)
    await again.open()  # already current: nothing applied twice
    try:
        [taken] = await again.claim()
        assert taken.generation == 2
        assert not await again.finish(row)  # the first holder's turn is over
        [leaving] = await again.left("room", "who")
        assert (leaving.leaving, leaving.generation) == (True, 3)
        assert await again.left("room", "who") == []  # one leave, whoever is told twice
        assert await again.finish(leaving)
        assert await again.count() == 0
    finally:
        await again.close()


async def test_another_participant_may_not_take_a_delayed_event(tmp_path: Path) -> None:
    store = JobStore.sqlite(tmp_path / "jobs.sqlite3", holder="a", lease_seconds=5)
    await store.open()
    try:
        first = await store.add("d", "https://hs", "room", "who", 5000, max_jobs=10, max_per_identity=2)
        again = await store.add("d", "https://hs", "room", "who", 6000, max_jobs=10, max_per_identity=2)
        assert (again.generation, again.timeout_ms) == (first.generation + 1, 6000)
        with pytest.raises(Refused, match="delegated already"):
            await store.add("d", "https://hs", "room", "other", 5000, max_jobs=10, max_per_identity=2)
        await store.add("e", "https://hs", "room", "who", 5000, max_jobs=10, max_per_identity=2)
        with pytest.raises(Refused, match="for this participant") as refused:
            await store.add("f", "https://hs", "room", "who", 5000, max_jobs=10, max_per_identity=2)
        assert refused.value.limit
    finally:
        await store.close()


async def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore.sqlite(path, holder="a", lease_seconds=5)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (99, 0)")
    with pytest.raises(NotDurable, match="version 99, newer than this release knows"):
        await JobStore.sqlite(path, holder="a", lease_seconds=5).open()


async def test_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        await JobStore.sqlite(tmp_path / "file" / "jobs.sqlite3", holder="a", lease_seconds=5).open()


def test_a_pod_on_sqlite_never_loads_psycopg(tmp_path: Path) -> None:
    """psycopg and libpq cost a pod about 9 MiB: only a store on PostgreSQL imports them."""

    def loaded(make_store: str) -> str:
        code = (
            "import asyncio, sys\n"
            "from pathlib import Path\n"
            "import matrix_stack.services.livekit_jwt.app\n"
            "from matrix_stack.services.livekit_jwt.store import JobStore\n"
            f"{make_store}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('psycopg')}))\n"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    path = tmp_path / "jobs.sqlite3"
    on_sqlite = f"asyncio.run(JobStore.sqlite(Path({str(path)!r}), holder='a', lease_seconds=5).open())"
    assert loaded(on_sqlite).strip() == "[]"
    # the check sees psycopg where it is loaded
    assert "psycopg" in loaded("JobStore.postgres('postgresql://h/db', 's', holder='a', lease_seconds=5)")
