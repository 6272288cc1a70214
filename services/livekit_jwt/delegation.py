"""MSC4140 delegated leave: a client hands over its delayed "left the call" event; while the
participant is on the SFU the service keeps restarting it, and when the SFU reports them gone it
sends it at once. Jobs are kept in SQLite, so a restart of the process picks them up again.

The delayed-event endpoints need no access token (the delay id is the capability); the homeserver's
client-server API comes from an override or its `.well-known/matrix/client`, never from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

log = logging.getLogger("matrix_stack.livekit_jwt.delegation")
DELAYED = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
TICK_SECONDS = 0.25


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
    def interval(self) -> float:
        return max(0.2, self.timeout_ms / 2000)


class Delegations:
    def __init__(self, path: Path, http: httpx.AsyncClient, *, join_grace: float) -> None:
        self.path = path
        self.http = http
        self.join_grace = join_grace
        self.jobs: dict[str, Job] = {}
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (delay_id TEXT PRIMARY KEY, cs_api TEXT NOT NULL,"
            " room TEXT NOT NULL, identity TEXT NOT NULL, timeout_ms INTEGER NOT NULL,"
            " created REAL NOT NULL, joined INTEGER NOT NULL)"
        )
        for row in self._db.execute(
            "SELECT delay_id, cs_api, room, identity, timeout_ms, created, joined FROM jobs"
        ):
            job = Job(row[0], row[1], row[2], row[3], int(row[4]), float(row[5]), bool(row[6]))
            self.jobs[job.delay_id] = job  # next_restart 0: restarted at once after a restart
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
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.delay_id, job.cs_api, job.room, job.identity, job.timeout_ms, job.created, int(job.joined)),
        )
        self.jobs[job.delay_id] = job
        log.info("delegation registered", extra={"room": job.room, "timeout_ms": job.timeout_ms})

    def _drop(self, job: Job, why: str) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM jobs WHERE delay_id = ?", (job.delay_id,))
        self.jobs.pop(job.delay_id, None)
        log.info("delegation ended", extra={"room": job.room, "reason": why})

    def _matching(self, room: str, identity: str | None) -> list[Job]:
        return [
            j for j in self.jobs.values() if j.room == room and (identity is None or j.identity == identity)
        ]

    def joined(self, room: str, identity: str) -> None:
        assert self._db is not None
        for job in self._matching(room, identity):
            job.joined = True
            self._db.execute("UPDATE jobs SET joined = 1 WHERE delay_id = ?", (job.delay_id,))

    async def left(self, room: str, identity: str | None) -> None:
        """The participant (or, with None, everyone: the room finished) is gone: send their leave now."""
        for job in self._matching(room, identity):
            await self._call(job, "send")
            self._drop(job, "left")

    async def _call(self, job: Job, action: str) -> int | None:
        url = f"{job.cs_api}{DELAYED}/{quote(job.delay_id, safe='')}/{action}"
        try:
            response = await self.http.post(url, json={})
        except httpx.HTTPError as exc:
            log.warning("delayed event call failed", extra={"action": action, "error": str(exc)})
            return None
        if response.status_code != 200:
            log.warning(
                "delayed event call refused", extra={"action": action, "status": response.status_code}
            )
        return response.status_code

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._tick()
            except Exception:  # the schedule goes on whatever one round met
                log.exception("delegation round failed")

    async def _tick(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if not job.joined and time.time() - job.created > self.join_grace:
                self._drop(job, "never joined")  # stop restarting: the delayed event fires on its own
                continue
            if job.next_restart > now:
                continue
            job.next_restart = now + job.interval
            status = await self._call(job, "restart")
            if status in (400, 404):  # sent, cancelled or expired on the homeserver: nothing to keep
                self._drop(job, f"restart answered {status}")
