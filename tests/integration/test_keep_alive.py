"""A kept-alive connection outlives its clients' idle timeouts: the client closes an idle connection
first, so it never sends a request on one the service is closing at that instant (the request would
get no answer: "Server disconnected without sending a response")."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.conftest import PASSWORD

IDLE = 6.0  # seconds: past httpx's keep-alive expiry and uvicorn's default idle timeout (5 s each)


async def get_healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One GET /healthz on an open connection, its status line; IncompleteReadError or a
    ConnectionError when the server has closed it."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


async def test_an_idle_connection_is_kept_past_the_clients_idle_timeout(
    synapse: LocalSynapse, bot: Account, tmp_path: Path
) -> None:
    service = LocalService("notify", "matrix_stack.services.notify", "NOTIFY_", free_port(),
                           {"TOKEN": "keep-alive-token-0123456789"}, tmp_path / "notify")  # fmt: skip
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    try:
        service.wait_ready()
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        assert await get_healthz(reader, writer) == b"HTTP/1.1 200 OK"
        await asyncio.sleep(IDLE)
        try:
            assert await get_healthz(reader, writer) == b"HTTP/1.1 200 OK"
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise AssertionError(f"the service closed a connection idle {IDLE} s: {exc!r}") from exc
        writer.close()
    finally:
        service.stop()
