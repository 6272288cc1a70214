"""One replica's durable enqueue rate on the PostgreSQL outbox, as its own process (replicas are
processes): `python -m bench.pg_enqueue URL SCHEMA COUNT PRODUCERS START_AT` prints msg/s.

It waits until the wall-clock time START_AT so that several replicas measure the same interval."""

from __future__ import annotations

import asyncio
import sys
import time

from bench.no_sender import NoSender
from matrix_stack.shared.matrix import content
from matrix_stack.shared.outbox.engine import Outbox
from matrix_stack.shared.outbox.postgres import PostgresStore

MESSAGE = content.message(
    "CPU usage over 90% on node-17", "<b>CPU usage</b> over 90% on <code>node-17</code>"
)


async def run(url: str, schema: str, count: int, producers: int, start_at: float) -> float:
    outbox = Outbox(PostgresStore(url, schema, owner="@bench:localhost"), NoSender())
    await outbox.open()
    per_producer = count // producers
    rooms = [f"!room{i}:localhost" for i in range(8)]

    async def producer(index: int) -> None:
        for _ in range(per_producer):
            await outbox.enqueue(rooms[index % len(rooms)], MESSAGE)

    await asyncio.sleep(max(start_at - time.time(), 0))
    started = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    rate = per_producer * producers / (time.perf_counter() - started)
    await outbox.stop()
    return rate


if __name__ == "__main__":
    url, schema, count, producers, start_at = sys.argv[1:6]
    print(f"{asyncio.run(run(url, schema, int(count), int(producers), float(start_at))):.1f}")
