"""The outbox: durable enqueue rate (SQLite; PostgreSQL with 1 and 2 replicas), end-to-end delivery
to a real Synapse against a bare matrix-nio send loop on the same homeserver in the same run (each
backend), and the takeover of a SIGKILLed replica's rooms on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nio
import psutil
import psycopg

from bench.homeserver import PASSWORD, durable_postgres, homeserver
from bench.no_sender import NoSender
from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port, metric_sum
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, lift_rate_limit, register
from matrix_stack.shared.bridge.metrics import Metrics
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.client import MatrixClient
from matrix_stack.shared.outbox.engine import Outbox, Outgoing
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.sqlite import SqliteStore

ENQUEUE_COUNT = 20_000
PRODUCERS = 64
DELIVERY_COUNT = 400
ROUNDS = 3


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def enqueue_rate(directory: Path) -> None:
    # The target is per core: pin this process (and its database thread) to one CPU while measuring.
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        await _enqueue_rate(directory)
    finally:
        os.sched_setaffinity(0, cores)


async def _enqueue_rate(directory: Path) -> None:
    message = content.message(
        "CPU usage over 90% on node-17", "<b>CPU usage</b> over 90% on <code>node-17</code>"
    )

    # Comparison: one committed INSERT per message, the obvious durable design.
    naive = sqlite3.connect(directory / "naive.sqlite3", isolation_level=None)
    naive.execute("PRAGMA journal_mode=WAL")
    naive.execute("PRAGMA synchronous=FULL")
    naive.execute("CREATE TABLE q (id TEXT PRIMARY KEY, room TEXT, content TEXT)")
    body = json.dumps(message)
    count = 2000
    started = time.perf_counter()
    for _ in range(count):
        naive.execute("INSERT INTO q VALUES (?, ?, ?)", (uuid.uuid4().hex, "!room:localhost", body))
    naive_rate = count / (time.perf_counter() - started)
    naive.close()

    outbox = Outbox(SqliteStore(directory / "outbox.sqlite3"), NoSender())
    await outbox.open()
    started = time.perf_counter()
    for _ in range(count):
        await outbox.enqueue("!room:localhost", message)
    sequential = count / (time.perf_counter() - started)

    per_producer = ENQUEUE_COUNT // PRODUCERS

    async def producer() -> None:
        for _ in range(per_producer):
            await outbox.enqueue("!room:localhost", message)

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    concurrent = per_producer * PRODUCERS / (time.perf_counter() - started)
    await outbox.stop()
    print("outbox enqueue on one core (durable: committed with synchronous=FULL before returning)")
    print(f"  naive one-commit-per-insert loop : {naive_rate:9.0f} msg/s")
    print(
        f"  outbox, 1 producer               : {sequential:9.0f} msg/s"
        f"  ({sequential / naive_rate:.2f}x naive)"
    )
    print(
        f"  outbox, {PRODUCERS} concurrent producers  : {concurrent:9.0f} msg/s  "
        f"({concurrent / naive_rate:.2f}x naive; target >= 2000)"
    )


def _replicas(url: str, count: int, schema: str) -> list[float]:
    """Each replica a process of its own, all started on the same second, each printing its rate."""
    start_at = time.time() + 3
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.pg_enqueue",
                url,
                schema,
                str(ENQUEUE_COUNT),
                str(PRODUCERS),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    rates = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, "an enqueue replica failed"
        rates.append(float(out.decode().strip().splitlines()[-1]))
    return rates


async def postgres_enqueue_rate(pg: LocalPostgres) -> None:
    url = pg.create_database("enqueue")
    # Comparison: one committed INSERT per message over one connection, the obvious durable design.
    message = json.dumps(content.message("CPU usage over 90% on node-17"))
    with psycopg.connect(url, autocommit=True) as naive:
        naive.execute("CREATE TABLE q (id TEXT PRIMARY KEY, room TEXT, content TEXT)")
        count = 2000
        started = time.perf_counter()
        for _ in range(count):
            naive.execute("INSERT INTO q VALUES (%s, %s, %s)", (uuid.uuid4().hex, "!room:localhost", message))
        naive_rate = count / (time.perf_counter() - started)
    one = _replicas(url, 1, "enqueue_one")
    two = _replicas(url, 2, "enqueue_two")
    print(
        f"outbox enqueue on PostgreSQL (fsync on; committed before returning; {PRODUCERS} producers per replica)"
    )
    print(f"  naive one-commit-per-insert loop : {naive_rate:9.0f} msg/s")
    print(
        f"  outbox, 1 replica                : {one[0]:9.0f} msg/s  ({one[0] / naive_rate:.2f}x naive; target >= 1000)"
    )
    print(
        f"  outbox, 2 replicas               : {min(two):9.0f} and {max(two):.0f} msg/s per replica, {sum(two):.0f} in all"
        f"  (target >= 1000 per replica)"
    )


class Watcher:
    """A reader syncing the room and noting when each message body arrives."""

    def __init__(self, account: Account, room_id: str) -> None:
        self.account = account
        self.room_id = room_id
        self.seen: dict[str, float] = {}
        self._since: str | None = None

    async def prime(self) -> None:
        response = await self.account.api("GET", "/sync", timeout=0)
        self._since = response["next_batch"]

    async def run(self, expected: set[str]) -> None:
        sync_filter = json.dumps({"room": {"rooms": [self.room_id], "timeline": {"limit": 1000}}})
        while not expected <= self.seen.keys():
            response = await self.account.api(
                "GET", "/sync", since=self._since, timeout=10000, filter=sync_filter
            )
            now = time.perf_counter()
            self._since = response["next_batch"]
            room = response.get("rooms", {}).get("join", {}).get(self.room_id, {})
            timeline = room.get("timeline", {})
            for event in timeline.get("events", []):
                if event.get("type") == "m.room.message":
                    self.seen.setdefault(event["content"]["body"], now)
            if timeline.get("limited"):
                await self._backfill(timeline["prev_batch"], now)

    async def _backfill(self, token: str, now: float) -> None:
        """A limited timeline skipped events: page back until reaching ones already seen."""
        while True:
            page = await self.account.api(
                "GET", f"/rooms/{self.room_id}/messages", dir="b", limit=100, **{"from": token}
            )
            bodies = [e["content"]["body"] for e in page["chunk"] if e.get("type") == "m.room.message"]
            fresh = [b for b in bodies if b not in self.seen]
            for body in fresh:
                self.seen[body] = now
            if not page.get("end") or not page["chunk"] or len(fresh) < len(bodies):
                return
            token = page["end"]


async def _timed(watcher: Watcher, bodies: list[str], send: Any) -> tuple[float, list[float]]:
    await watcher.prime()
    watch = asyncio.create_task(watcher.run(set(bodies)))
    started = time.perf_counter()
    starts = await send()
    try:
        await asyncio.wait_for(watch, 120)
    except TimeoutError:
        missing = sorted(set(bodies) - watcher.seen.keys())
        raise RuntimeError(f"{len(missing)} messages never seen, e.g. {missing[:3]}") from None
    elapsed = max(watcher.seen[b] for b in bodies) - started
    latencies = [watcher.seen[b] - starts[b] for b in bodies]
    return len(bodies) / elapsed, latencies


async def delivery(directory: Path, pg: LocalPostgres) -> None:
    async with homeserver(directory) as hs, httpx.AsyncClient(timeout=60) as http:
        synapse, bot, room_id = hs.synapse, hs.bot, hs.rooms[0]
        reader = await register(synapse, http, "reader", PASSWORD)  # watches the room
        await hs.admin.invite(room_id, reader.user_id)
        await reader.join(room_id)
        results: dict[str, list[tuple[float, list[float]]]] = {"bare": []}

        bare = nio.AsyncClient(synapse.url, bot.user_id)
        bare.access_token, bare.user_id = bot.access_token, bot.user_id

        client = MatrixClient(synapse.url, bot.user_id, access_token=bot.access_token)
        await client.start()
        outboxes = {
            "outbox (sqlite)": Outbox(SqliteStore(directory / "delivery.sqlite3"), client, Metrics().outbox),
            "outbox (postgres)": Outbox(
                PostgresStore(pg.create_database("delivery"), "delivery", owner=bot.user_id),
                client,
                Metrics().outbox,
            ),
        }
        results.update({name: [] for name in outboxes})
        for outbox in outboxes.values():
            await outbox.open()
            outbox.start()

        async def bare_loop(bodies: list[str]) -> dict[str, float]:
            starts = {b: time.perf_counter() for b in bodies}
            for body in bodies:
                response = await bare.room_send(room_id, "m.room.message", content.message(body))
                assert isinstance(response, nio.RoomSendResponse), response
            return starts

        def outbox_run(outbox: Outbox) -> Callable[[list[str]], Awaitable[dict[str, float]]]:
            async def run(bodies: list[str]) -> dict[str, float]:
                starts = {b: time.perf_counter() for b in bodies}
                await outbox.enqueue_many([Outgoing(room_id, content.message(b)) for b in bodies])
                return starts

            return run

        runs = [("bare", bare_loop), *((name, outbox_run(outbox)) for name, outbox in outboxes.items())]
        for round_number in range(ROUNDS):
            # Each round in another order: the room grows as it goes, and no contender is always last.
            shift = round_number % len(runs)
            for name, run in runs[shift:] + runs[:shift]:
                bodies = [f"{name} {round_number} {i}" for i in range(DELIVERY_COUNT)]
                results[name].append(await _timed(Watcher(reader, room_id), bodies, partial(run, bodies)))

        for outbox in outboxes.values():
            await outbox.stop()
        await client.close()
        await bare.close()
        messages = await reader.messages(room_id)
        assert len(messages) == (1 + len(outboxes)) * ROUNDS * DELIVERY_COUNT, "every message exactly once"

    print(f"end-to-end delivery to a real Synapse ({DELIVERY_COUNT} messages to one room, best of {ROUNDS})")
    best: dict[str, float] = {}
    for name, runs in results.items():
        rate, latencies = max(runs, key=lambda run: run[0])
        best[name] = rate
        print(
            f"  {name:17}: {rate:7.1f} msg/s   p50 {statistics.median(latencies) * 1000:7.1f} ms"
            f"   p99 {_percentile(latencies, 0.99) * 1000:7.1f} ms (from enqueue/send call to seen by reader)"
        )
    for name in best:
        if name != "bare":
            print(f"  ratio {name}/bare: {best[name] / best['bare']:.2f}x (target >= 0.9)")


TAKEOVER_ROOMS = 5
TAKEOVER_PER_ROOM = 400  # a backlog the replicas are busy sending when one is killed


async def _arrivals(reader: Account, rooms: list[str], seen: dict[str, tuple[str, float]]) -> None:
    """Sync the rooms until cancelled, noting when each body first arrives and where."""
    since = (await reader.api("GET", "/sync", timeout=0))["next_batch"]
    sync_filter = json.dumps({"room": {"rooms": rooms, "timeline": {"limit": 500}}})
    while True:
        response = await reader.api("GET", "/sync", since=since, timeout=5000, filter=sync_filter)
        now = time.perf_counter()
        since = response["next_batch"]
        for room_id, room in response.get("rooms", {}).get("join", {}).items():
            for event in room.get("timeline", {}).get("events", []):
                if event.get("type") == "m.room.message":
                    seen.setdefault(event["content"]["body"], (room_id, now))


async def takeover(directory: Path, pg: LocalPostgres) -> None:
    """Two notify replicas on one PostgreSQL outbox with the default lease; one SIGKILLed while
    both deliver a backlog: how long its rooms pause before the other replica takes them."""
    lease = 10.0
    async with homeserver(directory / "takeover") as hs, httpx.AsyncClient(timeout=60) as http:
        # Not rate limited: a room waiting out a 429 is released, and there would be nothing to take over.
        bot = await register(hs.synapse, http, "takeover-bot", PASSWORD)
        await lift_rate_limit(hs.admin, bot.user_id)
        reader = await register(hs.synapse, http, "takeover-reader", PASSWORD)
        rooms = [await hs.admin.create_room(name=f"takeover {i}", invite=[bot.user_id, reader.user_id])
                 for i in range(TAKEOVER_ROOMS)]  # fmt: skip
        for room in rooms:
            await reader.join(room)
        url = pg.create_database("takeover")
        env = {
            "TOKEN": "t" * 24,
            "OUTBOX_URL": url,
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "OUTBOX_LEASE_SECONDS": str(lease),
            "LOG_LEVEL": "WARNING",
        }
        replicas = [LocalService(f"notify-{n}", "matrix_stack.services.notify", "NOTIFY_", free_port(), dict(env),
                                 directory / f"notify-{n}") for n in ("a", "b")]  # fmt: skip
        for replica in replicas:
            replica.start(hs.synapse.url, bot.user_id, PASSWORD, directory / "logs")
            replica.wait_ready()
        try:
            seen: dict[str, tuple[str, float]] = {}
            watch = asyncio.create_task(_arrivals(reader, rooms, seen))
            await asyncio.sleep(0.5)
            for number in range(TAKEOVER_PER_ROOM):
                for index, room in enumerate(rooms):
                    posted = await http.post(f"{replicas[number % 2].url}/notify/{room}", content=f"r{index} {number}",
                                             headers={"Authorization": f"Bearer {'t' * 24}"})  # fmt: skip
                    assert posted.status_code == 202
            await asyncio.sleep(3)
            # Kill the replica sending to rooms (the first to claim a busy room keeps it until drained).
            held = [
                await asyncio.to_thread(metric_sum, f"{r.url}/metrics", "matrix_stack_outbox_room_leases")
                for r in replicas
            ]
            victim = replicas[held.index(max(held))].process
            assert victim is not None
            assert max(held) > 0, f"no replica holds a room: {held}"
            victim.send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            victim.wait()
            for _ in range(360):
                if (
                    sum([len(await reader.messages(room)) for room in rooms])
                    >= TAKEOVER_ROOMS * TAKEOVER_PER_ROOM
                ):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)
            watch.cancel()
        finally:
            for replica in replicas:
                replica.stop()
        counts = [len(await reader.messages(room)) for room in rooms]
        assert counts == [TAKEOVER_PER_ROOM] * TAKEOVER_ROOMS, f"every message exactly once: {counts}"
    # A room the killed replica held stops until its lease runs out; the others go on. The pause is
    # the longest gap between arrivals from just before the kill on (its last sends arrive after it).
    pauses = []
    for room in rooms:
        arrivals = sorted(at for where, at in seen.values() if where == room and at >= killed - 1.0)
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        if gaps:
            pauses.append(max(gaps))
    longest = max(pauses)
    print(
        f"takeover of a SIGKILLed replica's rooms (2 notify replicas, {TAKEOVER_ROOMS} rooms, lease {lease:.0f} s)"
    )
    print(
        "  longest pause of each room's delivery after the kill: "
        + ", ".join(f"{p:.1f} s" for p in sorted(pauses))
    )
    print(f"  takeover: {longest:.1f} s = {longest / lease:.2f}x the lease (target <= 2x; design bound 4/3x)")


async def idle_rss(directory: Path) -> None:
    synapse = LocalSynapse(directory / "synapse-rss", free_port())
    synapse.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            bot = await register(synapse, http, "bot", PASSWORD)
        service = LocalService(
            "notify",
            "matrix_stack.services.notify",
            "NOTIFY_",
            free_port(),
            {"TOKEN": "x" * 24},
            directory / "notify",
        )
        service.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
        try:
            service.wait_ready()
            await asyncio.sleep(3)
            assert service.process is not None
            rss = psutil.Process(service.process.pid).memory_info().rss / 2**20
        finally:
            service.stop()
    finally:
        synapse.stop()
    print(f"idle RSS of a service process (notify): {rss:.1f} MiB (target < 80)")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as name:
        directory = Path(name)
        print(f"cores: {os.cpu_count()}")
        await enqueue_rate(directory)
        with durable_postgres() as pg:
            await postgres_enqueue_rate(pg)
            await delivery(directory, pg)
            await takeover(directory, pg)
        await idle_rss(directory)
