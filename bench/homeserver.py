"""The homeserver every service benchmark posts to: a real Synapse, a bot without rate limits, a room."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.devstack.processes import free_port
from shared.devstack.synapse import Account, LocalSynapse, lift_rate_limit, register

PASSWORD = "bench-password-123"


@dataclass
class Homeserver:
    synapse: LocalSynapse
    admin: Account
    bot: Account
    rooms: list[str]


@contextlib.asynccontextmanager
async def homeserver(directory: Path, rooms: int = 1) -> AsyncIterator[Homeserver]:
    synapse = LocalSynapse(
        directory / "synapse", free_port(), rc_message={"per_second": 1000, "burst_count": 1000}
    )
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
