"""Kill the sending process hard in the middle of delivering: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import httpx

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, register
from tests.integration.conftest import PASSWORD

TOKEN = "crash-token-0123456789abcdef"


async def test_sigkill_mid_delivery(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    reader: Account,
    new_room: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    sender = await register(synapse, http, "crashbot", PASSWORD)
    # Slow enough (about 25 messages/s) that the kill lands while the queue is still draining.
    response = await admin.http.post(
        f"{synapse.url}/_synapse/admin/v1/users/{quote(sender.user_id)}/override_ratelimit",
        json={"messages_per_second": 25, "burst_count": 5},
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    assert response.status_code == 200
    room_id = await new_room(invite=[sender.user_id])

    def service() -> LocalService:
        return LocalService(
            "crash",
            "matrix_stack.services.notify",
            "NOTIFY_",
            free_port(),
            {"TOKEN": TOKEN, "BACKOFF_MAX_SECONDS": "1"},
            tmp_path / "data",
        )

    first = service()
    first.start(synapse.url, sender.user_id, PASSWORD, tmp_path / "logs")
    first.wait_ready()
    for i in range(200):
        accepted = await http.post(
            f"{first.url}/notify/{room_id}", content=f"c{i:03d}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert accepted.status_code == 202
    for _ in range(300):
        if len(await reader.messages(room_id)) >= 40:
            break
        await asyncio.sleep(0.05)
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    delivered_before = len(await reader.messages(room_id))
    assert 40 <= delivered_before < 200, "the kill must land mid-delivery"

    second = service()
    second.start(synapse.url, sender.user_id, PASSWORD, tmp_path / "logs")
    try:
        second.wait_ready()
        events = await reader.wait_for_messages(room_id, 200, timeout=90)
        await asyncio.sleep(1)
        events = await reader.messages(room_id)
    finally:
        second.stop()
    assert [e["content"]["body"] for e in events] == [f"c{i:03d}" for i in range(200)]
