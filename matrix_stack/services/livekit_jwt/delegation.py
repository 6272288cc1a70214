"""MSC4140 delegated leave: a client hands over its delayed "left the call" event; while the
participant is on the SFU the service keeps restarting it, and when the SFU reports them gone it
sends it at once. Jobs are kept in SQLite, so a restart of the process picks them up again.

The delayed-event endpoints need no access token (the delay id is the capability); the homeserver's
client-server API comes from an override or its `.well-known/matrix/client`, never from the request,
and every call to a discovered one goes through the egress policy (the poster the issuer hands in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("matrix_stack.livekit_jwt.delegation")
DELAYED = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
TICK_SECONDS = 0.25
RETRY_SECONDS = 1.0  # after a failed or rate-limited restart: well before the event would fire
CONCURRENT_CALLS = 16  # a slow homeserver holds one slot, not everyone's schedule
MAX_JOBS = 10_000
MAX_JOBS_PER_IDENTITY = 8
# (url) -> the HTTP status, or None when the homeserver could not be reached
Poster = Callable[[str], Awaitable[int | None]]


class DelegationRefused(Exception):
    def __init__(self, message: str, *, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass
class Job:
    delay_id: str
    cs_api: str
    room: str
    identity: str
    timeout_ms: int
    created: float  # wall clock, so it means the same after a restart
    joined: bool = False
    next_restart: float = 0.0  # monotonic

    @property
    def key(self) -> tuple[str, str]:
        return self.cs_api, self.delay_id

    @property
    def interval(self) -> float:
        return max(0.5, self.timeout_ms / 3000)  # a third: one failed restart still leaves time


class Delegations:
    def __init__(self, path: Path, post: Poster, *, join_grace: float) -> None:
        self.path = path
        self.post = post
        self.join_grace = join_grace
        self.jobs: dict[tuple[str, str], Job] = {}
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(CONCURRENT_CALLS)
        self._busy: set[tuple[str, str]] = set()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; a crash loses a moment
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (delay_id TEXT NOT NULL, cs_api TEXT NOT NULL,"
            " room TEXT NOT NULL, identity TEXT NOT NULL, timeout_ms INTEGER NOT NULL,"
            " created REAL NOT NULL, joined INTEGER NOT NULL, PRIMARY KEY (cs_api, delay_id))"
        )
        rows = self._db.execute(
            "SELECT delay_id, cs_api, room, identity, timeout_ms, created, joined FROM jobs"
        )
        for row in rows:
            job = Job(row[0], row[1], row[2], row[3], int(row[4]), float(row[5]), bool(row[6]))
            self.jobs[job.key] = job  # next_restart 0: restarted at once after a restart
        if self.jobs:
            log.info("delegations resumed", extra={"jobs": len(self.jobs)})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delegations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._db is not None:
            self._db.close()
            self._db = None

    def add(self, job: Job) -> None:
        """Raises DelegationRefused when the job would replace another participant's, or a limit is hit."""
        assert self._db is not None
        existing = self.jobs.get(job.key)
        if existing is not None and existing.identity != job.identity:
            raise DelegationRefused("this delayed event is delegated already")
        if existing is None:
            if len(self.jobs) >= MAX_JOBS:
                raise DelegationRefused("too many delegated events", limit=True)
            mine = sum(1 for other in self.jobs.values() if other.identity == job.identity)
            if mine >= MAX_JOBS_PER_IDENTITY:
                raise DelegationRefused("too many delegated events for this participant", limit=True)
        self._db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.delay_id, job.cs_api, job.room, job.identity, job.timeout_ms, job.created, int(job.joined)),
        )
        self.jobs[job.key] = job
        log.info("delegation registered", extra={"room": job.room, "timeout_ms": job.timeout_ms})

    def _drop(self, job: Job, why: str) -> None:
        if self.jobs.pop(job.key, None) is None:
            return
        if self._db is not None:
            self._db.execute("DELETE FROM jobs WHERE cs_api = ? AND delay_id = ?", job.key)
        log.info("delegation ended", extra={"room": job.room, "reason": why})

    def _matching(self, room: str, identity: str | None) -> list[Job]:
        return [job for job in self.jobs.values() if job.room == room and identity in (None, job.identity)]

    def joined(self, room: str, identity: str) -> None:
        for job in self._matching(room, identity):
            job.joined = True
            if self._db is not None:
                self._db.execute("UPDATE jobs SET joined = 1 WHERE cs_api = ? AND delay_id = ?", job.key)

    async def left(self, room: str, identity: str | None) -> None:
        """The participant (or, with None, everyone: the room finished) is gone: send their leave now."""
        jobs = self._matching(room, identity)
        for job in jobs:
            self._drop(job, "left")
        await asyncio.gather(*(self._call(job, "send") for job in jobs))

    async def _call(self, job: Job, action: str) -> int | None:
        url = f"{job.cs_api}{DELAYED}/{quote(job.delay_id, safe='')}/{action}"
        async with self._slots:
            try:
                status = await self.post(url)
            except Exception:  # one job's trouble is never the schedule's
                log.exception("delayed event call failed", extra={"action": action})
                return None
        if status != 200:
            log.warning("delayed event call not done", extra={"action": action, "status": status})
        return status

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self._tick()
            except Exception:  # the schedule goes on whatever one round met
                log.exception("delegation round failed")

    def _tick(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.key in self._busy:
                continue
            if not job.joined and time.time() - job.created > self.join_grace:
                self._drop(job, "never joined")  # stop restarting: the delayed event fires on its own
                continue
            if job.next_restart <= now:
                self._busy.add(job.key)
                asyncio.get_running_loop().create_task(self._restart(job))

    async def _restart(self, job: Job) -> None:
        try:
            status = await self._call(job, "restart")
            if status in (400, 404):  # sent, cancelled or expired on the homeserver: nothing to keep
                self._drop(job, f"restart answered {status}")
            elif status == 200:
                job.next_restart = time.monotonic() + job.interval
            else:  # unreachable, rate-limited (429) or failing: try again soon
                job.next_restart = time.monotonic() + RETRY_SECONDS
        finally:
            self._busy.discard(job.key)
