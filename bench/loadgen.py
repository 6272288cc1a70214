"""A small HTTP/1.1 keep-alive load generator on asyncio streams: closed-loop (as fast as the
server answers, N connections) and open-loop (a fixed request rate, latency from the scheduled
send time, so queueing delay counts)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def summary(self) -> str:
        return (
            f"{self.rate:8.1f} req/s  p50 {statistics.median(self.latencies) * 1000:7.2f} ms"
            f"  p99 {self.percentile(0.99) * 1000:8.2f} ms  statuses {dict(sorted(self.statuses.items()))}"
        )


Headers = Callable[[], dict[str, str]]


class Connection:
    def __init__(self, url: str, body: bytes, headers: Headers | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        self.body = body
        self.headers = headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers().items()) if self.headers else ""
        self.writer.write((self.head + extra + "\r\n").encode() + self.body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(
    url: str, body: bytes, *, requests: int, connections: int, headers: Headers | None = None
) -> Result:
    result = Result()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        connection = Connection(url, body, headers)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status = await connection.post()
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.elapsed = time.perf_counter() - started
    return result


async def open_loop(
    url: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    max_connections: int = 256,
    headers: Headers | None = None,
) -> Result:
    """Send at `rate` requests/s; a request waiting for a free connection is still timed from its slot."""
    result = Result()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(max_connections):
        idle.put_nowait(Connection(url, body, headers))
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(slot: float) -> None:
        connection = await idle.get()
        try:
            status = await connection.post()
        except (ConnectionError, asyncio.IncompleteReadError):
            connection.close()
            connection = Connection(url, body, headers)
            status = 599
        result.latencies.append(time.perf_counter() - slot)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        idle.put_nowait(connection)

    tasks = []
    for index in range(total):
        slot = start + index / rate
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(slot)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return result


@dataclass
class Comparison:
    """One service against the bare endpoint: maximum rate, then latency at a fixed rate."""

    ours: str  # label of the service under test
    unit: str  # "req/s", "notifications/s"
    ratio_target: float
    latency_note: str = ""
    floor: str | None = None  # the target the ratio target is against; default: the only other one


async def against_bare(
    comparison: Comparison,
    targets: dict[str, str],
    body: bytes,
    *,
    requests: int,
    connections: int,
    rate: float,
    seconds: float,
    headers: Headers | None = None,
) -> dict[str, float]:
    """Warm up, then print the maximum rate of each target, the ratio, and latency at `rate`;
    returns the maximum rates by label."""
    width = max(len(label) for label in targets)
    for url in targets.values():
        await closed_loop(url, body, requests=50, connections=4, headers=headers)
    print(f"max {comparison.unit} ({connections} keep-alive connections):")
    best: dict[str, float] = {}
    for label, url in targets.items():
        result = await closed_loop(url, body, requests=requests, connections=connections, headers=headers)
        best[label] = result.rate
        print(f"  {label:{width}}: {result.summary()}")
    floor = comparison.floor or next(label for label in targets if label != comparison.ours)
    for label in targets:
        if label != comparison.ours:
            target = f" (target >= {comparison.ratio_target})" if label == floor else ""
            print(f"  ratio to {label}: {best[comparison.ours] / best[label]:.2f}x{target}")
    print(f"latency at {rate:.0f} {comparison.unit} for {seconds:.0f} s (from the scheduled send time):")
    for label, url in targets.items():
        result = await open_loop(url, body, rate=rate, seconds=seconds, headers=headers)
        note = f"  {comparison.latency_note}" if label == comparison.ours and comparison.latency_note else ""
        print(f"  {label:{width}}: {result.summary()}{note}")
    return best
