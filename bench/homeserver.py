"""The homeserver every service benchmark posts to: a real Synapse, a bot without rate limits, a room."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, lift_rate_limit, register
from matrix_stack.shared.route.processes import stop, wait_ready

PASSWORD = "bench-password-123"


@dataclass
class Homeserver:
    synapse: LocalSynapse
    admin: Account
    bot: Account
    rooms: list[str]


@contextlib.asynccontextmanager
async def homeserver(
    directory: Path, rooms: int = 1, extra_config: dict[str, Any] | None = None
) -> AsyncIterator[Homeserver]:
    synapse = LocalSynapse(
        directory / "synapse", free_port(), rc_message={"per_second": 1000, "burst_count": 1000},
        extra_config=extra_config or {},
    )  # fmt: skip
    synapse.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            admin = await register(synapse, http, "admin", PASSWORD, admin=True)
            bot = await register(synapse, http, "bot", PASSWORD)
            await lift_rate_limit(admin, bot.user_id)
            made = []
            for index in range(rooms):
                room = await admin.create_room(name=f"bench {index}", invite=[bot.user_id])
                await bot.join(room)
                made.append(room)
            yield Homeserver(synapse, admin, bot, made)
    finally:
        synapse.stop()


@contextlib.contextmanager
def durable_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL with fsync on, as operators run it, for the outbox's PostgreSQL backend."""
    server = LocalPostgres(free_port(), durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_bare(port: int, outbox_url: str | None = None) -> subprocess.Popen[bytes]:
    """The comparison endpoint (`bench.bare_app`), served by uvicorn as the services are."""
    env = {**os.environ, **({"BARE_OUTBOX_URL": outbox_url} if outbox_url else {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--no-server-header"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    wait_ready("bare", process, lambda: _answers(port), timeout=30)
    return process


def _answers(port: int) -> bool:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/sentry", content=b"{}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serving(
    hs: Homeserver, service: LocalService, directory: Path, outbox_url: str | None = None
) -> Iterator[str]:
    """The service under test (as the bot) and the bare endpoint, both running, both on the SQLite
    outbox or both on the PostgreSQL one at `outbox_url`; yields the bare URL."""
    bare = None
    if outbox_url:
        service.env["OUTBOX_URL"] = outbox_url
        service.env["ENCRYPTION_KEY"] = ENCRYPTION_KEY
    service.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
    try:
        service.wait_ready()
        port = free_port()
        bare = start_bare(port, outbox_url)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(bare)
        service.stop()
