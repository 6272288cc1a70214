"""The Matrix client layer against a real Synapse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx
import pytest

from devstack.synapse import Account, LocalSynapse, register
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.client import MatrixClient, MatrixError, StartupError
from matrix_stack.shared.matrix.discovery import DiscoveryError, discover_homeserver
from tests.integration.conftest import PASSWORD

MakeClient = Callable[..., Awaitable[MatrixClient]]
NewRoom = Callable[..., Awaitable[str]]


async def test_send_and_read_back_exact(
    make_client: MakeClient, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    client = await make_client(bot)
    sent = content.message(
        "Disk full on node-1 <not html>",
        "<b>Disk full</b> on <code>node-1</code><script>alert(1)</script>"
        '<a href="javascript:x">bad</a><img src="https://x/y.png">',
    )
    event_id = await client.send(room_id, sent, txn_id="t1")
    [event] = await reader.wait_for_messages(room_id, 1)
    assert event["event_id"] == event_id
    assert event["sender"] == bot.user_id
    assert event["content"] == {
        "msgtype": "m.notice",
        "body": "Disk full on node-1 <not html>",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>Disk full</b> on <code>node-1</code><a>bad</a><img>",
        "m.mentions": {},
    }


async def test_same_txn_id_posts_once(
    make_client: MakeClient, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    client = await make_client(bot)
    first = await client.send(room_id, content.message("once"), txn_id="same")
    second = await client.send(room_id, content.message("once"), txn_id="same")
    assert first == second
    await asyncio.sleep(0.5)
    assert [e["content"]["body"] for e in await reader.messages(room_id)] == ["once"]


async def test_alias_resolution_is_cached(
    make_client: MakeClient,
    new_room: NewRoom,
    bot: Account,
    reader: Account,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
) -> None:
    room_id = await new_room(alias="alias-test")
    client = await make_client(bot)
    assert await client.resolve("#alias-test:localhost") == room_id
    # Remove the alias: a cached resolution keeps working, as it must between sends.
    await reader.api("DELETE", f"/directory/room/{quote('#alias-test:localhost')}")
    assert await client.resolve("#alias-test:localhost") == room_id
    await client.send("#alias-test:localhost", content.message("via alias"), txn_id="a1")
    assert [e["content"]["body"] for e in await reader.wait_for_messages(room_id, 1)] == ["via alias"]
    fresh = await make_client(bot)
    with pytest.raises(MatrixError) as missing:
        await fresh.resolve("#alias-test:localhost")
    assert missing.value.errcode == "M_NOT_FOUND"
    assert not missing.value.transient


async def test_joins_once_not_per_send(
    make_client: MakeClient, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    client = await make_client(bot)
    await asyncio.gather(*(client.send(room_id, content.message(f"m{i}"), txn_id=f"j{i}") for i in range(5)))
    events = await reader.api("GET", f"/rooms/{quote(room_id)}/messages", dir="f", limit=100)
    joins = [
        e
        for e in events["chunk"]
        if e["type"] == "m.room.member"
        and e["state_key"] == bot.user_id
        and e["content"]["membership"] == "join"
    ]
    assert len(joins) == 1


async def test_invites_from_allowlist_only(
    make_client: MakeClient, synapse: LocalSynapse, http: httpx.AsyncClient, bot: Account, reader: Account
) -> None:
    stranger = await register(synapse, http, "stranger", PASSWORD)
    client = await make_client(bot, invite_allowlist=[reader.user_id])
    loop = asyncio.create_task(client.run_invite_loop(poll_timeout_ms=500))
    try:
        allowed = await reader.create_room(name="allowed", invite=[bot.user_id])
        refused = await stranger.create_room(name="refused", invite=[bot.user_id])

        async def membership(account: Account, room_id: str) -> str:
            state = await account.api("GET", f"/rooms/{quote(room_id)}/state/m.room.member/{bot.user_id}")
            return str(state["membership"])

        for _ in range(100):
            if await membership(reader, allowed) == "join" and await membership(stranger, refused) == "leave":
                break
            await asyncio.sleep(0.1)
        assert await membership(reader, allowed) == "join"
        assert await membership(stranger, refused) == "leave"
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_server_allowlist_entry(make_client: MakeClient, bot: Account, reader: Account) -> None:
    client = await make_client(bot, invite_allowlist=["localhost"])
    loop = asyncio.create_task(client.run_invite_loop(poll_timeout_ms=500))
    try:
        room_id = await reader.create_room(name="server-allowed", invite=[bot.user_id])
        for _ in range(100):
            if room_id in await bot.joined_rooms():
                break
            await asyncio.sleep(0.1)
        assert room_id in await bot.joined_rooms()
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_edit_reply_thread(
    make_client: MakeClient, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    client = await make_client(bot)
    root = await client.send(room_id, content.message("firing"), txn_id="r0")
    await client.send(room_id, content.edit(content.message("resolved"), root), txn_id="r1")
    await client.send(room_id, content.reply(content.message("ack"), root), txn_id="r2")
    await client.send(room_id, content.thread_reply(content.message("in thread"), root), txn_id="r3")
    events = await reader.wait_for_messages(room_id, 4)
    assert [e["content"]["body"] for e in events] == ["firing", "* resolved", "ack", "in thread"]
    assert events[1]["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": root}
    assert events[1]["content"]["m.new_content"]["body"] == "resolved"
    assert events[2]["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": root}}
    assert events[3]["content"]["m.relates_to"]["rel_type"] == "m.thread"
    # Synapse aggregates the edit and the thread onto the root: it understood both relations.
    original = await reader.api("GET", f"/rooms/{quote(room_id)}/event/{quote(root)}")
    relations = original["unsigned"]["m.relations"]
    assert relations["m.thread"]["count"] == 1


async def test_startup_fails_fast_with_one_line(synapse: LocalSynapse, bot: Account) -> None:
    wrong = MatrixClient(synapse.url, bot.user_id, access_token="syt_not_a_token")
    with pytest.raises(StartupError, match=r"refused @bot:localhost: M_UNKNOWN_TOKEN"):
        await wrong.start()
    await wrong.close()
    other = MatrixClient(synapse.url, "@someone:localhost", access_token=bot.access_token)
    with pytest.raises(StartupError, match="belongs to @bot:localhost"):
        await other.start()
    await other.close()
    closed = MatrixClient("http://127.0.0.1:9", bot.user_id, access_token=bot.access_token)
    with pytest.raises(StartupError, match="unreachable"):
        await closed.start()
    await closed.close()
    # A server name is looked up through its well-known document (https only, as the spec says).
    nameless = MatrixClient("127.0.0.1:9", bot.user_id, access_token=bot.access_token)
    with pytest.raises(StartupError, match=r"cannot find the homeserver of 127\.0\.0\.1:9"):
        await nameless.start()
    await nameless.close()


async def test_password_login_reuses_its_token(
    synapse: LocalSynapse, tmp_path: object, bot: Account, reader: Account
) -> None:
    from pathlib import Path

    session = Path(str(tmp_path)) / "session.json"
    first = MatrixClient(synapse.url, bot.user_id, password=PASSWORD, session_file=session)
    await first.start()
    device = first.nio.device_id
    await first.close()
    assert session.stat().st_mode & 0o777 == 0o600
    second = MatrixClient(synapse.url, bot.user_id, password=PASSWORD, session_file=session)
    await second.start()
    assert second.nio.device_id == device
    await second.close()


async def test_discovery(synapse: LocalSynapse, http: httpx.AsyncClient) -> None:
    # Synapse serves /.well-known/matrix/client from public_baseurl.
    host = synapse.url.removeprefix("http://")
    assert await discover_homeserver(host, http=http, scheme="http") == synapse.url
    assert await discover_homeserver(synapse.url + "/", http=http) == synapse.url
    with pytest.raises(DiscoveryError):
        await discover_homeserver("127.0.0.1:9", http=http, scheme="http")
